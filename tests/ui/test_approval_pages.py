"""Approval pages through Flask's client on a small expense object: the record's approval
panel (steps, tasks, history, the signed-in user's actions), the inbox with its filters,
pages and bulk approve, the shell's badge, out-of-office settings, CSRF and permissions
(a user sees only their own tasks; another user's task posted is refused)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api
from tests.platform.runtime.test_approvals import PASSWORD, expense, step, workflow
from tests.ui.conftest import csrf_of
from trellis.extensions import Database
from trellis.platform.runtime.models import ApprovalTask, OutOfOffice, User


class Site:
    """The expense object, its approval flow and signed-in clients by name."""

    def __init__(self, app: Flask, api: Api, ids: dict[str, int]) -> None:
        self.app, self.api, self.ids = app, api, ids
        self._clients: dict[str, FlaskClient] = {}

    def client(self, name: str, language: str = "en") -> FlaskClient:
        key = f"{name}:{language}"
        if key not in self._clients:
            client = self.app.test_client()
            token = csrf_of(client.get("/login").get_data(as_text=True))
            answer = client.post(
                "/login",
                data={"csrf_token": token, "email": f"{name}@example.com", "password": PASSWORD},
            )
            assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
            home = client.get("/").get_data(as_text=True)
            switched = client.post(
                "/language", data={"csrf_token": csrf_of(home), "language": language, "next": "/"}
            )
            assert switched.status_code == 302
            self._clients[key] = client
        return self._clients[key]

    def expense(self, owner: str, title: str, amount: float = 100) -> int:
        client = self.client(owner)
        form = client.get("/o/expense/new").get_data(as_text=True)
        answer = client.post(
            "/o/expense/new",
            data={"csrf_token": csrf_of(form), "title": title, "amount": str(amount)},
        )
        assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
        return int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    def submit(self, owner: str, record_id: int) -> str:
        client = self.client(owner)
        page = client.get(f"/o/expense/{record_id}").get_data(as_text=True)
        answer = client.post(
            f"/o/expense/{record_id}/transitions/submit",
            data={"csrf_token": csrf_of(page)},
            follow_redirects=True,
        )
        assert answer.status_code == 200
        return answer.get_data(as_text=True)


def build_site(app: Flask, api: Api, board: bool = True) -> Site:
    """sam submits; boss is sam's manager (step 1); b1, b2 sit on the board (step 2, left
    out when ``board`` is false)."""
    assert api.post("/objects", expense()).status_code == 201
    for role in ("clerk", "board", "nobody"):
        body = {
            "x-name": role,
            "x-label": {"en": role, "zh-CN": role},
            "objects": {"expense": {"read": "all", "create": "all", "update": "all"}},
        }
        assert api.post("/roles", body).status_code == 201
    ids: dict[str, int] = {}
    for name, roles in [("boss", ["clerk"]), ("sam", ["clerk"]), ("b1", ["board"]),
                        ("b2", ["board"]), ("kim", ["clerk"])]:  # fmt: skip
        body: dict[str, Any] = {"email": f"{name}@example.com", "password": PASSWORD,
                                "name": name.title(), "roles": roles}  # fmt: skip
        if name == "sam":
            body["manager"] = ids["boss"]
        created = api.post("/users", body)
        assert created.status_code == 201, created.get_json()
        ids[name] = created.get_json()["id"]
    steps = [step("manager", [{"manager": 1}], deadline={"hours": 4, "action": "remind"})]
    if board:
        steps.append(step("board", [{"role": "board"}], mode="all"))
    for item, zh in zip(steps, ("经理审批", "董事会审批"), strict=False):
        item["label"]["zh-CN"] = zh
    flow = workflow(steps)
    names = {"draft": ("Draft", "草稿"), "pending": ("Pending", "审批中"),
             "approved": ("Approved", "已通过"), "rejected": ("Rejected", "已驳回"),
             "submit": ("Submit", "提交"), "approve": ("Approve", "通过"),
             "reject": ("Reject", "驳回"), "rework": ("Rework", "退回修改")}  # fmt: skip
    for item in flow["states"] + flow["transitions"]:
        en, zh = names[item["name"]]
        item["label"] = {"en": en, "zh-CN": zh}
    assert api.post("/workflows", flow).status_code == 201
    return Site(app, api, ids)


@pytest.fixture
def site(app: Flask, api: Api) -> Site:
    """The expense object with its two-step flow and its people."""
    return build_site(app, api)


def tasks_of(html: str) -> list[int]:
    return [int(t) for t in re.findall(r'<tr data-task="(\d+)"', html)]


def badge(html: str) -> int:
    found = re.search(r'class="bell approvals"[^>]*data-pending="(\d+)"', html)
    assert found, "no approvals badge"
    return int(found.group(1))


def test_the_panel_shows_steps_tasks_history_and_the_approvers_actions(site: Site) -> None:
    record = site.expense("sam", "Trip to Shanghai")
    before = site.client("sam").get(f"/o/expense/{record}").get_data(as_text=True)
    assert 'data-approval="none"' in before and "Not submitted for approval yet." in before
    assert "Submit (for approval)" in before  # the submitting transition's own button
    page = site.submit("sam", record)
    assert 'data-request-status="pending"' in page
    assert 'data-step="manager" data-state="current"' in page
    assert 'data-step="board" data-state="ahead"' in page
    assert "All approve" in page and "Any one approves" in page
    assert 'data-action="recall"' in page  # the submitter may still recall
    assert "data-awaiting-approval" in page  # the edit button says it is read-only
    assert 'class="my-task"' not in page  # sam has no task
    form = site.client("sam").get(f"/o/expense/{record}/edit").get_data(as_text=True)
    assert "is awaiting approval: it is read-only" in form
    # The manager sees the task with its actions; the due date of the 4-hour deadline.
    boss = site.client("boss")
    mine = boss.get(f"/o/expense/{record}").get_data(as_text=True)
    (task,) = re.findall(r'class="my-task" data-task="(\d+)"', mine)
    assert 'name="action" value="approve"' in mine and 'value="handover"' in mine
    assert 'value="add_signer"' in mine and '<option value="submitter">' in mine
    assert re.search(r"<td data-label=\"Due\">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>", mine)
    approved = boss.post(
        f"/approvals/{task}",
        data={
            "csrf_token": csrf_of(mine),
            "action": "approve",
            "comment": "fine by me",
            "next": f"/o/expense/{record}",
        },
        follow_redirects=True,
    )
    html = approved.get_data(as_text=True)
    assert approved.status_code == 200 and "Approved." in html
    assert 'data-step="manager" data-state="done"' in html
    assert 'data-step="board" data-state="current"' in html
    assert "fine by me" in html and "Boss" in html
    # b1 rejects back to the manager's step (an earlier step is offered).
    b1 = site.client("b1")
    board_page = b1.get(f"/o/expense/{record}").get_data(as_text=True)
    assert '<option value="manager">' in board_page
    (b1_task,) = re.findall(r'class="my-task" data-task="(\d+)"', board_page)
    back = b1.post(
        f"/approvals/{b1_task}",
        data={
            "csrf_token": csrf_of(board_page),
            "action": "reject",
            "to": "manager",
            "comment": "receipts?",
            "next": f"/o/expense/{record}",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Rejected." in back and "Returned to the step" in back
    assert "back to the step manager" in back and "receipts?" in back
    assert 'data-step="manager" data-state="current"' in back
    # Chinese: the same panel in zh-CN.
    zh = site.client("sam", "zh-CN").get(f"/o/expense/{record}").get_data(as_text=True)
    assert "审批" in zh and "会签" in zh and "或签" in zh and "驳回" in zh


def test_handover_add_signer_recall_and_refusals(site: Site) -> None:
    record = site.expense("sam", "Hotel")
    site.submit("sam", record)
    boss = site.client("boss")
    page = boss.get(f"/o/expense/{record}").get_data(as_text=True)
    (task,) = re.findall(r'class="my-task" data-task="(\d+)"', page)
    token = csrf_of(page)
    url = f"/approvals/{task}"
    # Without the CSRF token: refused, nothing happens.
    assert boss.post(url, data={"action": "approve"}).status_code == 400
    # Another user's task: refused (403), nothing decided.
    kim = site.client("kim")
    kim_token = csrf_of(kim.get("/approvals").get_data(as_text=True))
    assert kim.post(url, data={"csrf_token": kim_token, "action": "approve"}).status_code == 403
    # An unknown action, a handover without a user: a message, never a 500.
    odd = boss.post(url, data={"csrf_token": token, "action": "launch"}, follow_redirects=True)
    assert odd.status_code == 200 and "Choose what to do with the task." in odd.get_data(True)
    nobody = boss.post(
        url, data={"csrf_token": token, "action": "handover", "next": f"/o/expense/{record}"},
        follow_redirects=True,
    ).get_data(as_text=True)  # fmt: skip
    assert "name the user by id or e-mail" in nobody
    # Add kim before the boss: kim decides first, the boss waits.
    added = boss.post(
        url,
        data={
            "csrf_token": token,
            "action": "add_signer",
            "user": str(site.ids["kim"]),
            "position": "before",
            "next": f"/o/expense/{record}",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Signer added." in added and "Kim, before" in added
    assert "It is not your turn yet in this step." in added
    # The submitter can no longer recall: an approver has acted.
    sam = site.client("sam")
    sam_page = sam.get(f"/o/expense/{record}").get_data(as_text=True)
    assert 'data-action="recall"' not in sam_page
    late = sam.post(
        f"/o/expense/{record}/approval/recall",
        data={"csrf_token": csrf_of(sam_page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "cannot be recalled" in late
    # kim hands her task over to b2, who approves; then the boss approves.
    kim_page = kim.get(f"/o/expense/{record}").get_data(as_text=True)
    (kim_task,) = re.findall(r'class="my-task" data-task="(\d+)"', kim_page)
    handed = kim.post(
        f"/approvals/{kim_task}",
        data={
            "csrf_token": csrf_of(kim_page),
            "action": "handover",
            "user": str(site.ids["b2"]),
            "next": f"/o/expense/{record}",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Handed over." in handed and "to B2" in handed
    # A second record is recalled by its submitter before anyone acts.
    other = site.expense("sam", "Taxi")
    submitted = site.submit("sam", other)
    recalled = sam.post(
        f"/o/expense/{other}/approval/recall",
        data={"csrf_token": csrf_of(submitted), "comment": "wrong amount"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Recalled." in recalled and 'data-request-status="recalled"' in recalled
    assert "wrong amount" in recalled


def test_inbox_badge_filters_paging_and_bulk_approve(site: Site, database: Database) -> None:
    records = [site.expense("sam", f"Expense {n}") for n in range(4)]
    for record in records:
        site.submit("sam", record)
    boss = site.client("boss")
    inbox = boss.get("/approvals").get_data(as_text=True)
    assert badge(inbox) == 4
    tasks = tasks_of(inbox)
    assert len(tasks) == 4 and "Expense 0" in inbox and "Sam" in inbox
    assert f'href="/o/expense/{records[0]}"' in inbox
    # Only one's own tasks: kim's inbox is empty, her badge 0.
    kim = site.client("kim")
    kim_inbox = kim.get("/approvals").get_data(as_text=True)
    assert tasks_of(kim_inbox) == [] and badge(kim_inbox) == 0
    assert "Nothing waits for your approval." in kim_inbox
    # Filters: an unknown object is ignored; overdue only: none yet (due in 4 hours).
    assert tasks_of(boss.get("/approvals?object=expense").get_data(as_text=True)) == tasks
    assert tasks_of(boss.get("/approvals?object=drop%20table").get_data(as_text=True)) == tasks
    assert tasks_of(boss.get("/approvals?overdue=1").get_data(as_text=True)) == []
    with database.session() as session:
        session.execute(
            sa.update(ApprovalTask)
            .where(ApprovalTask.id == tasks[1])
            .values(due_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
        session.commit()
    late = boss.get("/approvals?overdue=1").get_data(as_text=True)
    assert tasks_of(late) == [tasks[1]] and f'<tr data-task="{tasks[1]}" class="overdue">' in late
    # Keyset paging with a small page.
    from trellis.admin_ui.views import approvals

    approvals_page, approvals.PAGE_SIZE = approvals.PAGE_SIZE, 3
    try:
        first = boss.get("/approvals").get_data(as_text=True)
        assert tasks_of(first) == tasks[:3]
        following = re.search(r'rel="next" href="([^"]+)"', first)
        assert following
        second = boss.get(following.group(1).replace("&amp;", "&")).get_data(as_text=True)
        assert tasks_of(second) == tasks[3:]
    finally:
        approvals.PAGE_SIZE = approvals_page
    # Bulk approve: b1's task slipped in is refused and reported, the others approved.
    token = csrf_of(inbox)
    assert boss.post("/approvals/bulk-approve", data={"task": tasks[:2]}).status_code == 400
    one = boss.post(f"/approvals/{tasks[3]}", data={"csrf_token": token, "action": "approve"})
    assert one.status_code == 302 and one.headers["Location"].endswith("/approvals")
    board_task = tasks_of(site.client("b1").get("/approvals").get_data(as_text=True))[0]
    done = boss.post(
        "/approvals/bulk-approve",
        data={
            "csrf_token": token,
            "task": [str(tasks[0]), str(tasks[1]), str(board_task)],
            "comment": "all fine",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "2 tasks approved." in done
    assert "1 task refused:" in done and f"approval task {board_task} is not yours" in done
    assert tasks_of(done) == [tasks[2]] and badge(done) == 1
    # zh-CN: the inbox in Chinese.
    zh = site.client("boss", "zh-CN").get("/approvals").get_data(as_text=True)
    assert "审批" in zh and "批量通过" in zh


def test_out_of_office_settings(site: Site, database: Database) -> None:
    boss = site.client("boss")
    page = boss.get("/approvals/out-of-office")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "You are in the office" in html
    assert f'<option value="{site.ids["boss"]}"' not in html  # not oneself
    token = csrf_of(html)
    url = "/approvals/out-of-office"
    assert boss.post(url, data={"delegate": site.ids["kim"]}).status_code == 400  # CSRF
    bad = boss.post(
        url,
        data={
            "csrf_token": token,
            "delegate": str(site.ids["kim"]),
            "starts_on": "2027-03-10",
            "ends_on": "2027-03-01",
        },
    )
    assert bad.status_code == 422 and "must not be before the first day" in bad.get_data(True)
    garbled = boss.post(url, data={"csrf_token": token, "starts_on": "soon", "ends_on": ""})
    text = garbled.get_data(as_text=True)
    assert garbled.status_code == 422 and "Enter a date such as" in text
    assert "Choose who stands in for you." in text
    with database.session() as session:
        assert session.get(OutOfOffice, site.ids["boss"]) is None
    saved = boss.post(
        url,
        data={
            "csrf_token": token,
            "delegate": str(site.ids["kim"]),
            "starts_on": "2020-01-01",
            "ends_on": "2099-12-31",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Your approval tasks go to Kim until 2099-12-31." in saved
    # While away, sam's submission reaches kim on the boss's behalf.
    record = site.expense("sam", "Conference")
    site.submit("sam", record)
    kim = site.client("kim").get("/approvals").get_data(as_text=True)
    assert "on behalf of Boss" in kim and "Conference" in kim
    cleared = boss.post(
        "/approvals/out-of-office/clear", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "You are back in the office" in cleared
    with database.session() as session:
        assert session.get(OutOfOffice, site.ids["boss"]) is None
        assert session.get(User, site.ids["boss"]) is not None
    assert 'href="/approvals/out-of-office"' in site.client("sam").get("/").get_data(True)


def test_the_designer_edits_a_transitions_approval(site: Site) -> None:
    from tests.ui.test_workflow_pages import _Inputs

    admin = site.client("admin")
    workflow_page = admin.get("/setup/workflows/expense_flow").get_data(as_text=True)
    assert 'data-approval-link="submit">2 steps</a>' in workflow_page
    assert 'data-approval-link="approve">Add approval</a>' in workflow_page
    assert 'class="transition approval" data-transition="submit"' in workflow_page
    assert 'stroke-dasharray="6 4"' in workflow_page and "[approval]" in workflow_page
    url = "/setup/workflows/expense_flow/transitions/submit/approval"
    page = admin.get(url).get_data(as_text=True)
    parser = _Inputs()
    parser.feed(page[page.index('<form method="post" class="card approval-form"') :])
    form = parser.values
    assert form["step-0-name"] == "manager" and form["step-0-approver-0-type"] == "manager"
    assert form["step-0-deadline_action"] == "remind" and form["step-0-deadline_unit"] == "hours"
    assert form["approved"] == "approve" and form["step-1-mode"] == "all"
    form.update({
        "step-0-en": "Line manager",
        "step-1-mode": "quorum",
        "step-1-quorum_count": "two",
        "step-2-name": "finance",
        "step-2-en": "Finance",
        "step-2-zh": "财务",
        "step-2-approver-0-type": "user",
        "step-2-approver-0-value": "kim@example.com",
        "step-2-when": "amount > 500",
        "step-2-editable": "note",
        "step-2-deadline_action": "escalate",
        "step-2-deadline_amount": "2",
        "step-2-deadline_unit": "days",
        "step-2-deadline_to_type": "role",
        "step-2-deadline_to_value": "board",
        "recalled": "rework",
    })  # fmt: skip
    # Without the CSRF token: refused.
    assert (
        admin.post(url, data={k: v for k, v in form.items() if k != "csrf_token"}).status_code
        == 400
    )
    refused = admin.post(url, data=form)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'data-error="step-1-quorum_count"' in html and 'value="two"' in html
    assert 'value="Line manager"' in html  # what was typed is kept
    form["step-1-quorum_count"] = "1"
    saved = admin.post(url, data=form)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:3000]
    document = site.api.get("/workflows/expense_flow").get_json()["workflow"]
    approval = next(t for t in document["transitions"] if t["name"] == "submit")["approval"]
    assert [s["name"] for s in approval["steps"]] == ["manager", "board", "finance"]
    assert approval["steps"][0]["label"] == {"en": "Line manager", "zh-CN": "经理审批"}
    assert approval["steps"][1]["quorum"] == {"count": 1} and approval["recalled"] == "rework"
    assert approval["steps"][2] == {
        "name": "finance",
        "label": {"en": "Finance", "zh-CN": "财务"},
        "approvers": [{"user": "kim@example.com"}],
        "when": "amount > 500",
        "editable": ["note"],
        "deadline": {"days": 2, "action": "escalate", "to": {"role": "board"}},
    }
    # The workflow's own form keeps the approval when it saves the transitions.
    main = admin.get("/setup/workflows/expense_flow").get_data(as_text=True)
    parser = _Inputs()
    parser.feed(main[main.index('<form method="post" class="card workflow-form"') :])
    assert admin.post("/setup/workflows/expense_flow", data=parser.values).status_code == 302
    again = site.api.get("/workflows/expense_flow").get_json()
    submit = next(t for t in again["workflow"]["transitions"] if t["name"] == "submit")
    assert submit["approval"] == approval
    # Unticking removes the approval; an unknown transition is 404; others get 403.
    gone = admin.post(url, data={**form, "enabled": "", "version": str(again["version"])})
    assert gone.status_code == 302
    third = site.api.get("/workflows/expense_flow").get_json()["workflow"]
    assert "approval" not in next(t for t in third["transitions"] if t["name"] == "submit")
    assert admin.get("/setup/workflows/expense_flow/transitions/nope/approval").status_code == 404
    assert site.client("sam").get(url).status_code == 403
    zh = site.client("admin", "zh-CN").get(url).get_data(as_text=True)
    assert "审批" in zh and "或签" in zh
