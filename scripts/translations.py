#!/usr/bin/env python3
"""Bring the zh-CN catalogue up to date with the code, and fill in translations.

    python3 scripts/translations.py                  # extract, merge, list what is missing
    python3 scripts/translations.py new.json         # … and apply {msgid: 中文 or [plurals]}

Extracts every message (``_``, ``gettext``, ``_l``, ``lazy_gettext``, ``N_``, ``ngettext``)
from ``trellis/**.py`` and the templates, merges them into
``trellis/admin_ui/translations/zh_Hans_CN/LC_MESSAGES/messages.po`` (no locations, sorted,
obsolete entries dropped), applies the JSON's translations, writes the ``.po`` and its
``.mo``, and prints the messages still untranslated (``tests/ui/test_translations.py``
fails on any).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "trellis/admin_ui/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
KEYWORDS: dict[str, Any] = {
    "_": None,
    "gettext": None,
    "_l": None,
    "lazy_gettext": None,
    "N_": None,
    "ngettext": (1, 2),
}
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]


def translated(message: Message) -> bool:
    """Whether every form of the message has its translation."""
    if isinstance(message.string, tuple | list):
        return all(message.string)
    return bool(message.string)


def main() -> None:
    extra = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else {}
    template = Catalog()
    for _filename, _lineno, message, _comments, context in extract_from_dir(
        str(ROOT / "trellis"),
        method_map=METHODS,
        keywords=KEYWORDS,
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        template.add(message, locations=[], context=context)
    with PO.open("rb") as source:
        catalog = read_po(source, locale="zh_Hans_CN")
    catalog.update(template, no_fuzzy_matching=True)
    catalog.obsolete.clear()
    for key, value in extra.items():
        message = catalog.get(key)
        if message is not None:
            message.string = tuple(value) if isinstance(value, list) else value
            message.flags.discard("fuzzy")
    with PO.open("wb") as target:
        write_po(target, catalog, no_location=True, width=100, sort_output=True)
    with PO.with_suffix(".mo").open("wb") as target:
        write_mo(target, catalog)
    missing = [m.id for m in catalog if m.id and not translated(m)]
    print(f"untranslated: {len(missing)}")
    for message_id in missing:
        print(f"  {message_id}")


if __name__ == "__main__":
    main()
