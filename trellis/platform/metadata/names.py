"""Identifier rules: what an object or field may be called.

Names become table and column names, so they are checked here, long before they
come near SQL: a strict pattern, a length that fits every database's identifier
limit once prefixed, and a list of words that are reserved by SQL or by the
platform's own system columns.
"""

from __future__ import annotations

import re

from trellis.platform.messages import N_

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# Python's ``$`` also matches before a trailing newline, so match the whole string.
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_NAME_LENGTH = 40

SYSTEM_COLUMNS = (
    "id",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "owner_id",
    "deleted_at",
)

# Words reserved by PostgreSQL or SQLite (SQL:2016 core list, trimmed to the ones a
# table or column name could plausibly collide with) plus the platform's own.
SQL_RESERVED = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization between binary both
    case cast check collate collation column concurrently constraint create cross
    current_catalog current_date current_role current_schema current_time current_timestamp
    current_user default deferrable desc distinct do else end except false fetch for
    foreign freeze from full grant group having ilike in initially inner intersect into is
    isnull join lateral leading left like limit localtime localtimestamp natural not
    notnull null offset on only or order outer overlaps placing primary references
    returning right select session_user similar some symmetric table tablesample then to
    trailing true union unique user using variadic verbose when where window with abort
    action add after alter attach autoincrement before begin by cascade commit conflict
    database deferred delete detach drop each escape exclusive exists explain fail glob if
    ignore immediate index indexed insert instead key match no nothing of plan pragma query
    raise recursive regexp reindex release rename replace restrict rollback row rows
    savepoint set temp temporary transaction trigger update vacuum values view virtual
    without
    """.split()  # noqa: SIM905 - a word list reads better as text
)

RESERVED_NAMES = SQL_RESERVED | frozenset(SYSTEM_COLUMNS) | frozenset({"meta", "self", "object"})


def name_problem(name: object) -> str | None:
    """Return why ``name`` is not a usable identifier, or None when it is."""
    if not isinstance(name, str):
        return N_("must be a string")
    if not NAME_RE.fullmatch(name):
        return N_(
            "%(name)s must start with a lowercase letter and contain only lowercase "
            "letters, digits and underscores (%(limit)s characters at most)",
            name=repr(name),
            limit=MAX_NAME_LENGTH,
        )
    if name in RESERVED_NAMES:
        return N_("%(name)s is a reserved word", name=repr(name))
    return None


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is a usable identifier (see ``name_problem`` for why not)."""
    return name_problem(name) is None


def table_name(object_name: str) -> str:
    """The physical table of an object. Only ever called with a validated name."""
    if not is_valid_name(object_name):
        raise ValueError(f"invalid object name {object_name!r}")
    return f"obj_{object_name}"
