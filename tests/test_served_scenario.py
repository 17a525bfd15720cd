"""A user's scenario over real HTTP against `trellis serve` (gunicorn, two workers).

Runs on SQLite and PostgreSQL. Two workers matter: a definition changed through one
worker must be seen by the other on its very next request (the revision check).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.factories import dealer_definition, field
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(db_url: str, admin_token: str, tmp_path: Any) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {**os.environ, "TRELLIS_DATABASE_URL": db_url, "TRELLIS_INSTANCE_PATH": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trellis", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/objects", headers=headers, timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up, or a slow first answer
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.2)
        yield base, headers
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_scenario_over_http(served: tuple[str, dict[str, str]]) -> None:
    base, headers = served
    http = requests.Session()
    http.headers.update(headers)

    assert requests.get(base + "/objects", timeout=5).status_code == 401

    bad = dealer_definition(select=field("text"))
    bad["x-name"] = "Dealer!"
    refused = http.post(base + "/objects", json=bad, timeout=10)
    assert refused.status_code == 422
    pointers = {d["field"] for d in refused.json()["error"]["details"]}
    assert {"/x-name", "/properties/select"} <= pointers

    assert http.post(base + "/objects", json=dealer_definition(), timeout=10).status_code == 201
    # Every worker knows the new object at once.
    for _ in range(10):
        assert http.get(base + "/records/dealer", timeout=5).status_code == 200

    invalid = http.post(base + "/records/dealer", json={"credit_limit": -1, "level": "x"})
    assert invalid.status_code == 422
    assert {d["field"] for d in invalid.json()["error"]["details"]} == {
        "name",
        "credit_limit",
        "level",
    }
    ids = []
    for i in range(23):
        created = http.post(
            base + "/records/dealer",
            json={"name": f"Dealer {i:02}", "credit_limit": (i % 5) * 100, "level": "gold"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": "-credit_limit,name", "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = http.get(base + "/records/dealer", params=params, timeout=10).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))

    # Two clients race to update the same version: exactly one wins.
    target = f"{base}/records/dealer/{ids[0]}"

    def update(limit: int) -> int:
        response = requests.patch(
            target, json={"version": 1, "credit_limit": limit}, headers=headers, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(update, [111, 222]))
    assert statuses == [200, 409]
    assert http.get(target, timeout=5).json()["version"] == 2

    # Evolve the populated object, then restore the first version: data comes back.
    definition = http.get(base + "/objects/dealer", timeout=5).json()["definition"]
    definition["properties"]["region"] = field("text", "Region", maxLength=40)
    del definition["properties"]["level"]
    changed = http.put(base + "/objects/dealer", json=definition, timeout=30)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    record = http.get(target, timeout=5).json()
    assert "level" not in record and record["region"] is None
    listing = http.get(base + "/records/dealer", params={"limit": 500}, timeout=10).json()
    assert len(listing["items"]) == 23

    restored = http.post(base + "/objects/dealer/versions/1/restore", timeout=30)
    assert restored.status_code == 200 and restored.json()["version"] == 3
    assert http.get(target, timeout=5).json()["level"] == "gold"
    versions = http.get(base + "/objects/dealer/versions", timeout=5).json()["items"]
    assert [v["version"] for v in versions] == [3, 2, 1]


def test_a_user_without_admin_rights_is_refused_metadata(
    served: tuple[str, dict[str, str]],
    database: Database,
) -> None:
    base, admin = served
    created = requests.post(
        base + "/users",
        json={"email": "plain@example.com", "password": "plain user password", "roles": []},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    with database.session() as session:
        token = issue_token(session, "plain@example.com", name="scenario")
        session.commit()
    plain = {"Authorization": f"Bearer {token}"}

    me = requests.get(base + "/me", headers=plain, timeout=5).json()
    assert me["email"] == "plain@example.com" and me["is_admin"] is False and me["roles"] == []
    for _ in range(4):  # whichever worker answers
        refused = requests.post(
            base + "/objects", json=dealer_definition(), headers=plain, timeout=10
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    assert requests.get(base + "/objects", headers=plain, timeout=5).status_code == 403
    assert requests.get(base + "/users", headers=plain, timeout=5).status_code == 403
    assert requests.get(base + "/objects/dealer", headers=admin, timeout=5).status_code == 404

    denied = requests.get(
        base + "/audit", params={"action": "permission.denied"}, headers=admin, timeout=5
    ).json()["items"]
    mine = [e for e in denied if e["actor_email"] == "plain@example.com"]
    assert sum(e["target"] == "POST /api/v1/objects" for e in mine) == 4, mine
    assert all(e["actor_id"] == user_id and e["ip"] == "127.0.0.1" for e in mine)

    # Deactivated through one worker, the token stops at once on both.
    change = requests.patch(
        f"{base}/users/{user_id}", json={"is_active": False}, headers=admin, timeout=10
    )
    assert change.status_code == 200 and change.json()["is_active"] is False
    for _ in range(4):
        assert requests.get(base + "/me", headers=plain, timeout=5).status_code == 401
