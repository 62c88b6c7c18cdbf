"""
JSON values to and from google.protobuf.Struct and Value, the way taskq carries params, results and
status values (docs/worker-protocol.md §14).

Numbers on the wire are IEEE doubles. A whole-valued number comes back as a Python int when it lies
within ±2^53 (where every integer is exactly a double), else as a float: {"n": 7} round-trips as 7,
not 7.0, and 7.0 sent comes back as 7. An int beyond ±2^53 cannot be carried exactly and is refused
(carry large integers as strings). NaN and ±Infinity are not JSON and are refused, as is a NUL
character, which the server's database cannot store: a server refuses a status value holding one and
records a result holding one as a failed attempt. Every refusal is a JsonValueError (INVALID_ARGUMENT,
and a ValueError), raised where the value was given.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TypeAlias

from google.protobuf import struct_pb2

from .errors import JsonValueError

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject = dict[str, JsonValue]

# The largest integer a double holds exactly, with every smaller one (JavaScript's Number.MAX_SAFE_INTEGER + 1).
INTEGER_LIMIT = 2**53


def from_value(v: struct_pb2.Value) -> JsonValue:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) <= INTEGER_LIMIT else n
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "struct_value":
        return from_struct(v.struct_value)
    if kind == "list_value":
        return [from_value(x) for x in v.list_value.values]
    return None


def from_struct(s: struct_pb2.Struct) -> JsonObject:
    return {k: from_value(x) for k, x in s.fields.items()}


def to_value(obj: object, what: str) -> struct_pb2.Value:
    """`obj` as a Value; JsonValueError naming `what` (and where inside it) when it is not JSON taskq can carry."""
    v = struct_pb2.Value()
    _fill(v, obj, what)
    return v


def to_struct(obj: Mapping[str, object], what: str) -> struct_pb2.Struct:
    if not isinstance(obj, Mapping):
        raise JsonValueError(f"{what}: must be a dict of JSON values, not {type(obj).__name__}")
    v = struct_pb2.Value()
    _fill(v, obj, what)
    return v.struct_value


def json_size(obj: object) -> int:
    """The UTF-8 bytes of `obj` as compact JSON, as the server measures its limits (give or take number formatting)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8", "replace"))


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _fill(target: struct_pb2.Value, obj: object, where: str) -> None:
    if obj is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):  # before int: bool is an int
        target.bool_value = obj
    elif isinstance(obj, int):
        if abs(obj) > INTEGER_LIMIT:
            raise JsonValueError(f"{where}: {obj} is beyond ±2^53, where numbers lose precision; send it as a string")
        target.number_value = float(obj)
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise JsonValueError(f"{where}: {obj} is not a JSON number (JSON has no NaN or infinity)")
        target.number_value = obj
    elif isinstance(obj, str):
        target.string_value = _text(obj, where)
    elif isinstance(obj, Mapping):
        s = target.struct_value
        s.SetInParent()
        for key, item in obj.items():
            if not isinstance(key, str):
                raise JsonValueError(f"{where}: key {key!r} is not a string")
            _fill(s.fields[_text(key, where)], item, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        values = target.list_value
        values.SetInParent()
        for i, item in enumerate(obj):
            _fill(values.values.add(), item, f"{where}[{i}]")
    else:
        raise JsonValueError(f"{where}: a {type(obj).__name__} is not a JSON value")


def _text(s: str, where: str) -> str:
    if "\x00" in s:
        raise JsonValueError(f"{where}: contains a NUL character, which taskq cannot store")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as err:
        raise JsonValueError(f"{where}: not valid Unicode text ({err.reason})") from err
    return s


def clean_text(s: str) -> str:
    """Free text (log steps, errors) made storable: NUL and unpaired surrogates become U+FFFD."""
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
