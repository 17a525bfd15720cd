"""The start page in a real browser: it loads, is bilingual, and leaks no data."""

from __future__ import annotations

from typing import Any


def test_home_page_in_browser(browser: Any, live_server: str, tmp_path: Any) -> None:
    page = browser.new_page()
    try:
        response = page.goto(live_server + "/")
        assert response is not None and response.status == 200
        assert page.title() == "Trellis"
        body = page.inner_text("body")
        assert "/api/v1" in body and "所有接口都需要" in body
        page.screenshot(path=str(tmp_path / "home.png"))
        api = page.goto(live_server + "/api/v1/records/dealer")
        assert api is not None and api.status == 401
        assert "unauthenticated" in page.inner_text("body")
    finally:
        page.close()
