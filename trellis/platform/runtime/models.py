"""Platform tables: ordinary SQLAlchemy 2.0 typed models, migrated with Alembic.

Object tables (``obj_<name>``) are not here: they are built from metadata at run
time (see ``storage``) and live in their own ``MetaData``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key on PostgreSQL; plain INTEGER on SQLite, where only that autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC (what the timestamp columns default to)."""
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored moment with its zone: they are UTC, and SQLite hands them back without it."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def iso(moment: dt.datetime | None) -> str | None:
    """The one timestamp format of the API, history and UI: RFC 3339 in UTC with a ``Z``."""
    if moment is None:
        return None
    return as_utc(moment).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    """Declarative base of the platform tables: one naming convention for constraints,
    aware datetimes and JSON for dict and list columns.
    """

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: sa.DateTime(timezone=True),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
    }


class User(Base):
    """A person who signs in (or holds API tokens), with their lockout and session state."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str] = mapped_column(sa.String(10), default="en")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The record of the hierarchy object (e.g. a dealer) this user works for, if any.
    partner_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    manager_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    last_failed_at: Mapped[dt.datetime | None]
    locked_until: Mapped[dt.datetime | None]
    password_changed_at: Mapped[dt.datetime | None]
    # Bumped by every sign-out: sessions signed before it stop working (copied cookies too).
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class DocumentHead(Base):
    """A versioned document's head row: its name and which version is current.

    Locked ``FOR UPDATE`` by every change (``runtime/versioning.py``), so changers queue.
    """

    __abstract__ = True

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    current_version: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DocumentVersion(Base):
    """An immutable version of a versioned document, with who, when and what changed.

    Each kind's model adds the column naming its document (a foreign key to its head).
    """

    __abstract__ = True

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version: Mapped[int]
    document: Mapped[dict[str, Any]]
    diff: Mapped[dict[str, Any] | None]
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    restored_from: Mapped[int | None]
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MetaObject(DocumentHead):
    """One row per defined object: which version of its definition is current."""

    __tablename__ = "meta_objects"


class MetaObjectVersion(DocumentVersion):
    """An immutable version of an object definition."""

    __tablename__ = "meta_object_versions"
    __table_args__ = (sa.UniqueConstraint("object_name", "version"),)

    object_name: Mapped[str] = mapped_column(sa.ForeignKey("meta_objects.name", ondelete="CASCADE"))
    # Every object version has a diff, from the first one on.
    diff: Mapped[dict[str, Any]] = mapped_column(nullable=False)


class MetaRevision(Base):
    """A single counter bumped by every metadata change, so each process knows to reload."""

    __tablename__ = "meta_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(default=0)


class RecordHistory(Base):
    """Field history: one row per write, with ``{field: [old, new]}``."""

    __tablename__ = "record_history"
    __table_args__ = (sa.Index("ix_record_history_record", "object_name", "record_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    object_name: Mapped[str] = mapped_column(sa.String(40))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(16))
    version: Mapped[int]
    changes: Mapped[dict[str, Any]]
    # What else the write was: a transition's name, from and to states, and comment.
    detail: Mapped[dict[str, Any] | None]
    changed_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AutonumberCounter(Base):
    """The last number handed out per object, field and period (e.g. per year)."""

    __tablename__ = "autonumber_counters"

    object_name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    field_name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class InstalledPack(Base):
    """A pack installed in this database: its version, manifest and whether demo data loaded."""

    __tablename__ = "installed_packs"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(32))
    manifest: Mapped[dict[str, Any]]
    demo_loaded: Mapped[bool] = mapped_column(default=False)
    installed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Role(DocumentHead):
    """A role: which version of its document is current."""

    __tablename__ = "roles"


class RoleVersion(DocumentVersion):
    """An immutable version of a role document (``diff`` is null for versions written
    before roles kept diffs, migration 0003)."""

    __tablename__ = "role_versions"
    __table_args__ = (sa.UniqueConstraint("role_name", "version"),)

    role_name: Mapped[str] = mapped_column(sa.ForeignKey("roles.name", ondelete="CASCADE"))
    summary: Mapped[str] = mapped_column(sa.Text, default="", server_default="")


class Workflow(DocumentHead):
    """A workflow (a state machine over an object's status): its current version."""

    __tablename__ = "workflows"


class WorkflowVersion(DocumentVersion):
    """An immutable version of a workflow document."""

    __tablename__ = "workflow_versions"
    __table_args__ = (sa.UniqueConstraint("workflow_name", "version"),)

    workflow_name: Mapped[str] = mapped_column(sa.ForeignKey("workflows.name", ondelete="CASCADE"))
    summary: Mapped[str] = mapped_column(sa.Text, default="", server_default="")


class UserRole(Base):
    """One role held by one user; deleting either side deletes the row."""

    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role_name: Mapped[str] = mapped_column(
        sa.ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True
    )


class HierarchyLink(Base):
    """Closure table of a hierarchy object (e.g. dealers): every ancestor → descendant pair.

    Maintained on every write of the hierarchy object, so "this partner and every
    partner below it" is one indexed lookup, whatever the depth of the tree.
    """

    __tablename__ = "hierarchy_links"
    __table_args__ = (sa.Index("ix_hierarchy_links_descendant", "object_name", "descendant_id"),)

    object_name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    ancestor_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    descendant_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    depth: Mapped[int]


class AuditEvent(Base):
    """Who did what, when, from where: sign-ins, token use, denials, metadata and role changes."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
    actor_email: Mapped[str | None] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(60))
    target: Mapped[str | None] = mapped_column(sa.String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))


class ListView(Base):
    """A saved list view: columns, filters and sort of an object's list, under a label.

    Private to its owner, or shared with every holder of ``shared_with_role`` (shared
    views are made and changed by administrators). ``version`` makes updates optimistic.
    """

    __tablename__ = "list_views"
    __table_args__ = (
        sa.UniqueConstraint("owner_id", "object_name", "label"),
        sa.Index("ix_list_views_shared", "object_name", "shared_with_role"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    object_name: Mapped[str] = mapped_column(sa.ForeignKey("meta_objects.name", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(sa.String(120))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # A role that goes away leaves the view with its owner, private.
    shared_with_role: Mapped[str | None] = mapped_column(
        sa.ForeignKey("roles.name", ondelete="SET NULL")
    )
    definition: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StoredFile(Base):
    """One uploaded file of a record's ``file`` or ``image`` field: what was sniffed from
    its content, and the key of its bytes in the file store (``runtime/files.py``).

    Rows stay when the record is soft-deleted or the field gets a new file (history may
    point at them); purging the record removes them and, once no row names them, the bytes.
    """

    __tablename__ = "stored_files"
    __table_args__ = (sa.Index("ix_stored_files_record", "object_name", "record_id", "field_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    object_name: Mapped[str] = mapped_column(sa.String(40))
    field_name: Mapped[str] = mapped_column(sa.String(40))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    storage_key: Mapped[str] = mapped_column(sa.String(100), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    mime: Mapped[str] = mapped_column(sa.String(100))
    original_name: Mapped[str] = mapped_column(sa.String(255))
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
