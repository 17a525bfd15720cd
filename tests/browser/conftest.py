"""Pages in a real browser: Chromium (Debian's) driven by Playwright, against a real server.

The pieces every browser test shares:

- ``browser``: one headless Chromium per test session;
- ``site_url``: the address ``new_page`` opens pages on. By default the function-scoped
  ``live_server`` (the ``app`` fixture served in a thread, on each database); a module
  overrides it, as the scenarios do with ``channel_site``;
- ``channel_site``: ``trellis serve`` (gunicorn, two workers) on a PostgreSQL database of
  its own with the channel pack and its demo data (a template's copy) — one per module,
  so a module's scenarios share it and must leave each other's records alone;
- ``new_page``: pages, each in its own browser context (its own cookies);
- ``sign_in``, ``submit``, ``sign_out``, ``path_of``, ``flash_text`` and ``screenshot``.

Without Chromium the tests skip locally and fail under CI (``require_service``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from tests.conftest import WorkerDatabases, app_of_copy
from trellis.extensions import Database, database_of

WAIT_MS = 10_000  # every wait of the browser is bounded by this
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("TRELLIS_SCREENSHOTS") or ROOT / "build" / "screenshots")

Page = Any
NewPage = Callable[..., Page]


@pytest.fixture
def site_url(live_server: str) -> str:
    """Where ``new_page`` opens pages; modules serving something else override it."""
    return live_server


@dataclass(frozen=True)
class Site:
    """A served instance: its address, and an app on the same database for the checks."""

    url: str
    app: Flask

    @property
    def database(self) -> Database:
        return database_of(self.app)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(database_url: str, folder: Path) -> Iterator[str]:
    """``trellis serve`` (two workers) on ``database_url`` until the generator is closed.

    Its log goes to ``folder/server.log``; a server that does not come up fails with
    the log's end.
    """
    port = free_port()
    log_path = folder / "server.log"
    env = {
        **os.environ,
        "TRELLIS_DATABASE_URL": database_url,
        "TRELLIS_INSTANCE_PATH": str(folder),
        "TRELLIS_SECRET_KEY": secrets.token_hex(32),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trellis", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/login", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up, or a slow first answer
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"trellis serve did not start:\n{tail}")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: no keep-alive waits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def channel_site(
    test_databases: WorkerDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The channel pack with its demo data, served by ``trellis serve`` on PostgreSQL.

    Every demo user's password is ``tests.ui.conftest.PASSWORD``. The database, the
    module's own, is a copy of the ``channel_demo_signed`` template (what
    ``install_channel_pack`` makes on a migrated database), dropped after the module.
    """
    url = test_databases.pg_copy("channel_demo_signed")
    app = app_of_copy(url)
    server = serve(url, tmp_path_factory.mktemp("channel-site"))
    try:
        yield Site(next(server), app)
    finally:
        server.close()
        database_of(app).engine.dispose()
        test_databases.drop_later(url)


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def new_page(browser: Any, site_url: str) -> Iterator[NewPage]:
    """Pages, each in its own browser context (its own cookies); all closed afterwards.

    ``new_page(viewport={"width": 390, "height": 844})`` for a phone; ``locale`` sets
    the browser's language (``Accept-Language``). Requests to any other host than the
    site are aborted and remembered in ``page.off_site``, so a redirect off-site shows
    up without leaving the machine.
    """
    contexts: list[Any] = []
    local = urlsplit(site_url).netloc

    def make(viewport: dict[str, int] | None = None, locale: str = "en-US") -> Page:
        options: dict[str, Any] = {"locale": locale}
        if viewport is not None:
            options.update(viewport=viewport, is_mobile=True, has_touch=True)
        context = browser.new_context(**options)
        contexts.append(context)
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        off_site: list[str] = []

        def guard(route: Any) -> None:
            if urlsplit(route.request.url).netloc == local:
                route.continue_()
            else:
                off_site.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.off_site = off_site
        return page

    yield make
    for context in contexts:
        context.close()


def path_of(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def flash_text(page: Page) -> str:
    return " ".join(page.locator("p.flash").all_inner_texts())


def sign_in(page: Page, base: str, email: str, password: str, path: str = "/login") -> Any:
    """Fill in and submit the sign-in form at ``path`` (in any language); returns the POST's
    response."""
    if path_of(page) != path:
        page.goto(base + path)
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(password)
    return submit(page, "/login", page.locator("form button[type=submit]"))


def submit(page: Page, action: str, button: str | Any) -> Any:
    """Click a form's button (its name, or a locator); returns the POST's response once
    the page it led to has loaded."""
    target = page.get_by_role("button", name=button) if isinstance(button, str) else button
    with (
        page.expect_navigation(),
        page.expect_response(
            lambda r: r.request.method == "POST" and urlsplit(r.url).path == action
        ) as posted,
    ):
        target.click()
    return posted.value


def sign_out(page: Page) -> None:
    """Open the user menu and sign out (in either language)."""
    page.locator("summary.who").click()
    page.locator(".user-menu form[action='/logout'] button").click()


def screenshot(page: Page, name: str) -> Path:
    """The whole page as ``<TRELLIS_SCREENSHOTS>/<name>.png`` (default build/screenshots)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-picture
    page.screenshot(path=str(path), full_page=True)
    return path
