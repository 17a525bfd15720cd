"""The metadata cache: current definitions, compiled once per revision.

Each process keeps one ``MetaRegistry``. Every metadata change bumps a single
revision counter in the database (``meta_revision``); at the start of a unit of
work the registry compares that counter with the one it was built from and
rebuilds when they differ, so a change made in one process is seen by every other
(DESIGN §9). Records never parse definitions themselves: they ask ``ObjectMeta``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import fastjsonschema
import sqlalchemy as sa

from trellis.exceptions import NotFound, ValidationFailed
from trellis.platform.messages import N_, schema_message
from trellis.platform.metadata.automations import Automation
from trellis.platform.metadata.definition import ObjectDefinition, load_definition
from trellis.platform.metadata.fieldtypes import FieldType
from trellis.platform.metadata.names import SYSTEM_COLUMNS
from trellis.platform.metadata.patterns import fast_validator, full_validator
from trellis.platform.metadata.permissions import Permissions, combine
from trellis.platform.runtime.models import InstalledPack, MetaRevision
from trellis.platform.runtime.storage import build_table
from trellis.platform.runtime.versioning import (
    AUTOMATIONS,
    OBJECTS,
    ROLES,
    WORKFLOWS,
    current_documents,
)
from trellis.platform.workflow import Workflow, parse_workflow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from sqlalchemy.orm import Session

    from trellis.platform.metadata.fieldtypes import FieldSpec


@dataclass
class ObjectMeta:
    """Everything the runtime needs about one object, built once per revision."""

    definition: ObjectDefinition
    version: int
    table: sa.Table
    record_schema: dict[str, Any]
    children: list[tuple[str, FieldSpec]] = field(default_factory=list)
    referrers: list[tuple[str, FieldSpec]] = field(default_factory=list)
    # The state machine over one of its fields (at most one per object), if any.
    workflow: Workflow | None = None
    _full: Any = None
    _statements: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The object's name (``x-name``)."""
        return self.definition.name

    @cached_property
    def row_statement(self) -> sa.Select[Any]:
        """``SELECT * WHERE id = :id``, built once (every read of one record)."""
        return sa.select(self.table).where(self.table.c.id == sa.bindparam("id"))

    def statement(self, key: Any, build: Callable[[], Any]) -> Any:
        """The statement ``build`` makes, built once per ``key`` for this version of the object.

        The write path runs the same few statements on every call; kept here, each is
        built (and its SQLAlchemy cache key computed) once per definition version, and
        each call only binds its values. A race builds one twice, harmlessly.
        """
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """The definition's fields in order, each a ``FieldSpec``."""
        return self.definition.fields

    @cached_property
    def guarded_keys(self) -> frozenset[str]:
        """Keys a payload cannot simply set: system columns, lines, read-only fields.

        Built on first use, once ``build_objects`` has given the object its children.
        """
        related = {str(spec.related_name) for _, spec in self.children}
        read_only = {name for name, spec in self.fields.items() if not spec.writable}
        return frozenset(SYSTEM_COLUMNS) | related | read_only

    @cached_property
    def currency_fields(self) -> tuple[str, ...]:
        """The currency fields, whose amounts may come as JSON strings (exact)."""
        return tuple(name for name, spec in self.fields.items() if spec.type.name == "currency")

    @cached_property
    def json_converters(self) -> list[tuple[str, Callable[[Any], Any] | None]]:
        """Each field with its stored value → JSON conversion; None where there is none to do
        (text, numbers, lookups: the stored value is the JSON value), so it is not called."""
        return [
            (name, None if type(spec.type).to_json is FieldType.to_json else spec.to_json)
            for name, spec in self.fields.items()
        ]

    def to_json(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of a row (or of a dict of column values) as JSON, in definition order."""
        record = {}
        for name, convert in self.json_converters:
            value = values.get(name)
            record[name] = value if convert is None or value is None else convert(value)
        return record

    @cached_property
    def unique_fields(self) -> list[FieldSpec]:
        """Fields whose values must be free among live records (an autonumber always is)."""
        return [s for s in self.fields.values() if s.unique and s.type.name != "autonumber"]

    @cached_property
    def _fast_check(self) -> Callable[[Any], Any] | None:
        return fast_validator(self.record_schema)

    def validate(self, record: dict[str, Any]) -> None:
        """Check a record's JSON values against the compiled schema; raise with every problem.

        Patterns are RE2's in both validators (linear time, whatever the input).
        """
        fast = self._fast_check
        if fast is None:  # a schema fastjsonschema cannot run without ``re``
            details = self._details(record, None)
            if details:
                raise ValidationFailed("the record is not valid", details)
            return
        try:
            fast(record)
        except fastjsonschema.JsonSchemaException as exc:
            raise ValidationFailed("the record is not valid", self._details(record, exc)) from None

    def _details(
        self, record: dict[str, Any], fast_error: fastjsonschema.JsonSchemaException | None
    ) -> list[dict[str, str]]:
        # The fast validator stops at the first error; the full one lists them all.
        if self._full is None:
            self._full = full_validator(self.record_schema)
        details = []
        for error in self._full.iter_errors(record):
            if error.validator == "required":
                missing = error.message.split("'")[1]
                details.append({"field": missing, "message": N_("is required")})
            elif error.validator == "additionalProperties":
                for extra in sorted(set(error.instance) - set(self.record_schema["properties"])):
                    details.append({"field": extra, "message": N_("is not a field of this object")})
            elif error.validator == "type" and error.instance is None:
                # A required field sent empty (a cleared form box): say what is wrong.
                path = ".".join(str(p) for p in error.absolute_path)
                details.append({"field": path, "message": N_("is required")})
            else:
                path = ".".join(str(p) for p in error.absolute_path)
                details.append({"field": path, "message": schema_message(error)})
        if not details and fast_error is not None:
            path = str(getattr(fast_error, "name", "")).removeprefix("data.").removeprefix("data")
            details.append({"field": path, "message": str(fast_error)})
        return details


class MetaRegistry:
    """Current object definitions of one database, rebuilt when the revision moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._objects: dict[str, ObjectMeta] = {}
        self._roles: dict[str, dict[str, Any]] = {}
        self._automations: dict[str, Automation] = {}
        self._automations_by_object: dict[str, tuple[Automation, ...]] = {}
        self._workflows: dict[str, tuple[int, dict[str, Any]]] = {}
        self._permissions: dict[tuple[tuple[str, ...], bool], Permissions] = {}
        self._packs: list[tuple[str, dict[str, Any]]] = []
        self.metadata = sa.MetaData()
        # What other modules derive from this metadata (computed's plans), under their own
        # keys; each keys its entries by revision, so a rebuild never serves a stale one.
        self.derived: dict[str, Any] = {}

    @property
    def revision(self) -> int | None:
        """The metadata revision the registry was built at; ``None`` before the first
        build or after ``invalidate``.
        """
        return self._revision

    def ensure_current(self, session: Session, revision: int | None = None) -> None:
        """Rebuild when the database's revision moved (pass it when already read)."""
        if revision is None:
            revision = session.execute(
                sa.select(MetaRevision.revision).where(MetaRevision.id == 1)
            ).scalar()
        revision = revision or 0
        if revision != self._revision:
            self._rebuild(session, revision)

    def invalidate(self) -> None:
        """Forget the revision, so the next ``ensure_current`` rebuilds whatever it reads."""
        with self._lock:
            self._revision = None

    def _rebuild(self, session: Session, revision: int) -> None:
        objects = build_objects(
            [
                (load_definition(doc), version)
                for _, version, doc in current_documents(session, OBJECTS)
            ]
        )
        roles = {name: doc for name, _, doc in current_documents(session, ROLES)}
        automations = {
            name: Automation(name, version, doc)
            for name, version, doc in current_documents(session, AUTOMATIONS)
        }
        workflows = {
            name: (version, doc) for name, version, doc in current_documents(session, WORKFLOWS)
        }
        for version, doc in workflows.values():
            meta = objects.get(str(doc.get("object")))
            if meta is not None and _still_fits(meta, doc):
                meta.workflow = parse_workflow(doc, version)
        packs = [
            (name, dict(manifest))
            for name, manifest in session.execute(
                sa.select(InstalledPack.name, InstalledPack.manifest).order_by(
                    InstalledPack.installed_at, InstalledPack.name
                )
            )
        ]
        with self._lock:
            self._objects = objects
            self._roles = roles
            self._automations = automations
            self._automations_by_object = _by_object(automations.values())

            self._workflows = workflows
            self._packs = packs
            self._permissions = {}
            self.metadata = (
                next(iter(objects.values())).table.metadata if objects else sa.MetaData()
            )
            self._revision = revision

    def get(self, name: str) -> ObjectMeta:
        """The current object named ``name``; ``NotFound`` when there is none."""
        meta = self._objects.get(name)
        if meta is None:
            raise NotFound(f"no object named {name!r}")
        return meta

    def find(self, name: str) -> ObjectMeta | None:
        """The current object named ``name``, or ``None`` (``get`` refuses instead)."""
        return self._objects.get(name)

    def all(self) -> list[ObjectMeta]:
        """Every current object, in the order they were built."""
        return list(self._objects.values())

    def hierarchy_object(self) -> ObjectMeta | None:
        """The partner hierarchy (the object with a self-lookup parent), if there is one."""
        return next((m for m in self._objects.values() if m.definition.hierarchy_field), None)

    def installed_packs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(name, manifest)`` of each installed pack, oldest first (installing one
        moves the revision, so pages need not read them on every request)."""
        return list(self._packs)

    def role_documents(self) -> dict[str, dict[str, Any]]:
        """The current role documents by name (a copy of the mapping, not of each document)."""
        return dict(self._roles)

    def automations(self, object_name: str | None = None) -> list[Automation]:
        """The current automations (of one object, when named), by name."""
        if object_name is None:
            return list(self._automations.values())
        return list(self._automations_by_object.get(object_name, ()))

    def workflow_documents(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """The current workflow documents by name, each with its version."""
        return dict(self._workflows)

    def permissions(self, role_names: tuple[str, ...], is_admin: bool) -> Permissions:
        """The combined rights of these roles (cached until the next revision)."""
        key = (role_names, is_admin)
        found = self._permissions.get(key)
        if found is None:
            documents = [self._roles[name] for name in role_names if name in self._roles]
            found = combine(documents, is_admin=is_admin)
            self._permissions[key] = found
        return found

    def documents(self) -> dict[str, dict[str, Any]]:
        """The current object definitions by name, as stored (the documents are not copied)."""
        return {name: meta.definition.document for name, meta in self._objects.items()}


def _by_object(automations: Iterable[Automation]) -> dict[str, tuple[Automation, ...]]:
    """The automations grouped by their object, each group in name order."""
    groups: dict[str, list[Automation]] = {}
    for automation in automations:
        groups.setdefault(automation.object_name, []).append(automation)
    return {name: tuple(group) for name, group in groups.items()}


def _still_fits(meta: ObjectMeta, document: dict[str, Any]) -> bool:
    """Whether the object still has the workflow's status field with every state as an
    option. A definition changed since the workflow was saved may have dropped them; the
    workflow then holds no write (it is shown as it is until an administrator fixes it),
    rather than refusing every write of the object."""
    spec = meta.fields.get(str(document.get("status_field")))
    if spec is None or spec.type.name != "picklist":
        return False
    options = set(spec.schema.get("enum", []))
    return all(state.get("name") in options for state in document.get("states", []))


def build_objects(definitions: list[tuple[ObjectDefinition, int]]) -> dict[str, ObjectMeta]:
    """Build the ``ObjectMeta`` of every definition, sharing one ``MetaData`` for foreign keys."""
    metadata = sa.MetaData()
    objects = {
        definition.name: ObjectMeta(
            definition, version, build_table(definition, metadata), definition.record_schema()
        )
        for definition, version in definitions
    }
    for meta in objects.values():
        for spec in meta.definition.lookups():
            target = objects.get(str(spec.target))
            if target is None:
                continue
            if spec.type.name == "master_detail":
                target.children.append((meta.name, spec))
            else:
                target.referrers.append((meta.name, spec))
    return objects
