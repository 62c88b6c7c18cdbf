"""
When and how soon a worker connects again after its stream ended (docs/worker-protocol.md §12, §15).

Giving up: until a server has welcomed the worker once, a stream that ends with a code by which the
server refuses the worker itself (REFUSALS) ends the worker: connecting again cannot help until its
configuration changes. Once welcomed, the worker was configured well enough, so whatever ends a later
stream (a server restarted with other tokens, a protocol error of one stream) is met by connecting
again, with backoff.

Backoff: the pause doubles from `initial` up to `maximum` (the cap), and goes back to `initial` once a
session is welcomed. Each pause is drawn at random from the upper half of its step (equal jitter), so
the workers of a restarted server do not all come back at the same moment, and none waits longer than
the cap.
"""
from __future__ import annotations

import random
from collections.abc import Callable

import grpc

from .errors import invalid

# Codes with which a server refuses the worker itself: a bad or missing token, a token without the worker
# role, a hello it does not take (an undefined queue), a protocol error, a server that is not taskq.
REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def refused_for_good(code: grpc.StatusCode, welcomed_before: bool) -> bool:
    """Whether a stream that ended with `code` ends the worker: a refusal, before any welcome."""
    return code in REFUSALS and not welcomed_before


class ReconnectBackoff:
    def __init__(self, initial: float, maximum: float, draw: Callable[[], float] = random.random) -> None:
        """`draw` returns a number in [0, 1) (random.random, or a seeded Random's for a test)."""
        if not 0 < initial <= maximum:
            raise invalid(f"reconnect: ({initial:g}, {maximum:g}) is not a first pause over 0 and a cap no smaller")
        self._initial, self._maximum, self._draw = initial, maximum, draw
        self._step = initial

    def next_pause(self) -> float:
        """The pause before the next attempt: between half its step and the step; the step doubles, up to the cap."""
        step = self._step
        self._step = min(step * 2, self._maximum)
        return step * (0.5 + 0.5 * self._draw())

    def reset(self) -> None:
        """A session was welcomed: the next pause starts from `initial` again."""
        self._step = self._initial
