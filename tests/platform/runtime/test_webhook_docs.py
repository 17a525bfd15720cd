"""The receiver docs/webhooks.md shows, run as written against real deliveries."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import Api
from trellis.exceptions import DeliveryFailed
from trellis.extensions import Database
from trellis.platform.runtime.webhooks import WebhookSettings, event_payload
from trellis.platform.runtime.webhooks.delivery import deliver

DOC = Path(__file__).parents[3] / "docs" / "webhooks.md"


def receiver_code() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- receiver:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match
    return match.group(1)


def test_the_documented_receiver_is_ten_lines_as_ruff_formats_it() -> None:
    """The issue's promise: ten lines of Python, counted as the project's formatter leaves
    them (it would split a one-line ``if x: y`` and wrap long lines), blank lines aside."""
    code = receiver_code()
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "receiver.py", "-"],
        input=code,
        capture_output=True,
        text=True,
        cwd=DOC.parents[1],  # the project's settings (line length 100)
        check=True,
    ).stdout
    assert formatted == code
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 10


def test_the_documented_receiver_verifies_and_deduplicates(
    app: Flask, api: Api, database: Database
) -> None:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(receiver_code(), str(DOC), "exec"), namespace)
    server = make_server("127.0.0.1", 0, namespace["app"], threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/trellis"
        body = {"name": "doc", "url": url, "events": ["record.created"]}
        created = api.post("/webhooks", body).get_json()
        settings = WebhookSettings.of(app.config)
        payload = event_payload("record.created", "dealer", {"id": 1})
        with database.session() as session:
            # Signed with a secret the receiver does not hold: refused.
            with pytest.raises(DeliveryFailed, match="HTTP 400"):
                deliver(session, "evt-doc", created["id"], payload, settings)
            namespace["SECRET"] = created["secret"].encode()
            for _ in range(2):  # at least once: the repeat is answered, not handled again
                deliver(session, "evt-doc", created["id"], payload, settings)
        assert namespace["seen"] == {"evt-doc"}
    finally:
        server.shutdown()
        thread.join(timeout=10)
