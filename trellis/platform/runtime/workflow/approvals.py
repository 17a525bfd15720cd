"""Approval requests: submitting, deciding, handing over, adding signers, recalling, and
deadlines. The pure rules are ``platform/workflow/approval.py``; this applies them in the
caller's transaction.

Locking: every change to a request locks its row ``FOR UPDATE`` first (SQLite serialises
writers), then, when an outcome fires a transition, the record's row. Two approvers
deciding at once queue on the request: the second sees the first's outcome (its own task
closed, 409) or is counted after it — votes are never lost or counted twice. A submission
runs inside its transition, which holds the record's row; the partial unique index on
pending requests refuses a second one.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.exceptions import ApprovalConflict, Forbidden, NotFound, ValidationFailed
from trellis.platform.expressions import compiled
from trellis.platform.messages import N_
from trellis.platform.runtime import computed
from trellis.platform.runtime.automations.engine import workflow_event
from trellis.platform.runtime.models import (
    ApprovalEvent,
    ApprovalRequest,
    ApprovalTask,
    OutOfOffice,
    User,
    UserRole,
    iso,
    utcnow,
)
from trellis.platform.runtime.notifications.service import notify
from trellis.platform.runtime.records import RecordService
from trellis.platform.workflow.approval import (
    END,
    SUBMITTER,
    ApprovalFlow,
    Approver,
    DeadlineAction,
    Outcome,
    Step,
    TaskStatus,
    TaskView,
    next_active,
    next_step,
    return_target,
    step_outcome,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta
    from trellis.platform.workflow import Workflow

REQUESTS = cast("sa.Table", ApprovalRequest.__table__)
TASKS = cast("sa.Table", ApprovalTask.__table__)
EVENTS = cast("sa.Table", ApprovalEvent.__table__)
MAX_COMMENT = 2000
MAX_ATTACHMENTS = 10
DECISIONS = ("approve", "reject")

# What the notifications say, in both languages (``{object}``: the object's label,
# ``{title}``: the record's).
_ARRIVED = {"en": "Approval needed: {object} {title}", "zh-CN": "待审批：{object} {title}"}
_CC = {"en": "For your information: {object} {title} was submitted for approval",
       "zh-CN": "抄送：{object} {title} 已提交审批"}  # fmt: skip
_DONE = {
    "approved": {"en": "Approved: {object} {title}", "zh-CN": "已通过：{object} {title}"},
    "rejected": {"en": "Rejected: {object} {title}", "zh-CN": "已驳回：{object} {title}"},
    "returned": {"en": "Returned for rework: {object} {title}",
                 "zh-CN": "已退回修改：{object} {title}"},
}  # fmt: skip
_REMIND = {"en": "Reminder, approval overdue: {object} {title}",
           "zh-CN": "催办：审批已超时 {object} {title}"}  # fmt: skip
_SYSTEM = {
    "approve": N_("approved automatically: the deadline passed"),
    "reject": N_("rejected automatically: the deadline passed"),
}


class ApprovalService:
    """Approval requests of records, as ``caller`` may act on them (``None``: the system)."""

    def __init__(self, session: Session, registry: MetaRegistry, caller: Caller | None) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller

    @property
    def user_id(self) -> int | None:
        """The caller's user id (None: the system)."""
        return self.caller.user_id if self.caller else None

    # --- submission ----------------------------------------------------------------------

    def submit(
        self, object_name: str, record_id: int, comment: Any = None, version: int | None = None
    ) -> dict[str, Any]:
        """Submit the record: fire the transition from its state that carries an approval
        (its roles, scope and guard apply). 409 when none leaves the state."""
        from trellis.platform.runtime.workflow.transitions import TransitionService

        service = TransitionService(self.session, self.registry, self.caller)
        meta, workflow = service.workflow_of(object_name)
        row = service._row(meta, record_id, lock=False)
        state = row[workflow.status_field]
        submit = next((t for t in workflow.transitions_from(state) if t.approval), None)
        if submit is None:
            message = N_(
                "%(object)s %(id)s cannot be submitted for approval from %(state)s",
                object=meta.name,
                id=record_id,
                state=repr(state),
            )
            raise ApprovalConflict(message, [{"field": "approval", "message": message}])
        service.fire(object_name, record_id, submit.name, comment, version)
        return self.state(object_name, record_id)

    def open(
        self,
        meta: ObjectMeta,
        workflow: Workflow,
        flow: ApprovalFlow,
        record_id: int,
        comment: str | None,
    ) -> int:
        """Open a request for a record its submission just moved (inside the transition).
        The first step whose condition holds gets its tasks; with none, it is approved."""
        submitter = self.user_id
        found = self.session.execute(
            sa.insert(REQUESTS)
            .values(
                object_name=meta.name,
                record_id=record_id,
                workflow_name=workflow.name,
                workflow_version=workflow.version,
                transition=flow.submit,
                status="pending",
                round=0,
                submitter_id=submitter,
                submitted_at=utcnow(),
            )
            .returning(REQUESTS.c.id)
        )
        request_id = int(found.scalar_one())
        self._event(request_id, None, None, "submitted", submitter, None, comment, {})
        values = self._values(meta, record_id)
        cc = self._resolve(flow.cc_submitted, meta, values, submitter)
        if cc:
            self._notify(cc, _CC, meta, record_id, values)
            self._event(request_id, None, None, "cc", None, None, None, {"users": cc})
        workflow_event(self.session, self.registry, meta.name, record_id, "submitted")
        self._advance(request_id, meta, flow, values, None)
        return request_id

    def recall(self, object_name: str, record_id: int, comment: Any = None) -> dict[str, Any]:
        """The submitter takes the request back before anyone has decided (撤回): the
        ``recalled`` transition fires. 403 for anyone else; 409 once someone has acted."""
        meta = self.registry.get(object_name)
        request = self._pending(meta, record_id, lock=True)
        if self.caller is None or (
            request["submitter_id"] != self.caller.user_id and not self.caller.is_admin
        ):
            raise Forbidden(N_("only the submitter may recall the request"))
        acted = self.session.execute(
            sa.select(EVENTS.c.action).where(
                EVENTS.c.request_id == request["id"],
                EVENTS.c.action.in_(("approved", "rejected", "handed_over", "signer_added")),
                EVENTS.c.actor_id.is_not(None),
            )
        ).first()
        if acted is not None:
            message = N_("an approver has already acted on this request; it cannot be recalled")
            raise ApprovalConflict(message, [{"field": "approval", "message": message}])
        flow = self._flow(meta, request)
        text = _comment(comment)
        self._finish(request, meta, flow, "recalled", text, self.user_id)
        return self.state(object_name, record_id)

    # --- decisions -----------------------------------------------------------------------

    def decide(
        self,
        task_id: int,
        decision: str,
        comment: Any = None,
        to: Any = None,
        attachments: Any = None,
    ) -> dict[str, Any]:
        """Approve or reject one's own pending task. A rejection goes ``to`` the end
        (default), the submitter, or an earlier step. 403 when the task is not the
        caller's; 409 when it is not pending (decided, not yet their turn, or closed)."""
        if decision not in DECISIONS:
            raise NotFound(N_("unknown decision %(name)s", name=repr(decision)))
        task, request, meta, flow = self._own_task(task_id)
        text = _comment(comment)
        files = _attachments(attachments)
        if files:
            self._require_files(meta, request["record_id"], files)
        step = flow.steps[task["step_index"]]
        destination: Any = None
        if decision == "reject":
            if not isinstance(to, str | None):
                raise ValidationFailed(
                    N_("'to' must be a step name or \"submitter\""),
                    [{"field": "to", "message": N_("must be text")}],
                )
            try:
                destination = return_target(
                    flow, task["step_index"], to, self._visited(request["id"])
                )
            except ValueError as exc:
                problem = exc.args[0]
                raise ValidationFailed(problem, [{"field": "to", "message": problem}]) from None
        status = TaskStatus.APPROVED if decision == "approve" else TaskStatus.REJECTED
        self.session.execute(
            sa.update(TASKS)
            .where(TASKS.c.id == task["id"])
            .values(
                status=status.value,
                decided_at=utcnow(),
                comment=text,
                reject_to=(to or END) if decision == "reject" else None,
            )
        )
        detail: dict[str, Any] = {"attachments": files} if files else {}
        if decision == "reject":
            detail["to"] = to or END
        self._event(request["id"], task["id"], step.name, status.value, self.user_id,
                    task["on_behalf_of_id"], text, detail)  # fmt: skip
        self._after_decision(request, meta, flow, step, text, destination)
        return self.state(meta.name, request["record_id"])

    def _after_decision(
        self,
        request: Any,
        meta: ObjectMeta,
        flow: ApprovalFlow,
        step: Step,
        comment: str | None,
        destination: Any,
    ) -> None:
        tasks = self._step_tasks(request)
        outcome = step_outcome(step, tasks)
        if outcome is None:
            woken = next_active(tasks)
            if woken:
                self._activate(woken, flow, step)
                self._notify_tasks(woken, meta, request["record_id"])
            return
        self._close_open(request)
        self._event(request["id"], None, step.name, f"step_{outcome.value}", None, None, None, {})
        values = self._values(meta, request["record_id"])
        if outcome is Outcome.APPROVED:
            self._advance(request["id"], meta, flow, values, request["step_index"])
            return
        if destination is None:  # a quorum made unreachable: the last rejection's wish
            last = self.session.execute(
                sa.select(TASKS.c.reject_to)
                .where(TASKS.c.request_id == request["id"], TASKS.c.status == "rejected")
                .order_by(TASKS.c.decided_at.desc(), TASKS.c.id.desc())
            ).scalar()
            try:
                destination = return_target(
                    flow, request["step_index"], last, self._visited(request["id"])
                )
            except ValueError:
                destination = END
        if destination == END:
            self._finish(request, meta, flow, "rejected", comment, None)
        elif destination == SUBMITTER:
            self._finish(request, meta, flow, "returned", comment, None)
        else:
            self.session.execute(
                sa.update(REQUESTS)
                .where(REQUESTS.c.id == request["id"])
                .values(round=REQUESTS.c.round + 1)
            )
            self._event(request["id"], None, flow.steps[destination].name, "returned_to_step",
                        None, None, None, {"from": step.name})  # fmt: skip
            self._start_step(request["id"], meta, flow, values, destination)

    def handover(self, task_id: int, user: Any, comment: Any = None) -> dict[str, Any]:
        """Hand one's open task to another user (转交); they decide in one's place."""
        task, request, meta, flow = self._own_task(task_id, waiting_too=True)
        target = self._user(user)
        self._not_already_in_step(request, task, target)
        text = _comment(comment)
        self.session.execute(
            sa.update(TASKS).where(TASKS.c.id == task["id"]).values(approver_id=target)
        )
        step = flow.steps[task["step_index"]]
        self._event(request["id"], task["id"], step.name, "handed_over", self.user_id,
                    task["on_behalf_of_id"], text, {"to": target})  # fmt: skip
        if task["status"] == TaskStatus.PENDING:
            self._notify([target], _ARRIVED, meta, request["record_id"])
        return self.state(meta.name, request["record_id"])

    def add_signer(
        self, task_id: int, user: Any, position: Any = "after", comment: Any = None
    ) -> dict[str, Any]:
        """Add a signer to one's lane (加签): ``before`` (they decide first, then oneself)
        or ``after`` (oneself first, then they)."""
        if position not in ("before", "after"):
            raise ValidationFailed(
                N_('position must be "before" or "after"'),
                [{"field": "position", "message": N_('must be "before" or "after"')}],
            )
        task, request, meta, flow = self._own_task(task_id)
        target = self._user(user)
        self._not_already_in_step(request, task, target)
        text = _comment(comment)
        seq = task["seq"] if position == "before" else task["seq"] + 1
        self.session.execute(
            sa.update(TASKS)
            .where(
                TASKS.c.request_id == request["id"],
                TASKS.c.step_index == task["step_index"],
                TASKS.c.round == task["round"],
                TASKS.c.lane == task["lane"],
                TASKS.c.seq >= seq,
            )
            .values(seq=TASKS.c.seq + 1)
        )
        step = flow.steps[task["step_index"]]
        new_status = TaskStatus.PENDING if position == "before" else TaskStatus.WAITING
        new_id = self._insert_task(request["id"], task["step_index"], step, task["round"],
                                   task["lane"], seq, target, None, new_status, flow)  # fmt: skip
        if position == "before":
            self.session.execute(
                sa.update(TASKS)
                .where(TASKS.c.id == task["id"])
                .values(status=TaskStatus.WAITING.value, due_at=None)
            )
            self._notify([target], _ARRIVED, meta, request["record_id"])
        self._event(request["id"], task["id"], step.name, "signer_added", self.user_id,
                    task["on_behalf_of_id"], text,
                    {"user": target, "position": position, "task": new_id})  # fmt: skip
        return self.state(meta.name, request["record_id"])

    # --- deadlines -----------------------------------------------------------------------

    def run_deadlines(self, now: dt.datetime | None = None, limit: int = 200) -> int:
        """Act on the pending tasks whose deadline has passed: remind once, escalate
        (restarting the clock), or decide for the system. Each task is taken under its
        request's lock and re-read, so two workers never act twice on one deadline."""
        now = now or utcnow()
        due = self.session.execute(
            sa.select(TASKS.c.id, TASKS.c.request_id)
            .where(
                TASKS.c.status == "pending",
                TASKS.c.due_at <= now,
                TASKS.c.deadline_done.is_(False),
            )
            .order_by(TASKS.c.due_at, TASKS.c.id)
            .limit(limit)
        ).all()
        acted = 0
        for task_id, request_id in due:
            if self._lock_request(request_id) is None:
                continue
            task = self.session.execute(
                sa.select(TASKS).where(
                    TASKS.c.id == task_id,
                    TASKS.c.status == "pending",
                    TASKS.c.due_at <= now,
                    TASKS.c.deadline_done.is_(False),
                )
            ).mappings().first()  # fmt: skip
            if task is None:
                continue  # another worker acted first
            request = self._request_row(request_id)
            meta = self.registry.get(request["object_name"])
            flow = self._flow(meta, request)
            step = flow.steps[task["step_index"]]
            if step.deadline is None:
                continue
            self._on_deadline(task, request, meta, flow, step, now)
            acted += 1
        return acted

    def _on_deadline(
        self, task: Any, request: Any, meta: ObjectMeta, flow: ApprovalFlow, step: Step,
        now: dt.datetime,
    ) -> None:  # fmt: skip
        deadline = step.deadline
        assert deadline is not None
        record_id = request["record_id"]
        if deadline.action is DeadlineAction.REMIND:
            self.session.execute(
                sa.update(TASKS).where(TASKS.c.id == task["id"]).values(deadline_done=True)
            )
            self._notify([task["approver_id"]], _REMIND, meta, record_id)
            self._event(request["id"], task["id"], step.name, "reminded", None, None, None, {})
            return
        if deadline.action is DeadlineAction.ESCALATE:
            values = self._values(meta, record_id)
            spec = deadline.to or Approver("manager", 1)
            found = self._resolve((spec,), meta, values, task["approver_id"])
            target = next((u for u in found if u != task["approver_id"]), None)
            if target is None:
                self.session.execute(
                    sa.update(TASKS).where(TASKS.c.id == task["id"]).values(deadline_done=True)
                )
                self._event(request["id"], task["id"], step.name, "escalation_failed", None,
                            None, None, {"to": spec.as_json()})  # fmt: skip
                return
            self.session.execute(
                sa.update(TASKS)
                .where(TASKS.c.id == task["id"])
                .values(
                    approver_id=target,
                    on_behalf_of_id=task["on_behalf_of_id"] or task["approver_id"],
                    escalations=TASKS.c.escalations + 1,
                    due_at=flow.calendar.add(now, deadline),
                )
            )
            self._event(request["id"], task["id"], step.name, "escalated", None, None, None,
                        {"from": task["approver_id"], "to": target})  # fmt: skip
            self._notify([target], _ARRIVED, meta, record_id)
            workflow_event(self.session, self.registry, meta.name, record_id, "escalated")
            return
        decision = "approve" if deadline.action is DeadlineAction.APPROVE else "reject"
        status = TaskStatus.APPROVED if decision == "approve" else TaskStatus.REJECTED
        text = str(_SYSTEM[decision])
        self.session.execute(
            sa.update(TASKS)
            .where(TASKS.c.id == task["id"])
            .values(status=status.value, decided_at=now, comment=text, reject_to=None)
        )
        self._event(request["id"], task["id"], step.name, f"auto_{status.value}", None,
                    None, text, {})  # fmt: skip
        self._after_decision(request, meta, flow, step, text, None if decision == "approve"
                             else END)  # fmt: skip

    # --- reading -------------------------------------------------------------------------

    def state(self, object_name: str, record_id: int) -> dict[str, Any]:
        """The record's latest request: its flow's steps, every task and the history
        (``request`` is None when it was never submitted)."""
        meta = self.registry.get(object_name)
        request = (
            self.session.execute(
                sa.select(REQUESTS)
                .where(REQUESTS.c.object_name == meta.name, REQUESTS.c.record_id == record_id)
                .order_by(REQUESTS.c.id.desc())
            )
            .mappings()
            .first()
        )
        workflow = meta.workflow
        submittable = bool(workflow and workflow.has_approvals)
        if request is None:
            return {"object": meta.name, "id": record_id, "approvable": submittable,
                    "request": None, "steps": [], "tasks": [], "history": []}  # fmt: skip
        flow = self._flow(meta, request, required=False)
        tasks = self.session.execute(
            sa.select(TASKS).where(TASKS.c.request_id == request["id"]).order_by(TASKS.c.id)
        ).mappings().all()  # fmt: skip
        events = self.session.execute(
            sa.select(EVENTS).where(EVENTS.c.request_id == request["id"]).order_by(EVENTS.c.id)
        ).mappings().all()  # fmt: skip
        users = self._names(
            [t["approver_id"] for t in tasks]
            + [t["on_behalf_of_id"] for t in tasks]
            + [e["actor_id"] for e in events]
            + [e["on_behalf_of_id"] for e in events]
            + [request["submitter_id"]]
        )
        visited = {t["step_index"] for t in tasks}
        steps = []
        for index, step in enumerate(flow.steps if flow else ()):
            if request["status"] == "pending" and index == request["step_index"]:
                where = "current"
            elif index in visited:
                where = "done"
            else:
                where = "ahead"
            steps.append({"name": step.name, "label": step.label, "mode": step.mode.value,
                          "state": where, "editable": sorted(step.editable)})  # fmt: skip
        mine = self.user_id
        return {
            "object": meta.name,
            "id": record_id,
            "approvable": submittable,
            "request": {
                "id": request["id"],
                "status": request["status"],
                "transition": request["transition"],
                "step": request["step_name"],
                "round": request["round"],
                "submitter": _person(request["submitter_id"], users),
                "submitted_at": iso(request["submitted_at"]),
                "decided_at": iso(request["decided_at"]),
                "recallable": bool(
                    request["status"] == "pending"
                    and mine is not None
                    and mine == request["submitter_id"]
                    and not any(
                        e["actor_id"] is not None
                        and e["action"] in ("approved", "rejected", "handed_over", "signer_added")
                        for e in events
                    )
                ),
            },
            "steps": steps,
            "tasks": [
                {
                    "id": t["id"],
                    "step": t["step_name"],
                    "round": t["round"],
                    "lane": t["lane"],
                    "seq": t["seq"],
                    "approver": _person(t["approver_id"], users),
                    "on_behalf_of": _person(t["on_behalf_of_id"], users),
                    "status": t["status"],
                    "due_at": iso(t["due_at"]),
                    "decided_at": iso(t["decided_at"]),
                    "comment": t["comment"],
                    "mine": mine is not None and t["approver_id"] == mine,
                }
                for t in tasks
            ],
            "history": [
                {
                    "at": iso(e["at"]),
                    "action": e["action"],
                    "step": e["step_name"],
                    "task": e["task_id"],
                    "by": _person(e["actor_id"], users),
                    "on_behalf_of": _person(e["on_behalf_of_id"], users),
                    "comment": e["comment"],
                    "detail": e["detail"] or {},
                }
                for e in events
            ],
        }

    def inbox(
        self,
        user_id: int,
        *,
        object_name: str | None = None,
        overdue: bool = False,
        limit: int = 50,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """The user's pending tasks, oldest first (``after``: the last task id of the
        previous page), each with the record's object, id and title, the step and due."""
        statement = (
            sa.select(
                TASKS.c.id,
                TASKS.c.step_name,
                TASKS.c.step_index,
                TASKS.c.due_at,
                TASKS.c.created_at,
                TASKS.c.on_behalf_of_id,
                REQUESTS.c.object_name,
                REQUESTS.c.record_id,
                REQUESTS.c.transition,
                REQUESTS.c.submitter_id,
                REQUESTS.c.submitted_at,
            )
            .join(REQUESTS, REQUESTS.c.id == TASKS.c.request_id)
            .where(TASKS.c.approver_id == user_id, TASKS.c.status == "pending")
            .order_by(TASKS.c.id)
            .limit(limit)
        )
        if object_name:
            statement = statement.where(REQUESTS.c.object_name == object_name)
        if overdue:
            statement = statement.where(TASKS.c.due_at <= utcnow())
        if after is not None:
            statement = statement.where(TASKS.c.id > after)
        rows = self.session.execute(statement).mappings().all()
        titles = self._titles([(r["object_name"], r["record_id"]) for r in rows])
        users = self._names(
            [r["submitter_id"] for r in rows] + [r["on_behalf_of_id"] for r in rows]
        )
        items = []
        for r in rows:
            meta = self.registry.find(r["object_name"])
            label = meta.definition.label if meta else {"en": r["object_name"]}
            step_label = None
            if meta is not None and meta.workflow is not None:
                submit = meta.workflow.transition(r["transition"])
                if submit is not None and submit.approval is not None:
                    step = submit.approval.step(r["step_name"])
                    step_label = step.label if step else None
            items.append(
                {
                    "id": r["id"],
                    "object": r["object_name"],
                    "object_label": label,
                    "record_id": r["record_id"],
                    "title": titles.get((r["object_name"], r["record_id"]), str(r["record_id"])),
                    "step": r["step_name"],
                    "step_label": step_label or {"en": r["step_name"], "zh-CN": r["step_name"]},
                    "due_at": iso(r["due_at"]),
                    "assigned_at": iso(r["created_at"]),
                    "submitted_at": iso(r["submitted_at"]),
                    "submitter": _person(r["submitter_id"], users),
                    "on_behalf_of": _person(r["on_behalf_of_id"], users),
                }
            )
        return items

    def inbox_count(self, user_id: int) -> int:
        """How many tasks wait for the user (the shell's badge)."""
        return int(
            self.session.execute(
                sa.select(sa.func.count())
                .select_from(TASKS)
                .where(TASKS.c.approver_id == user_id, TASKS.c.status == "pending")
            ).scalar_one()
        )

    # --- steps and tasks -----------------------------------------------------------------

    def _advance(
        self,
        request_id: int,
        meta: ObjectMeta,
        flow: ApprovalFlow,
        values: dict[str, Any],
        after: int | None,
    ) -> None:
        """Start the step that follows ``after`` (skipping those whose condition is false);
        with none left, the request is approved."""
        index = next_step(flow, after, lambda text: self._holds(meta, values, text))
        skipped = range((after + 1) if after is not None else 0, index if index is not None
                        else len(flow.steps))  # fmt: skip
        for position in skipped:
            step = flow.steps[position]
            if step.when is not None:
                self._event(request_id, None, step.name, "step_skipped", None, None, None, {})
        if index is None:
            self._finish(self._request_row(request_id), meta, flow, "approved", None, None)
            return
        self._start_step(request_id, meta, flow, values, index)

    def _start_step(
        self, request_id: int, meta: ObjectMeta, flow: ApprovalFlow, values: dict[str, Any],
        index: int,
    ) -> None:  # fmt: skip
        request = self._request_row(request_id)
        step = flow.steps[index]
        self.session.execute(
            sa.update(REQUESTS)
            .where(REQUESTS.c.id == request_id)
            .values(step_index=index, step_name=step.name)
        )
        approvers = self._resolve(step.approvers, meta, values, request["submitter_id"])
        detail: dict[str, Any] = {}
        if not approvers:
            approvers = list(
                self.session.scalars(
                    sa.select(User.id)
                    .where(User.is_admin.is_(True), User.is_active.is_(True))
                    .order_by(User.id)
                )
            )
            detail["no_approver"] = [a.as_json() for a in step.approvers]
        delegated = self._delegates(approvers)
        sequential = step.mode.value == "sequential"
        created = []
        for position, approver in enumerate(approvers):
            stands_in = delegated.get(approver)
            status = TaskStatus.PENDING if not sequential or position == 0 else TaskStatus.WAITING
            created.append(
                self._insert_task(
                    request_id, index, step, request["round"],
                    0 if sequential else position, position if sequential else 0,
                    stands_in or approver, approver if stands_in else None, status, flow,
                )
            )  # fmt: skip
        self._event(request_id, None, step.name, "step_started", None, None, None,
                    {**detail, "approvers": approvers, "delegated": delegated})  # fmt: skip
        pending = [
            task_id
            for task_id, (position, _a) in zip(created, enumerate(approvers), strict=True)
            if not sequential or position == 0
        ]
        self._notify_tasks(pending, meta, request["record_id"], values)

    def _insert_task(
        self, request_id: int, index: int, step: Step, round_: int, lane: int, seq: int,
        approver: int, on_behalf_of: int | None, status: TaskStatus, flow: ApprovalFlow,
    ) -> int:  # fmt: skip
        now = utcnow()
        due = (
            flow.calendar.add(now, step.deadline)
            if step.deadline is not None and status is TaskStatus.PENDING
            else None
        )
        found = self.session.execute(
            sa.insert(TASKS)
            .values(request_id=request_id, step_index=index, step_name=step.name,
                    round=round_, lane=lane, seq=seq, approver_id=approver,
                    on_behalf_of_id=on_behalf_of, status=status.value, created_at=now,
                    due_at=due, deadline_done=False, escalations=0)
            .returning(TASKS.c.id)
        )  # fmt: skip
        return int(found.scalar_one())

    def _activate(self, task_ids: list[int], flow: ApprovalFlow, step: Step) -> None:
        now = utcnow()
        due = flow.calendar.add(now, step.deadline) if step.deadline is not None else None
        self.session.execute(
            sa.update(TASKS)
            .where(TASKS.c.id.in_(task_ids))
            .values(status=TaskStatus.PENDING.value, due_at=due, created_at=now)
        )

    def _step_tasks(self, request: Any) -> list[TaskView]:
        current = self._request_row(request["id"])
        rows = self.session.execute(
            sa.select(TASKS.c.id, TASKS.c.lane, TASKS.c.seq, TASKS.c.status).where(
                TASKS.c.request_id == request["id"],
                TASKS.c.step_index == current["step_index"],
                TASKS.c.round == current["round"],
            )
        ).all()
        return [TaskView(r.id, r.lane, r.seq, TaskStatus(r.status)) for r in rows]

    def _close_open(self, request: Any) -> None:
        self.session.execute(
            sa.update(TASKS)
            .where(TASKS.c.request_id == request["id"], TASKS.c.status.in_(("pending", "waiting")))
            .values(status=TaskStatus.CANCELLED.value)
        )

    def _finish(
        self,
        request: Any,
        meta: ObjectMeta,
        flow: ApprovalFlow,
        outcome: str,
        comment: str | None,
        actor: int | None,
    ) -> None:
        """End the request: close its tasks, fire the outcome's transition, tell the
        submitter and the CC list."""
        from trellis.platform.runtime.workflow.transitions import TransitionService

        self._close_open(request)
        now = utcnow()
        self.session.execute(
            sa.update(REQUESTS)
            .where(REQUESTS.c.id == request["id"])
            .values(status=outcome, decided_at=now)
        )
        self._event(request["id"], None, None, outcome if outcome != "approved" else "completed",
                    actor, None, comment if outcome == "recalled" else None,
                    {"outcome": outcome})  # fmt: skip
        transition = {"approved": flow.approved, "rejected": flow.rejected,
                      "returned": flow.returned, "recalled": flow.recalled}[outcome]  # fmt: skip
        TransitionService(self.session, self.registry, None).fire(
            meta.name, request["record_id"], transition, comment, system=True
        )
        workflow_event(self.session, self.registry, meta.name, request["record_id"], outcome)
        if outcome == "recalled":
            return
        values = self._values(meta, request["record_id"])
        submitter = request["submitter_id"]
        if submitter is not None:
            self._notify([submitter], _DONE[outcome], meta, request["record_id"], values)
        if outcome == "approved":
            cc = self._resolve(flow.cc_completed, meta, values, submitter)
            if cc:
                self._notify(cc, _DONE[outcome], meta, request["record_id"], values)
                self._event(request["id"], None, None, "cc", None, None, None, {"users": cc})

    # --- who -----------------------------------------------------------------------------

    def _resolve(
        self,
        specs: tuple[Approver, ...],
        meta: ObjectMeta,
        values: dict[str, Any],
        relative_to: int | None,
    ) -> list[int]:
        """The active users the specs name, in order, each once. ``manager`` counts from
        ``relative_to`` (the submitter; for an escalation, the approver)."""
        found: list[int] = []
        active = User.is_active.is_(True)
        for spec in specs:
            ids: list[int] = []
            if spec.kind == "user":
                email = sa.func.lower(User.email) == str(spec.value).lower()
                ids = list(self.session.scalars(sa.select(User.id).where(email, active)))
            elif spec.kind == "role":
                ids = list(
                    self.session.scalars(
                        sa.select(User.id)
                        .join(UserRole, UserRole.user_id == User.id)
                        .where(UserRole.role_name == spec.value, active)
                        .order_by(User.id)
                    )
                )
            elif spec.kind == "manager":
                current = relative_to
                for _level in range(int(spec.value)):
                    if current is None:
                        break
                    current = self.session.scalar(
                        sa.select(User.manager_id).where(User.id == current)
                    )
                if current is not None and self.session.scalar(
                    sa.select(User.id).where(User.id == current, active)
                ):
                    ids = [current]
            elif spec.kind == "field":
                value = values.get(spec.value)
                if isinstance(value, int):
                    ids = list(
                        self.session.scalars(sa.select(User.id).where(User.id == value, active))
                    )
            elif spec.kind == "partner_admins":
                partner = self._partner_of(meta, values)
                if partner is not None:
                    ids = list(
                        self.session.scalars(
                            sa.select(User.id)
                            .join(UserRole, UserRole.user_id == User.id)
                            .where(
                                User.partner_id == partner,
                                UserRole.role_name == spec.value,
                                active,
                            )
                            .order_by(User.id)
                        )
                    )
            for user_id in ids:
                if user_id not in found:
                    found.append(int(user_id))
        return found

    def _partner_of(self, meta: ObjectMeta, values: dict[str, Any]) -> int | None:
        """The partner a record belongs to: itself for the partner object, its scope
        field's, or its master's."""
        definition = meta.definition
        if definition.hierarchy_field is not None:
            return values.get("id")
        if definition.scope_field is not None:
            value = values.get(definition.scope_field)
            return value if isinstance(value, int) else None
        master = definition.master_field()
        if master is not None and isinstance(values.get(master.name), int):
            parent = self.registry.get(str(master.target))
            return self._partner_of(parent, self._values(parent, values[master.name]))
        return None

    def _delegates(self, users: list[int]) -> dict[int, int]:
        """Who stands in for each user away today (out of office), if anyone."""
        if not users:
            return {}
        today = utcnow().date()
        rows = self.session.execute(
            sa.select(OutOfOffice.user_id, OutOfOffice.delegate_id)
            .join(User, User.id == OutOfOffice.delegate_id)
            .where(
                OutOfOffice.user_id.in_(users),
                OutOfOffice.starts_on <= today,
                OutOfOffice.ends_on >= today,
                User.is_active.is_(True),
            )
        ).all()
        return {int(user): int(delegate) for user, delegate in rows if user != delegate}

    def _user(self, value: Any) -> int:
        """An active user named by id or e-mail (422 otherwise)."""
        statement = sa.select(User.id).where(User.is_active.is_(True))
        if isinstance(value, int) and not isinstance(value, bool):
            statement = statement.where(User.id == value)
        elif isinstance(value, str) and value.strip():
            statement = statement.where(sa.func.lower(User.email) == value.strip().lower())
        else:
            raise ValidationFailed(
                N_("name the user by id or e-mail"),
                [{"field": "user", "message": N_("is required")}],
            )
        found = self.session.scalar(statement)
        if found is None:
            raise ValidationFailed(
                N_("no active user %(user)s", user=repr(value)),
                [{"field": "user", "message": N_("is not an active user")}],
            )
        return int(found)

    def _not_already_in_step(self, request: Any, task: Any, user: int) -> None:
        if user == task["approver_id"]:
            raise ValidationFailed(
                N_("the task is already theirs"), [{"field": "user", "message": N_("is you")}]
            )
        clash = self.session.execute(
            sa.select(TASKS.c.id).where(
                TASKS.c.request_id == request["id"],
                TASKS.c.step_index == task["step_index"],
                TASKS.c.round == task["round"],
                TASKS.c.approver_id == user,
                TASKS.c.status.in_(("pending", "waiting")),
            )
        ).first()
        if clash is not None:
            message = N_("they already have a task in this step")
            raise ApprovalConflict(message, [{"field": "user", "message": message}])

    # --- plumbing ------------------------------------------------------------------------

    def _own_task(self, task_id: int, *, waiting_too: bool = False) -> tuple[Any, Any, Any, Any]:
        """The caller's open task (its request locked first), with its request, object and
        flow: 404 unknown, 403 not theirs, 409 not open (or not yet their turn)."""
        head = self.session.execute(
            sa.select(TASKS.c.request_id, TASKS.c.approver_id).where(TASKS.c.id == task_id)
        ).first()
        if head is None or self.caller is None:
            raise NotFound(N_("no approval task %(id)s", id=task_id))
        request = self._lock_request(head.request_id)
        task = self.session.execute(sa.select(TASKS).where(TASKS.c.id == task_id)).mappings().one()
        if task["approver_id"] != self.caller.user_id:
            raise Forbidden(N_("approval task %(id)s is not yours", id=task_id))
        allowed = ("pending", "waiting") if waiting_too else ("pending",)
        if request["status"] != "pending" or task["status"] not in allowed:
            if task["status"] == "waiting":
                message = N_("it is not your turn yet in this step")
            elif task["status"] in ("approved", "rejected"):
                message = N_("approval task %(id)s is already decided", id=task_id)
            else:
                message = N_("approval task %(id)s is closed: the step or the request was decided",
                             id=task_id)  # fmt: skip
            raise ApprovalConflict(message, [{"field": "task", "message": message}])
        meta = self.registry.get(request["object_name"])
        return task, request, meta, self._flow(meta, request)

    def _require_files(self, meta: ObjectMeta, record_id: int, ids: list[int]) -> None:
        """Attachments are files stored on the record (uploaded to one of its file fields)."""
        from trellis.platform.runtime.models import StoredFile

        found = set(
            self.session.scalars(
                sa.select(StoredFile.id).where(
                    StoredFile.id.in_(ids),
                    StoredFile.object_name == meta.name,
                    StoredFile.record_id == record_id,
                )
            )
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationFailed(
                N_("files %(ids)s are not stored on this record", ids=missing),
                [{"field": "attachments", "message": N_("must be files of this record")}],
            )

    def _lock_request(self, request_id: int) -> Any:
        statement = sa.select(REQUESTS).where(REQUESTS.c.id == request_id)
        if self.session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()
        return self.session.execute(statement).mappings().first()

    def _request_row(self, request_id: int) -> Any:
        return (
            self.session.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id))
            .mappings()
            .one()
        )

    def _pending(self, meta: ObjectMeta, record_id: int, *, lock: bool) -> Any:
        from trellis.platform.runtime.workflow.pending import pending_request

        found = pending_request(self.session, meta.name, record_id)
        if found is None:
            message = N_(
                "%(object)s %(id)s has no pending approval", object=meta.name, id=record_id
            )
            raise ApprovalConflict(message, [{"field": "approval", "message": message}])
        return self._lock_request(found["id"]) if lock else found

    def _flow(self, meta: ObjectMeta, request: Any, required: bool = True) -> Any:
        """The flow a request follows: its submitting transition's in the current workflow."""
        workflow = meta.workflow
        transition = workflow.transition(request["transition"]) if workflow else None
        if transition is None or transition.approval is None:
            if not required:
                return None
            message = N_("the approval of this request no longer exists in the workflow")
            raise ApprovalConflict(message, [{"field": "approval", "message": message}])
        return transition.approval

    def _visited(self, request_id: int) -> list[int]:
        return list(
            self.session.scalars(
                sa.select(TASKS.c.step_index).where(TASKS.c.request_id == request_id).distinct()
            )
        )

    def _values(self, meta: ObjectMeta, record_id: int) -> dict[str, Any]:
        row = self.session.execute(
            sa.select(meta.table).where(meta.table.c.id == record_id)
        ).mappings().first()  # fmt: skip
        return dict(row) if row is not None else {}

    def _holds(self, meta: ObjectMeta, values: dict[str, Any], text: str) -> bool:
        expression = compiled(
            text,
            ("approval", meta.name, meta.version, self.registry.revision),
            meta.definition.document,
            self.registry.documents(),
        )
        unit = RecordService(self.session, self.registry, None).unit
        found = {name: values.get(name) for name in meta.fields}
        return (
            expression(found, computed.record_resolver(unit), computed.expression_user(unit))
            is True
        )

    def _event(
        self, request_id: int, task_id: int | None, step: str | None, action: str,
        actor: int | None, on_behalf_of: int | None, comment: str | None, detail: dict[str, Any],
    ) -> None:  # fmt: skip
        self.session.execute(
            sa.insert(EVENTS).values(
                request_id=request_id, task_id=task_id, step_name=step, action=action,
                actor_id=actor, on_behalf_of_id=on_behalf_of, comment=comment, detail=detail,
                at=utcnow(),
            )
        )  # fmt: skip

    def _names(self, ids: list[int | None]) -> dict[int, dict[str, Any]]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        return {
            row.id: {"id": row.id, "name": row.name or row.email, "email": row.email}
            for row in self.session.execute(
                sa.select(User.id, User.name, User.email).where(User.id.in_(wanted))
            )
        }

    def _titles(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        by_object: dict[str, set[int]] = {}
        for object_name, record_id in keys:
            by_object.setdefault(object_name, set()).add(record_id)
        titles: dict[tuple[str, int], str] = {}
        for object_name, ids in by_object.items():
            meta = self.registry.find(object_name)
            if meta is None or meta.definition.title_field is None:
                continue
            column = meta.table.c[meta.definition.title_field]
            for record_id, title in self.session.execute(
                sa.select(meta.table.c.id, column).where(meta.table.c.id.in_(ids))
            ):
                titles[(object_name, record_id)] = "" if title is None else str(title)
        return titles

    def _notify(
        self, users: list[int], texts: dict[str, str], meta: ObjectMeta, record_id: int,
        values: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        values = values if values is not None else self._values(meta, record_id)
        title_field = meta.definition.title_field
        title = str(values.get(title_field) or record_id) if title_field else str(record_id)
        label = meta.definition.label
        shown = {
            language: text.format(object=label.get(language) or label.get("en", meta.name),
                                  title=title)
            for language, text in texts.items()
        }  # fmt: skip
        notify(self.session, users, shown, None, (meta.name, record_id))

    def _notify_tasks(
        self, task_ids: list[int], meta: ObjectMeta, record_id: int,
        values: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        if not task_ids:
            return
        users = list(
            self.session.scalars(sa.select(TASKS.c.approver_id).where(TASKS.c.id.in_(task_ids)))
        )
        self._notify(users, _ARRIVED, meta, record_id, values)


def _person(user_id: int | None, users: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    if user_id is None:
        return None
    return users.get(user_id, {"id": user_id, "name": str(user_id), "email": None})


def _comment(comment: Any) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ValidationFailed(
            N_("the comment must be text"), [{"field": "comment", "message": N_("must be text")}]
        )
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(
            N_("the comment is too long"),
            [{"field": "comment",
              "message": N_("at most %(limit)s characters", limit=MAX_COMMENT)}],
        )  # fmt: skip
    return comment.strip() or None


def _attachments(value: Any) -> list[int]:
    """Stored file ids attached to a decision (uploaded through ``/files`` first)."""
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_ATTACHMENTS
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValidationFailed(
            N_("attachments are a list of up to %(limit)s file ids", limit=MAX_ATTACHMENTS),
            [{"field": "attachments", "message": N_("must be a list of file ids")}],
        )
    return list(dict.fromkeys(value))


# --- out of office -------------------------------------------------------------------------


def out_of_office(session: Session, user_id: int) -> dict[str, Any] | None:
    """The user's out-of-office setting: the delegate and the dates, or None."""
    row = session.get(OutOfOffice, user_id)
    if row is None:
        return None
    delegate = session.get(User, row.delegate_id)
    return {
        "delegate": {"id": row.delegate_id, "name": delegate.name or delegate.email,
                     "email": delegate.email} if delegate else None,
        "starts_on": row.starts_on.isoformat(),
        "ends_on": row.ends_on.isoformat(),
        "active": row.starts_on <= utcnow().date() <= row.ends_on,
    }  # fmt: skip


def set_out_of_office(
    session: Session, user_id: int, delegate: Any, starts_on: dt.date, ends_on: dt.date
) -> dict[str, Any]:
    """Set who takes the user's approval tasks from ``starts_on`` to ``ends_on`` (422 for
    oneself, an unknown or inactive user, or dates the wrong way round)."""
    service = ApprovalService.__new__(ApprovalService)
    service.session = session
    delegate_id = service._user(delegate)
    if delegate_id == user_id:
        raise ValidationFailed(
            N_("a delegate stands in for you: choose someone else"),
            [{"field": "delegate", "message": N_("is you")}],
        )
    if ends_on < starts_on:
        raise ValidationFailed(
            N_("the last day comes before the first"),
            [{"field": "ends_on", "message": N_("must not be before the first day")}],
        )
    row = session.get(OutOfOffice, user_id)
    if row is None:
        row = OutOfOffice(user_id=user_id, delegate_id=delegate_id, starts_on=starts_on,
                          ends_on=ends_on)  # fmt: skip
        session.add(row)
    else:
        row.delegate_id, row.starts_on, row.ends_on = delegate_id, starts_on, ends_on
        row.updated_at = utcnow()
    session.flush()
    found = out_of_office(session, user_id)
    assert found is not None
    return found


def clear_out_of_office(session: Session, user_id: int) -> None:
    """Back in the office: tasks reach the user again."""
    session.execute(sa.delete(OutOfOffice).where(OutOfOffice.user_id == user_id))
