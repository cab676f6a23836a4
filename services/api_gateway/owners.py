"""Who a call acts for: the owner named by the `x-backcast-owner` header."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from backcast.errors import InvalidArgument

OWNER_HEADER = "x-backcast-owner"
DEFAULT_OWNER = "anonymous"
_OWNER_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_RULE = "use 1 to 64 characters of a-z, A-Z, 0-9, '.', '_', '-' or '@'"


# LIMITATION: the header is trusted as sent, so any caller can act as any
# owner; fine on a private network only, until API keys or tokens are checked
# here.
def owner_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The owner named in a call's metadata, or DEFAULT_OWNER without one.

    Raises:
        InvalidArgument: naming the header when it is malformed or repeated.
    """
    values = [value for key, value in metadata or () if key.lower() == OWNER_HEADER]
    if not values:
        return DEFAULT_OWNER
    if len(values) > 1:
        raise InvalidArgument.of(
            OWNER_HEADER, f"sent {len(values)} times; send the header once"
        )

    owner = values[0]
    if isinstance(owner, str) and _OWNER_PATTERN.fullmatch(owner):
        return owner
    raise InvalidArgument.of(OWNER_HEADER, f"{_shown(owner)} is not an owner; {_RULE}")


def _shown(owner: str | bytes) -> str:
    if isinstance(owner, bytes):
        return "a binary value"
    if len(owner) > 64:
        return f"a value of {len(owner)} characters"
    # json.dumps quotes and escapes, so control characters stay visible.
    return json.dumps(owner)
