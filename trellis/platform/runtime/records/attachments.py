"""What the write path checks about ``user`` and ``file`` fields, and a record's purge.

A ``user`` field holds the id of an active platform user. A ``file`` or ``image`` field
holds the id of a ``stored_files`` row uploaded to that very record and field
(``RecordService.attach_file``): a write can clear it or keep it, never point it at
another record's file. Purging a soft-deleted record removes its row, its lines, its
history, its stored files and (once no row names them) their bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import ValidationFailed
from trellis.platform.messages import N_
from trellis.platform.runtime.models import StoredFile, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.records.pipeline import Draft, WriteUnit
    from trellis.platform.runtime.registry import ObjectMeta

FILE_TYPES = frozenset({"file", "image"})


def check_users_and_files(unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft]) -> None:
    """Refuse (422, naming the field) a user field naming no active user and a file field
    naming a file not uploaded to this record's field; one query per field for the batch.
    """
    for name, spec in meta.fields.items():
        kind = spec.type.name
        if kind != "user" and kind not in FILE_TYPES:
            continue
        wanted = {d.values[name] for d in drafts if d.ok and d.values.get(name) is not None}
        if not wanted:
            continue
        if kind == "user":
            found = active_users(unit, wanted)
            for draft in drafts:
                value = draft.values.get(name)
                if draft.ok and value is not None and value not in found:
                    draft.error = ValidationFailed(
                        "the record names a user who does not exist or is inactive",
                        [
                            {
                                "field": name,
                                "message": N_("no active user with id %(id)s", id=value),
                            }
                        ],
                    )
            continue
        owners = _file_owners(unit.session, wanted)
        for draft in drafts:
            value = draft.values.get(name)
            if (
                draft.ok
                and value is not None
                and owners.get(value)
                != (
                    meta.name,
                    name,
                    draft.record_id,
                )
            ):
                draft.error = ValidationFailed(
                    "the record names a file that was not uploaded to it",
                    [
                        {
                            "field": name,
                            "message": N_(
                                "upload the file to this field of the record"
                                " (POST …/files/%(field)s) instead",
                                field=name,
                            ),
                        }
                    ],
                )


def active_users(unit: WriteUnit, ids: set[int]) -> set[int]:
    """Which of ``ids`` are active users (locked shared until commit on PostgreSQL)."""
    statement = sa.select(User.id).where(User.id.in_(sorted(ids)), User.is_active.is_(True))
    if unit.dialect == "postgresql":
        statement = statement.with_for_update(read=True)
    return set(unit.session.scalars(statement).all())


def _file_owners(session: Session, ids: set[int]) -> dict[int, tuple[str, str, int]]:
    rows = session.execute(
        sa.select(
            StoredFile.id, StoredFile.object_name, StoredFile.field_name, StoredFile.record_id
        ).where(StoredFile.id.in_(sorted(ids)))
    )
    return {row.id: (row.object_name, row.field_name, row.record_id) for row in rows}


def user_names(session: Session, ids: set[int]) -> dict[int, str]:
    """``{id: name or e-mail}`` of the users among ``ids``."""
    if not ids:
        return {}
    rows = session.execute(
        sa.select(User.id, User.name, User.email).where(User.id.in_(sorted(ids)))
    )
    return {row.id: row.name or row.email for row in rows}


def active_user_choices(session: Session, limit: int = 500) -> list[tuple[int, str]]:
    """``(id, name or e-mail)`` of the active users, by name, for a user field's select."""
    rows = session.execute(
        sa.select(User.id, User.name, User.email)
        .where(User.is_active.is_(True))
        .order_by(User.name, User.email)
        .limit(limit)
    )
    return [(row.id, row.name or row.email) for row in rows]


def stored_files(session: Session, ids: set[int]) -> dict[int, StoredFile]:
    """The ``stored_files`` rows among ``ids``, by id."""
    if not ids:
        return {}
    rows = session.scalars(sa.select(StoredFile).where(StoredFile.id.in_(sorted(ids))))
    return {row.id: row for row in rows}


def file_json(stored: StoredFile) -> dict[str, Any]:
    """A stored file's metadata as the API tells it."""
    from trellis.platform.runtime.models import iso

    return {
        "id": stored.id,
        "name": stored.original_name,
        "size": stored.size,
        "mime": stored.mime,
        "sha256": stored.sha256,
        "created_by": stored.created_by,
        "created_at": iso(stored.created_at),
    }


__all__ = [
    "FILE_TYPES",
    "active_user_choices",
    "active_users",
    "check_users_and_files",
    "file_json",
    "stored_files",
    "user_names",
]
