"""
How the SDK reaches a server: a URL as the TypeScript SDK takes it (http://host:port in cleartext,
https://host:port over TLS) turned into a gRPC target and channel, and the bearer token as call
metadata. Channels reconnect quickly (100 ms, growing to 2 s) so calls made with wait_for_ready go on
soon after a server restart, and ping a quiet connection so a vanished peer is noticed.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc
import grpc.aio

from .errors import invalid

DEFAULT_URL = "http://127.0.0.1:50051"

# How often a quiet connection is pinged (the TypeScript SDK's DEFAULT_PING_INTERVAL_MS), and how long an answer may take.
PING_INTERVAL_S = 15.0
PING_TIMEOUT_S = 10.0
# The server writes messages of up to 4 MiB; accept those with room to spare.
MAX_RECEIVE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TlsOptions:
    """For https:// URLs: a CA to trust (PEM) and, for mutual TLS, this client's certificate and key (PEM)."""

    ca: bytes | str | None = None
    cert: bytes | str | None = None
    key: bytes | str | None = None


def target_of(url: str) -> tuple[str, bool]:
    """The gRPC target ("host:port") of a server URL, and whether it speaks TLS."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise invalid(f'url: "{url}" is not a URL ({err})') from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f'url: "{url}" is not an http:// or https:// URL (such as {DEFAULT_URL})')
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise invalid(f'url: "{url}" has a path; taskq serves gRPC at the root (use {parts.scheme}://{parts.netloc})')
    secure = parts.scheme == "https"
    host = parts.hostname
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{port or (443 if secure else 80)}", secure


def channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", int(PING_INTERVAL_S * 1000)),
        ("grpc.keepalive_timeout_ms", int(PING_TIMEOUT_S * 1000)),
        # A watch may stay quiet for hours: keep pinging it (the server has no ping policy).
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _credentials(tls: TlsOptions | None) -> grpc.ChannelCredentials:
    def pem(v: bytes | str | None) -> bytes | None:
        return v.encode() if isinstance(v, str) else v

    tls = tls or TlsOptions()
    return grpc.ssl_channel_credentials(root_certificates=pem(tls.ca), private_key=pem(tls.key), certificate_chain=pem(tls.cert))


def open_channel(url: str, tls: TlsOptions | None) -> grpc.Channel:
    target, secure = target_of(url)
    if secure:
        return grpc.secure_channel(target, _credentials(tls), options=channel_options())
    return grpc.insecure_channel(target, options=channel_options())


def open_aio_channel(url: str, tls: TlsOptions | None) -> grpc.aio.Channel:
    """A channel for grpc.aio; call from the event loop that will use it."""
    target, secure = target_of(url)
    if secure:
        return grpc.aio.secure_channel(target, _credentials(tls), options=channel_options())
    return grpc.aio.insecure_channel(target, options=channel_options())


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
