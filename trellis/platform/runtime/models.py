"""Platform tables: ordinary SQLAlchemy 2.0 typed models, migrated with Alembic.

Object tables (``obj_<name>``) are not here: they are built from metadata at run
time (see ``storage``) and live in their own ``MetaData``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
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
    # Whether the user's notifications are also sent to them by e-mail (their own choice).
    email_notifications: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


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


class AutomationHead(DocumentHead):
    """An automation: which version of its document is current."""

    __tablename__ = "automations"


class AutomationVersion(DocumentVersion):
    """An immutable version of an automation document."""

    __tablename__ = "automation_versions"
    __table_args__ = (sa.UniqueConstraint("automation_name", "version"),)

    automation_name: Mapped[str] = mapped_column(
        sa.ForeignKey("automations.name", ondelete="CASCADE")
    )


class AutomationRun(Base):
    """One run of an automation on one record (or of a schedule): when, which record, the
    outcome (``done``, ``failed``, ``stopped`` by the loop guard) and the error.

    Written in the transaction of what set the run off: a write that rolls back leaves
    no run behind, since nothing ran. ``run_key`` keeps a scheduled run to once across
    workers (``auto:<name>:<record id>:<date>``).
    """

    __tablename__ = "automation_runs"
    __table_args__ = (sa.Index("ix_automation_runs_automation", "automation_name", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    automation_name: Mapped[str] = mapped_column(sa.String(40))
    automation_version: Mapped[int]
    object_name: Mapped[str] = mapped_column(sa.String(40))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    trigger: Mapped[str] = mapped_column(sa.String(20))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    run_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


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


class JobStatus(StrEnum):
    """Where a job is in its life: waiting, being run, finished, or given up on."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """One unit of background work (``runtime/jobs``): the row is the job's truth.

    RQ only carries the id; whoever runs the job first claims the row (``queued`` →
    ``running``, one conditional UPDATE), so a job pushed twice still runs once. ``key``
    makes enqueueing idempotent (``cron:<schedule>:<slot>``, ``import:<id>``…).
    ``lease_until`` is pushed forward while the job runs; a running job whose lease has
    passed belonged to a worker that died, and is queued again.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_run_at", "status", "run_at"),
        sa.Index("ix_jobs_created_by_id", "created_by", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    queue: Mapped[str] = mapped_column(sa.String(40), default="default")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    run_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    pushed_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]
    claim: Mapped[str | None] = mapped_column(sa.String(36))
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    progress_done: Mapped[int | None] = mapped_column(sa.BigInteger)
    progress_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    progress_message: Mapped[str] = mapped_column(sa.String(300), default="")
    result: Mapped[Any | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutboxStatus(StrEnum):
    """An outbox event is waiting (or being retried), delivered, or given up on."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class OutboxEntry(Base):
    """An event that must not be lost, written in the transaction of the change it tells of.

    The relay delivers it at least once; ``event_id`` stays the same on every attempt so
    receivers can drop repeats. Claiming an entry moves ``next_attempt_at`` past the
    delivery lease, so an entry whose relay died is simply due again later.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (sa.Index("ix_outbox_events_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(60))
    target: Mapped[str | None] = mapped_column(sa.String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(10), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class ImportRun(Base):
    """One import of a spreadsheet into an object's records: who, what file, how its
    columns map to fields, how it is run, and — once it ran — its counts and report.

    The uploaded bytes live in the file store under ``storage_key``; ``report`` holds one
    ``{"row", "column", "message"}`` per problem (row numbers as the spreadsheet shows
    them: the header is row 1).
    """

    __tablename__ = "imports"
    __table_args__ = (sa.Index("ix_imports_object_created", "object_name", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    object_name: Mapped[str] = mapped_column(sa.String(40))
    created_by: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    file_name: Mapped[str] = mapped_column(sa.String(255))
    file_format: Mapped[str] = mapped_column(sa.String(10))  # ImportFormat
    storage_key: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    columns: Mapped[list[Any]] = mapped_column(default=list)  # the header row
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)  # column → field
    lookup_keys: Mapped[dict[str, Any]] = mapped_column(default=dict)  # field → key field
    mode: Mapped[str] = mapped_column(sa.String(20), default="all_or_nothing")  # ImportMode
    status: Mapped[str] = mapped_column(sa.String(20), default="draft")  # ImportStatus
    total_rows: Mapped[int] = mapped_column(default=0)
    done_rows: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    message: Mapped[str] = mapped_column(sa.String(500), default="")
    report: Mapped[list[Any]] = mapped_column(default=list)
    job_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class Webhook(Base):
    """An HTTP endpoint told about record events, signed with its own secret.

    The secret is kept sealed (``runtime/sealing.py``, Fernet under a key derived from the
    app's SECRET_KEY) because each delivery must sign with it; only ``secret_hint`` is ever
    shown again after it was created or rotated.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    url: Mapped[str] = mapped_column(sa.String(2000))
    # Event types (``record.created``…) and object names it wants; no objects: every object.
    events: Mapped[list[Any]]
    objects: Mapped[list[Any]]
    active: Mapped[bool] = mapped_column(default=True)
    secret_sealed: Mapped[str] = mapped_column(sa.Text)
    secret_hint: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column(default=1)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One attempt to deliver one event to one webhook: what came back and how long it took."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(60))
    attempt: Mapped[int] = mapped_column(default=1)
    ok: Mapped[bool]
    status_code: Mapped[int | None]
    duration_ms: Mapped[int]
    error: Mapped[str | None] = mapped_column(sa.String(500))
    response_excerpt: Mapped[str] = mapped_column(sa.Text, default="")
    delivered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """An in-app message to one user, optionally about a record; unread until ``read_at``.

    ``title`` and ``body`` hold the text per language (``{"en": …, "zh-CN": …}``), so each
    user reads it in their own.
    """

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_unread", "user_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[dict[str, Any]]
    body: Mapped[dict[str, Any]]
    object_name: Mapped[str | None] = mapped_column(sa.String(40))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None]


class ApprovalRequest(Base):
    """One submission of a record for approval, and where it stands.

    At most one is ``pending`` per record (a partial unique index). Decisions lock this row
    ``FOR UPDATE`` first, so the votes of one request are counted one at a time.
    """

    __tablename__ = "approval_requests"
    __table_args__ = (
        sa.Index(
            "uq_approval_requests_pending",
            "object_name",
            "record_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_approval_requests_record", "object_name", "record_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    object_name: Mapped[str] = mapped_column(sa.String(40))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    workflow_name: Mapped[str] = mapped_column(sa.String(40))
    workflow_version: Mapped[int]
    transition: Mapped[str] = mapped_column(sa.String(40))
    # pending, approved, rejected, returned (to the submitter), recalled
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    step_index: Mapped[int | None]
    step_name: Mapped[str | None] = mapped_column(sa.String(40))
    round: Mapped[int] = mapped_column(default=0)
    submitter_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]


class ApprovalTask(Base):
    """One approver's part in one step of a request.

    A step's tasks form *lanes* (``lane``): one approver each, or several deciding in
    ``seq`` order (依次, 加签). ``on_behalf_of_id`` is whom the approver stands in for (an
    out-of-office delegate, an escalation).
    """

    __tablename__ = "approval_tasks"
    __table_args__ = (
        sa.Index("ix_approval_tasks_inbox", "approver_id", "status", "id"),
        sa.Index("ix_approval_tasks_due", "status", "due_at"),
        sa.Index("ix_approval_tasks_request", "request_id", "step_index", "round"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(
        sa.ForeignKey("approval_requests.id", ondelete="CASCADE")
    )
    step_index: Mapped[int]
    step_name: Mapped[str] = mapped_column(sa.String(40))
    round: Mapped[int] = mapped_column(default=0)
    lane: Mapped[int] = mapped_column(default=0)
    seq: Mapped[int] = mapped_column(default=0)
    approver_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    on_behalf_of_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    due_at: Mapped[dt.datetime | None]
    # The deadline's action ran (a reminder is sent once); an escalation restarts the clock.
    deadline_done: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    escalations: Mapped[int] = mapped_column(default=0, server_default="0")
    decided_at: Mapped[dt.datetime | None]
    comment: Mapped[str | None] = mapped_column(sa.Text)
    # A rejection's destination: "end", "submitter" or an earlier step's name.
    reject_to: Mapped[str | None] = mapped_column(sa.String(40))


class ApprovalEvent(Base):
    """The history of a request: every submission, decision, handover, added signer,
    escalation, reminder, recall and outcome; who (``actor_id``, none: the system), on
    behalf of whom, the comment and attachments (stored file ids in ``detail``)."""

    __tablename__ = "approval_events"
    __table_args__ = (sa.Index("ix_approval_events_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(
        sa.ForeignKey("approval_requests.id", ondelete="CASCADE")
    )
    task_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("approval_tasks.id", ondelete="SET NULL")
    )
    step_name: Mapped[str | None] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(20))
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    on_behalf_of_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    comment: Mapped[str | None] = mapped_column(sa.Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutOfOffice(Base):
    """A user away from ``starts_on`` to ``ends_on`` (inclusive): the approval tasks that
    reach them then go to ``delegate_id``, on their behalf."""

    __tablename__ = "out_of_office"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    delegate_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    starts_on: Mapped[dt.date]
    ends_on: Mapped[dt.date]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
