"""Every platform string of the UI has its zh-CN translation, and the compiled catalogue is used."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "trellis/admin_ui/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
METHODS = [("trellis/**.py", "python"), ("trellis/admin_ui/templates/**.html", "jinja2")]


def _source_messages() -> set[str]:
    found = set()
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "N_": None}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), METHODS, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_ui_string_is_translated() -> None:
    with PO.open("rb") as po_file:
        catalogue = {m.id: m.string for m in read_po(po_file) if m.id}
    missing = sorted(m for m in _source_messages() if not catalogue.get(m))
    assert missing == [], f"untranslated (see docs/ui.md): {missing}"


def test_pages_use_the_compiled_catalogue(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    html = page.get_data(as_text=True)
    assert 'lang="zh-CN"' in html and "登录" in html and "Sign in" not in html
    english = client.get("/login", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert "Sign in" in english and "登录" not in english
