"""Text a request may carry: well-formed Unicode only.

JSON can spell a lone surrogate (``"\\ud800"``, a valid escape that is no character),
and Python's ``json`` also lets raw surrogate bytes through; neither UTF-8 nor the
database can hold one, so psycopg would fail on it deep in a write. Query strings can
carry percent-encoded (or raw) bytes that are not UTF-8. Both are refused here, where
input is read, with the place of the first offence — once, instead of at every column.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from trellis.exceptions import BadRequest

LONE_SURROGATE = "contains a lone surrogate (invalid Unicode)"
NOT_UTF8 = "is not valid UTF-8"
# A JSON escape of a code point in U+D800–U+DFFF (pairs match too: they are then walked).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_lone_surrogate(raw: bytes) -> bool:
    """False only when JSON text ``raw`` cannot parse to a lone surrogate: a cheap scan
    that spares the check on the usual body.

    ``json.loads`` reads bytes as UTF-8 with surrogates let through, or as UTF-16/32 when
    NUL bytes say so; only plain, valid UTF-8 without surrogate escapes is let off.
    """
    if b"\x00" in raw:
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return _SURROGATE_ESCAPE.search(raw) is not None


def refuse_lone_surrogates(value: Any, field: str = "") -> None:
    """Raise 400 naming the first string (or key) in parsed JSON ``value`` holding a surrogate.

    ``field`` prefixes the reported path (``filter`` → ``filter[0][2]``).
    """
    if _is_wellformed(value):
        return
    path = lone_surrogate_path(value, field)
    raise BadRequest(
        "the request holds text that is not valid Unicode",
        [{"field": field if path is None else path, "message": LONE_SURROGATE}],
    )


def _is_wellformed(value: Any) -> bool:
    """One pass in C: serialising keeps surrogates, encoding to UTF-8 refuses them."""
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_path(value: Any, prefix: str = "") -> str | None:
    """The path (``lines[0].note``) of the first string or key holding a lone surrogate.

    Iterative, in document order, so no nesting depth can exhaust the stack.
    """
    stack: list[tuple[Any, str]] = [(value, prefix)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return path
        elif isinstance(item, dict):
            for key in item:
                if has_lone_surrogate(key):
                    # The key itself cannot go into the answer: it is not encodable either.
                    return _join(path, key.encode("utf-8", "backslashreplace").decode())
            stack.extend((item[key], _join(path, key)) for key in reversed(list(item)))
        elif isinstance(item, list):
            stack.extend((item[i], f"{path}[{i}]") for i in reversed(range(len(item))))
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a code point in U+D800–U+DFFF (never a character)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def refuse_undecodable_query(query_string: bytes) -> None:
    """Raise 400 naming the first query parameter whose bytes are not UTF-8 text.

    Werkzeug either fails on such bytes (sent raw) or keeps them percent-encoded, so the
    view would silently see ``%ED%A0%80`` instead of a value: both become a clear 400.
    """
    if query_string.isascii() and b"%" not in query_string:
        return
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        problem = _undecodable(name) or _undecodable(value)
        if problem:
            field = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
            raise BadRequest(
                "the query string holds text that is not valid Unicode",
                [{"field": field, "message": problem}],
            )


def _undecodable(raw: bytes) -> str | None:
    """Why percent-decoded ``raw`` is not text, or None when it is."""
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        try:
            decoded.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return NOT_UTF8
        return LONE_SURROGATE
    return None
