"""Workflows as versioned documents (``runtime/versioning.py``), and what a new version
does to the records already in flight.

A new version (or the first) must leave every live record in one of its states. States
that went away are mapped by the version's ``"x-state-map": {"old": "new"}`` (``""``: the
records that have no status yet); the records are moved in the same transaction, through
the record service, with a history row each. A state in use that is neither kept nor
mapped refuses the change, naming up to ten of its records and how many more.
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from trellis.exceptions import IncompatibleChange, InvalidDefinition
from trellis.platform.messages import N_
from trellis.platform.metadata.definition import Problem
from trellis.platform.metadata.diff import DocumentDiff
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.versioning import WORKFLOWS, Change, DocumentStore
from trellis.platform.runtime.workflow.guard import moving
from trellis.platform.workflow import migrate_states, parse_workflow, validate_workflow

NAMED_RECORDS = 10  # how many records a refusal names before "and N more"


class WorkflowService(DocumentStore[DocumentDiff]):
    """Create, change, restore and delete workflows."""

    kind = WORKFLOWS

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        """The workflow as stored, checked against the current objects and roles: one
        workflow per object, and its object and status field fixed once created.

        Raises ``InvalidDefinition`` listing every problem at its JSON pointer.
        """
        self.registry.ensure_current(self.session)
        problems = validate_workflow(
            document, self.registry.documents(), set(self.registry.role_documents())
        )
        if not problems:
            problems = self._placement_problems(document, name)
        if problems:
            raise InvalidDefinition(
                N_("the workflow has %(count)s problem(s)", count=len(problems)),
                [p.as_detail() for p in problems],
            )
        return dict(document)

    def _placement_problems(self, document: dict[str, Any], name: str | None) -> list[Problem]:
        object_name = document["object"]
        for other, (_version, doc) in self.registry.workflow_documents().items():
            if other != name and doc.get("object") == object_name:
                return [
                    Problem(
                        "/object",
                        N_(
                            "%(object)s already has workflow %(other)s",
                            object=object_name,
                            other=repr(other),
                        ),
                    )
                ]
        current = self.registry.workflow_documents().get(name or "")
        if current is None:
            return []
        problems = []
        for key in ("object", "status_field"):
            if current[1].get(key) != document[key]:
                problems.append(
                    Problem(
                        f"/{key}",
                        N_(
                            "cannot change (it is %(value)s); create another workflow",
                            value=repr(current[1].get(key)),
                        ),
                    )
                )
        return problems

    def on_new_version(self, change: Change[DocumentDiff]) -> None:
        """Keep the records in flight valid: move mapped states, refuse unmapped ones."""
        workflow = parse_workflow(change.document, change.version)
        meta = self.registry.get(workflow.object_name)
        table = meta.table
        status = table.c[workflow.status_field]
        live = table.c.deleted_at.is_(None)
        in_use = list(self.session.scalars(sa.select(status).where(live).distinct()))
        migration = migrate_states(workflow, in_use)
        if migration.unmapped:
            raise IncompatibleChange(
                N_(
                    "records of %(object)s are in states this version does not have; map them "
                    'with "x-state-map": {"old": "new"}',
                    object=meta.name,
                ),
                [self._stranded(table, status, state) for state in migration.unmapped],
            )
        self._keep_requests(change.document, workflow, meta.name)
        records = RecordService(self.session, self.registry)
        for old, new in migration.moves.items():
            chosen = status.is_(None) if old is None else status == old
            rows = self.session.execute(
                sa.select(table.c.id, table.c.version).where(live, chosen).order_by(table.c.id)
            ).all()
            detail = {"workflow": workflow.name, "workflow_version": change.version,
                      "mapped": {"from": old, "to": new}}  # fmt: skip
            for record_id, version in rows:
                with moving(self.session, meta.name, record_id):
                    records.update(
                        meta.name,
                        record_id,
                        {"version": version, workflow.status_field: new},
                        history=("state_mapped", detail),
                    )

    def _keep_requests(self, document: dict[str, Any], workflow: Any, object_name: str) -> None:
        """Pending approval requests follow the new version by step name: each keeps its
        step (and its tasks their steps) at the step's new position. A version that drops
        a request's approval, or a step it waits at or went through (a rejection may
        return there), is refused naming the records."""
        from trellis.platform.runtime.models import ApprovalRequest, ApprovalTask

        requests = cast("sa.Table", ApprovalRequest.__table__)
        tasks = cast("sa.Table", ApprovalTask.__table__)
        pending = self.session.execute(
            sa.select(requests.c.id, requests.c.record_id, requests.c.transition,
                      requests.c.step_name)
            .where(requests.c.object_name == object_name, requests.c.status == "pending")
            .order_by(requests.c.record_id)
        ).all()  # fmt: skip
        stranded: dict[tuple[str, str], list[int]] = {}
        keep: list[tuple[int, Any]] = []
        positions = {t.get("name"): i for i, t in enumerate(document.get("transitions", []))}
        for request_id, record_id, transition_name, step_name in pending:
            transition = workflow.transition(transition_name)
            flow = transition.approval if transition is not None else None
            if flow is None:
                where = f"/transitions/{positions.get(transition_name, 0)}/approval"
                stranded.setdefault((where, transition_name), []).append(record_id)
                continue
            visited = set(
                self.session.scalars(
                    sa.select(tasks.c.step_name).where(tasks.c.request_id == request_id)
                )
            ) | {step_name}
            missing = sorted(n for n in visited if n and flow.step(n) is None)
            for name in missing:
                where = f"/transitions/{positions[transition_name]}/approval/steps"
                stranded.setdefault((where, name), []).append(record_id)
            if not missing:
                keep.append((request_id, flow))
        if stranded:
            raise IncompatibleChange(
                N_(
                    "approvals of %(object)s are pending on what this version drops; decide "
                    "or recall them first",
                    object=object_name,
                ),
                [
                    {
                        "field": where,
                        "message": N_(
                            "%(count)s pending approval(s) need %(name)s: records %(ids)s",
                            count=len(ids),
                            name=repr(name),
                            ids=", ".join(str(i) for i in ids[:NAMED_RECORDS])
                            + (f" (+{len(ids) - NAMED_RECORDS})" if len(ids) > NAMED_RECORDS
                               else ""),
                        ),
                    }
                    for (where, name), ids in stranded.items()
                ],
            )  # fmt: skip
        for request_id, flow in keep:
            for index, step in enumerate(flow.steps):
                self.session.execute(
                    sa.update(requests)
                    .where(requests.c.id == request_id, requests.c.step_name == step.name)
                    .values(step_index=index)
                )
                self.session.execute(
                    sa.update(tasks)
                    .where(tasks.c.request_id == request_id, tasks.c.step_name == step.name)
                    .values(step_index=index)
                )

    def _stranded(self, table: sa.Table, column: Any, state: str | None) -> dict[str, str]:
        """The refusal detail of a state in use that the new version drops unmapped."""
        chosen = column.is_(None) if state is None else column == state
        live = sa.and_(table.c.deleted_at.is_(None), chosen)
        count = self.session.execute(
            sa.select(sa.func.count()).select_from(table).where(live)
        ).scalar_one()
        ids = self.session.scalars(
            sa.select(table.c.id).where(live).order_by(table.c.id).limit(NAMED_RECORDS)
        ).all()
        named = ", ".join(str(i) for i in ids)
        more = count - len(ids)
        shown = N_("%(ids)s and %(more)s more", ids=named, more=more) if more > 0 else named
        return {
            "field": f"/x-state-map/{state or ''}",
            "message": N_(
                "%(count)s record(s) are in %(state)s: %(ids)s",
                count=count,
                state=repr(state) if state is not None else N_("no state"),
                ids=shown,
            ),
        }
