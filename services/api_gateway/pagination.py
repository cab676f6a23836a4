"""Opaque page tokens: a position in a listing, signed and bound to its query.

A token holds the position (the last backtest id served, or a trade offset)
and a digest of the query it belongs to (owner, RPC, filter), signed with
HMAC-SHA256. A token that was altered, or comes from another owner or
filter, is rejected; tokens never grant access, as every page re-checks the
owner anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Iterable

from backcast.errors import InvalidArgument
from backcast.jobqueue.jobs import JobState

PAGE_TOKEN_FIELD = "page_token"
_VERSION = 1
_BODY = struct.Struct(">Bq8s")  # version, position, query digest prefix
_MAC_BYTES = 16
_TOKEN_BYTES = _BODY.size + _MAC_BYTES


def backtests_query(owner: str, states: Iterable[JobState]) -> str:
    """The query a ListBacktests token is bound to."""
    names = ",".join(sorted({state.value for state in states}))
    return f"backtests\n{owner}\n{names}"


def trades_query(owner: str, backtest_id: int) -> str:
    """The query a GetResult token is bound to."""
    return f"trades\n{owner}\n{backtest_id}"


class PageTokens:
    """Signs positions into tokens and reads them back for the same query."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, position: int, query: str) -> str:
        body = _BODY.pack(_VERSION, position, _digest(query))
        token = body + self._sign(body)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, token: str, query: str) -> int:
        """The position in `token`, which must have been issued for `query`.

        Raises:
            InvalidArgument: on `page_token` when the token is malformed,
                tampered with, or from another query.
        """
        raw = _unpad(token)
        if raw is None or len(raw) != _TOKEN_BYTES:
            raise _bad_token("is not a page token of this service")

        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        if not hmac.compare_digest(mac, self._sign(body)):
            raise _bad_token("is not a page token of this service")
        version, position, digest = _BODY.unpack(body)
        if version != _VERSION or not hmac.compare_digest(digest, _digest(query)):
            raise _bad_token(
                "belongs to another query; repeat the request that returned "
                "it, with the same filter, or start without a token"
            )
        # Every position handed out is a backtest id or a trade offset past
        # the first page, so at least 1. A lower one was signed elsewhere (the
        # development key is public) and would make a trade page wrap around
        # to the end of the list.
        if position < 1:
            raise _bad_token("is not a page token of this service")
        return int(position)

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def _digest(query: str) -> bytes:
    return hashlib.sha256(query.encode()).digest()[:8]


def _unpad(token: str) -> bytes | None:
    if len(token) > 2 * _TOKEN_BYTES:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


def _bad_token(problem: str) -> InvalidArgument:
    return InvalidArgument.of(PAGE_TOKEN_FIELD, f"the token {problem}")
