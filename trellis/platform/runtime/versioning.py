"""The one versioned-document store: object definitions, roles, automations and
workflows are kept, changed, listed and restored the same way.

A kind of document has a head row (``DocumentHead``: its name and current version) and
immutable version rows (``DocumentVersion``: the document, its diff from the version
before, a one-line summary, who, when, and which version a restore brought back).

- Every change locks the head ``FOR UPDATE`` first, so two changers of one document queue
  and the second builds on the first: versions N+1 and N+2, no update lost.
- A change identical to the current document writes nothing.
- A restore writes the old document as a new version; history is never rewritten.
- A delete removes the head and its versions (the last document goes into the audit
  event, so what was deleted can still be read), once ``check_deletable`` found nothing
  that still depends on it.
- Every new version bumps the metadata revision (every process reloads its caches) and
  leaves an audit event, ``<kind>.created`` / ``.updated`` / ``.restored``.

What differs between kinds stays with their services, which subclass ``DocumentStore``:
``validate`` checks a document and returns the form to store; ``on_new_version`` does what
a new version implies (an object's DDL) in the same transaction. The store never commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa

from trellis.exceptions import (
    BadRequest,
    Conflict,
    NotFound,
    ReferencedDocument,
    StaleRecord,
    TrellisError,
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.metadata.diff import Diff, diff_definitions, diff_documents
from trellis.platform.runtime import audit
from trellis.platform.runtime.models import (
    AutomationHead,
    AutomationVersion,
    DocumentHead,
    DocumentVersion,
    MetaObject,
    MetaObjectVersion,
    MetaRevision,
    Role,
    RoleVersion,
    Workflow,
    WorkflowVersion,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry

D = TypeVar("D", bound=Diff)


@dataclass(frozen=True)
class DocumentKind(Generic[D]):
    """What the store needs to know of one kind of document."""

    name: str  # "object": audit actions (object.updated), targets (object/dealer), messages
    path: str  # "/objects": where the API changes one, named when a create conflicts
    head: type[DocumentHead]
    version: type[DocumentVersion]
    owner: str  # the version model's column naming its document ("object_name")
    diff: Callable[[dict[str, Any] | None, dict[str, Any]], D]
    # What a changed x-name is refused with (kept as each kind's API has always answered).
    rename_error: type[TrellisError] = ValidationFailed


OBJECTS = DocumentKind(
    "object",
    "/objects",
    MetaObject,
    MetaObjectVersion,
    "object_name",
    diff_definitions,
    rename_error=BadRequest,
)
ROLES = DocumentKind("role", "/roles", Role, RoleVersion, "role_name", diff_documents)
AUTOMATIONS = DocumentKind(
    "automation",
    "/automations",
    AutomationHead,
    AutomationVersion,
    "automation_name",
    diff_documents,
)
WORKFLOWS = DocumentKind(
    "workflow", "/workflows", Workflow, WorkflowVersion, "workflow_name", diff_documents
)


# Each kind's name as its refusals say it ("object 'dealer' already exists").
_NOUNS = {
    "object": N_("object"),
    "role": N_("role"),
    "automation": N_("automation"),
    "workflow": N_("workflow"),
}


@dataclass(frozen=True)
class Change(Generic[D]):
    """A new version, just written: what ``on_new_version`` is told."""

    name: str
    version: int
    document: dict[str, Any]
    previous: dict[str, Any] | None  # the document it replaces; None when created
    diff: D
    restored_from: int | None = None


@dataclass(frozen=True)
class Saved:
    """The outcome of a create, update or restore."""

    name: str
    version: int
    document: dict[str, Any]
    created: bool  # a new version was written (False: the document was unchanged)


class DocumentStore(ABC, Generic[D]):
    """Create, change, list and restore the documents of one kind (``kind``, set by each
    subclass); ``registry`` is the metadata the subclass's ``validate`` checks against."""

    kind: ClassVar[DocumentKind[Any]]

    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        author_id: int | None,
        audit_context: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.author_id = author_id
        # Who else to name in the audit trail (e-mail, address, user agent), if known.
        self.audit_context = audit_context or {}

    @abstractmethod
    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        """``document`` checked (a refusal raises, naming each problem), as it is to be stored.

        ``name`` is the document's own when it already has one (or claims one when created).
        """

    def on_new_version(self, change: Change[D]) -> None:
        """What a new version implies beyond its row, in the same transaction (nothing)."""

    def check_deletable(self, name: str, document: dict[str, Any]) -> list[dict[str, str]]:
        """What still depends on the document (``{field, message}`` each); empty: deletable."""
        return []

    def on_delete(self, name: str, document: dict[str, Any]) -> None:
        """What deleting the document implies beyond its rows, in the same transaction."""

    def create(self, document: Any) -> Saved:
        """Store a new document as version 1, named by its ``x-name``.

        Raises what ``validate`` raises, or ``Conflict`` when the name exists (its head row
        is locked while checked).
        """
        # Checked first: the name reaches SQL only once it is a valid identifier.
        claimed = document.get("x-name") if isinstance(document, dict) else None
        new = self.validate(document, claimed if isinstance(claimed, str) else None)
        name = new["x-name"]
        if self._head(name, lock=True) is not None:
            raise Conflict(
                N_(
                    "%(kind)s %(name)s already exists; PUT %(path)s/%(name_)s changes it",
                    kind=self._noun(),
                    name=repr(name),
                    path=self.kind.path,
                    name_=name,
                )
            )
        self.session.add(self.kind.head(name=name, current_version=1))
        return self._write(Change(name, 1, new, None, self.kind.diff(None, new)))

    def update(
        self,
        name: str,
        document: Any,
        restored_from: int | None = None,
        expected_version: int | None = None,
    ) -> Saved:
        """A new version of ``name``; with ``expected_version``, only if that is still the
        current one (a form built on an older version must not undo a newer change)."""
        head = self._require(name, lock=True)
        if expected_version is not None and expected_version != head.current_version:
            raise StaleRecord(
                N_(
                    "%(kind)s %(name)s is at version %(version)s now, not %(expected)s",
                    kind=self._noun(),
                    name=repr(name),
                    version=head.current_version,
                    expected=expected_version,
                ),
                [
                    {
                        "field": "version",
                        "message": N_("is %(version)s now", version=head.current_version),
                    }
                ],
            )
        if isinstance(document, dict) and document.get("x-name", name) != name:
            details = [{"field": "/x-name", "message": N_("must be %(value)s", value=repr(name))}]
            raise self.kind.rename_error(N_("x-name cannot change"), details)
        new = self.validate(document, name)
        old = self.version_document(name, head.current_version)
        diff = self.kind.diff(old, new)
        if diff.is_empty() and restored_from is None:
            return Saved(name, head.current_version, old, created=False)
        head.current_version += 1
        head.updated_at = utcnow()
        return self._write(Change(name, head.current_version, new, old, diff, restored_from))

    def restore(self, name: str, version: int) -> Saved:
        """Make an old version current again, as a new version (history is never rewritten)."""
        self._require(name, lock=True)
        return self.update(name, self.version_document(name, version), restored_from=version)

    def delete(self, name: str) -> int:
        """Remove the document and its versions; ``ReferencedDocument`` (409) names what
        still depends on it, and nothing changes. Returns the version that was current."""
        head = self._require(name, lock=True)
        document = self.version_document(name, head.current_version)
        blockers = self.check_deletable(name, document)
        if blockers:
            raise ReferencedDocument(
                N_(
                    "%(kind)s %(name)s cannot be deleted: %(count)s thing(s) still depend on it",
                    kind=self._noun(),
                    name=repr(name),
                    count=len(blockers),
                ),
                blockers,
            )
        version = head.current_version
        self.on_delete(name, document)
        self.session.execute(sa.delete(self.kind.version).where(self._owner() == name))
        self.session.execute(sa.delete(self.kind.head).where(self.kind.head.name == name))
        self.session.expunge(head)
        bump_revision(self.session)
        audit.record(
            self.session,
            f"{self.kind.name}.deleted",
            actor_id=self.author_id,
            target=f"{self.kind.name}/{name}",
            detail={"version": version, "document": document},
            **self.audit_context,
        )
        return version

    def versions(self, name: str) -> list[DocumentVersion]:
        """Every version of the document, newest first."""
        self._require(name)
        model = self.kind.version
        return list(
            self.session.scalars(
                sa.select(model).where(self._owner() == name).order_by(model.version.desc())
            )
        )

    def version_document(self, name: str, version: int) -> dict[str, Any]:
        """The document as stored in one version; ``NotFound`` when there is no such version."""
        model = self.kind.version
        document = self.session.execute(
            sa.select(model.document).where(self._owner() == name, model.version == version)
        ).scalar()
        if document is None:
            raise NotFound(
                N_(
                    "%(kind)s %(name)s has no version %(version)s",
                    kind=self._noun(),
                    name=repr(name),
                    version=version,
                )
            )
        return dict(document)

    def names(self) -> list[str]:
        """The names of every document of this kind, sorted."""
        head = self.kind.head
        return list(self.session.scalars(sa.select(head.name).order_by(head.name)))

    def _owner(self) -> Any:
        return getattr(self.kind.version, self.kind.owner)

    def _head(self, name: str, lock: bool = False) -> DocumentHead | None:
        # populate_existing: a head already in the session is re-read, not trusted, once locked.
        return self.session.get(
            self.kind.head, name, with_for_update=lock or None, populate_existing=lock
        )

    def _require(self, name: str, lock: bool = False) -> DocumentHead:
        head = self._head(name, lock)
        if head is None:
            raise NotFound(N_("no %(kind)s named %(name)s", kind=self._noun(), name=repr(name)))
        return head

    def _noun(self) -> str:
        return _NOUNS.get(self.kind.name, self.kind.name)

    def _write(self, change: Change[D]) -> Saved:
        summary = change.diff.summary()
        if change.restored_from is not None:
            summary = f"restored version {change.restored_from}: {summary}"
        row = self.kind.version(
            version=change.version,
            document=change.document,
            diff=change.diff.as_dict(),
            summary=summary,
            restored_from=change.restored_from,
            author_id=self.author_id,
            **{self.kind.owner: change.name},
        )
        self.session.add(row)
        self.session.flush()
        bump_revision(self.session)
        self._audit(change)
        self.on_new_version(change)
        return Saved(change.name, change.version, change.document, created=True)

    def _audit(self, change: Change[D]) -> None:
        detail: dict[str, Any] = {"version": change.version}
        if change.restored_from is not None:
            action = "restored"
            detail["from"] = change.restored_from
        else:
            action = "created" if change.previous is None else "updated"
        audit.record(
            self.session,
            f"{self.kind.name}.{action}",
            actor_id=self.author_id,
            target=f"{self.kind.name}/{change.name}",
            detail=detail,
            **self.audit_context,
        )


def current_documents(
    executor: Session | sa.Connection,
    kind: DocumentKind[Any],
    names: Collection[str] | None = None,
) -> list[tuple[str, int, dict[str, Any]]]:
    """``(name, version, document)`` of each document's current version (of ``names``
    only, when given), by name."""
    head, model = kind.head, kind.version
    owner = getattr(model, kind.owner)
    query = (
        sa.select(owner, model.version, model.document)
        .join(head, sa.and_(head.name == owner, head.current_version == model.version))
        .order_by(head.name)
    )
    if names is not None:
        query = query.where(owner.in_(names))
    return [(name, version, dict(document)) for name, version, document in executor.execute(query)]


METADATA_CHANGED = "metadata_changed"  # session.info: this transaction bumped the revision


def bump_revision(session: Session) -> None:
    """Tell every process that metadata changed (the row lock also serialises changers)."""
    updated = session.execute(
        sa.update(MetaRevision)
        .where(MetaRevision.id == 1)
        .values(revision=MetaRevision.revision + 1)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(MetaRevision(id=1, revision=1))
    # Until this commits, caches built inside the transaction must not outlive a rollback.
    session.info[METADATA_CHANGED] = True
