"""A crawl: signed in through the form, follow every link of the app as an admin and as a dealer.

Every page answers without a server error and is a whole HTML page; the dealer's crawl never
reaches a record of another network.
"""

from __future__ import annotations

import re
from collections import deque
from html import unescape
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient

from tests.ui.conftest import SignIn, dealer_id, ids_of
from tests.ui.test_record_pages import _network

HREF = re.compile(r'href="([^"#]*)')
RECORD = re.compile(r"^/o/(\w+)/(\d+)(?:/edit)?$")
MAX_PAGES = 150
VARIANTS = 4  # links to one path with different queries (sorts, filters, pages) followed


def crawl(client: FlaskClient, *starts: str) -> dict[str, int]:
    """Breadth-first over same-site links from ``starts``; ``{path: status}`` of each page."""
    seen: dict[str, int] = {}
    variants: dict[str, int] = {}
    queue = deque(starts or ["/", "/search?q=a"])
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        if url in seen:
            continue
        answer = client.get(url)
        seen[url] = answer.status_code
        assert answer.status_code < 500, f"{url}: {answer.status_code}"
        if answer.status_code in (301, 302, 303):
            queue.append(urlsplit(answer.headers["Location"]).path)
            continue
        if not answer.content_type.startswith("text/html"):
            continue
        html = answer.get_data(as_text=True)
        assert html.lstrip().lower().startswith("<!doctype html>"), url
        assert html.rstrip().endswith("</html>"), url
        for link in HREF.findall(html):
            link = unescape(link)
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not link.startswith("/"):
                continue
            if link.startswith(("/ui/static/", "/api/")) or link in seen:
                continue
            if parts.query:
                variants[parts.path] = variants.get(parts.path, 0) + 1
                if variants[parts.path] > VARIANTS:
                    continue
            queue.append(link)
    return seen


def test_an_admin_crawl_finds_no_broken_page(sign_in: SignIn) -> None:
    pages = crawl(sign_in("admin@example.com", language="en"))
    assert len(pages) > 40
    assert {status for status in pages.values()} <= {200, 302, 404}


def test_a_dealer_crawl_stays_in_their_network(sign_in: SignIn, pack_app: Flask) -> None:
    network = set(_network(pack_app, "D-0101"))
    orders = {i for d in network for i in ids_of(pack_app, "sales_order", dealer=d)}
    allowed = {"dealer": network, "sales_order": orders}
    pages = crawl(sign_in("east.admin@example.com"))
    assert len(pages) > 15
    reached: dict[str, set[int]] = {}
    for url, status in pages.items():
        match = RECORD.match(urlsplit(url).path)
        if match and status == 200:
            reached.setdefault(match.group(1), set()).add(int(match.group(2)))
    assert reached.get("sales_order") and reached.get("dealer")
    for object_name, ids in reached.items():
        if object_name in allowed:
            assert ids <= allowed[object_name], object_name
    assert dealer_id(pack_app, "D-0102") not in reached["dealer"]
