"""Requests whose bytes do not parse as their message: which field is broken.

grpc answers a request its deserializer cannot parse with UNKNOWN and the
parser's exception text. The server instead wraps each deserializer so that
such a request becomes INVALID_ARGUMENT naming the broken field, found by
walking the wire format against the message's descriptor (encoding:
https://protobuf.dev/programming-guides/encoding/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from backcast.errors import FieldViolation, InvalidArgument

WHOLE_REQUEST = "request"
"""The field named when the broken bytes belong to no field of the message."""

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class UndecodableRequest(InvalidArgument):
    """The request's bytes are not a valid message of the method's type."""

    reason = "UNDECODABLE_REQUEST"


Deserializer = Callable[[bytes], Any]


def lenient(deserializer: Deserializer | None, *, streamed: bool) -> Any:
    """`deserializer`, turning a parse failure into UndecodableRequest.

    A streamed request's failure is raised where the handler reads the
    stream. A unary request is parsed before its handler runs, where a raise
    would become UNKNOWN, so the error is returned in place of the request
    for the handler's wrapper to raise (see `raise_if_undecodable`).
    """
    if deserializer is None:
        return None
    # Generated stubs pass the message class's FromString.
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            error = undecodable(descriptor, data)
            if streamed:
                raise error from None
            return error

    return deserialize


def raise_if_undecodable(request: Any) -> None:
    if isinstance(request, UndecodableRequest):
        raise request


def undecodable(descriptor: Descriptor | None, data: bytes) -> UndecodableRequest:
    """The error for `data`, which does not parse as a `descriptor` message."""
    found = None if descriptor is None else _broken_field(descriptor, data, "")
    if found is None:
        name = descriptor.full_name if descriptor else "message of this method"
        return UndecodableRequest(
            [FieldViolation(WHOLE_REQUEST, f"the bytes are not a valid {name}")]
        )
    path, problem = found
    return UndecodableRequest([FieldViolation(path, problem)])


def _broken_field(
    descriptor: Descriptor, data: bytes | memoryview, prefix: str
) -> tuple[str, str] | None:
    """The path of the first broken field in `data` and what is wrong, or
    None when no single field is to blame."""
    view = memoryview(data)
    at = 0
    seen: dict[int, int] = {}
    while at < len(view):
        key, at = _varint(view, at)
        if key is None:
            return None
        number, wire_type = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number)
        path = _path(field, prefix, seen)
        if wire_type == _VARINT:
            value, at = _varint(view, at)
            if value is None:
                return _blame(path, "ends inside a number")
        elif wire_type in (_FIXED64, _FIXED32):
            at += 8 if wire_type == _FIXED64 else 4
            if at > len(view):
                return _blame(path, "ends inside a number")
        elif wire_type == _LENGTH_DELIMITED:
            length, at = _varint(view, at)
            if length is None or at + length > len(view):
                return _blame(path, "is longer than the bytes that hold it")
            value_bytes = view[at : at + length]
            at += length
            if field is not None and path is not None:
                found = _broken_value(field, value_bytes, path)
                if found is not None:
                    return found
        else:
            # Groups (3, 4) are not used by proto3 messages; 6 and 7 are not
            # wire types at all.
            return _blame(path, f"has wire type {wire_type}, which is not valid")
    return None


def _broken_value(
    field: FieldDescriptor, value: memoryview, path: str
) -> tuple[str, str] | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return path, "is not UTF-8 text; strings must be valid UTF-8"
        return None
    if field.message_type is not None:
        return _broken_field(field.message_type, value, f"{path}.")
    return None


def _path(
    field: FieldDescriptor | None, prefix: str, seen: dict[int, int]
) -> str | None:
    """The field's path; a repeated one indexed by how often it came before."""
    if field is None:
        return None
    if not field.is_repeated:
        return prefix + field.name
    index = seen.get(field.number, 0)
    seen[field.number] = index + 1
    return f"{prefix}{field.name}[{index}]"


def _blame(path: str | None, problem: str) -> tuple[str, str] | None:
    return None if path is None else (path, problem)


def _varint(view: memoryview, at: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while at < len(view) and shift < 64:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    return None, at
