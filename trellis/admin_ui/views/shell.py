"""The app shell's pages: the start page (a dealer's landing page), search, language."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import caller, commit, page_session, records, registry
from trellis.admin_ui.forms import display
from trellis.admin_ui.i18n import LANGUAGES
from trellis.admin_ui.pages import navigation, signed_in
from trellis.admin_ui.views.records import fixed_query, lookup_titles, titled_page
from trellis.exceptions import TrellisError
from trellis.platform.runtime.identity import UserService

RECENT = 5
PANELS = 6


def _panel_objects(tree: Any, partner_id: int | None) -> list[tuple[Any, str]]:
    """The objects with a "recent" panel on the start page, in the order shown.

    Lines (master-detail children) are shown in their parents, not on their own. A partner
    user sees the records of their network first (those scoped to a partner, e.g. orders),
    and their sub-partners in a card of their own instead of the partner list.
    """
    reg = registry()
    found = []
    for group in navigation():
        for item in group["items"]:
            meta = reg.get(item["name"])
            if meta.definition.master_field() is not None:
                continue
            if partner_id is not None and tree is not None and meta.name == tree.name:
                continue
            found.append((meta, item["label"]))
    if partner_id is not None:
        found.sort(key=lambda pair: pair[0].definition.scope_field is None)
    return found


@bp.get("/")
@signed_in
def home() -> Any:
    """Everyone's start page; a partner user's is their account and their network."""
    service = records()
    reg = registry()
    account: dict[str, Any] | None = None
    partner_id = caller().partner_id
    tree = reg.hierarchy_object()
    if partner_id is not None and tree is not None:
        try:
            account = {
                "meta": tree,
                "record": service.get(tree.name, partner_id, include_children=False),
            }
        except TrellisError:
            account = None
    panels = [
        _recent(service, meta, label) for meta, label in _panel_objects(tree, partner_id)[:PANELS]
    ]
    return render_template(
        "ui/home.html",
        account=account,
        sub_partners=_sub_partners(service, tree, partner_id) if account else None,
        panels=panels,
        display=display,
        titles=lookup_titles(service, tree, [account["record"]]) if account and tree else {},
    )


def _recent(service: Any, meta: Any, label: str) -> dict[str, Any]:
    hidden = service.access.hidden(meta)
    query = fixed_query(service, meta, [], "-id", RECENT)
    columns = [c for c in meta.definition.list_columns()[:3] if c not in hidden]
    page, titles = titled_page(service, meta, query, columns)
    return {
        "meta": meta,
        "label": label,
        "items": page["items"],
        "columns": columns,
        "titles": titles,
    }


def _sub_partners(service: Any, tree: Any, partner_id: int | None) -> dict[str, Any] | None:
    parent_field = tree.definition.hierarchy_field
    if parent_field is None or partner_id is None:
        return None
    sort = tree.definition.title_field or "id"
    query = fixed_query(service, tree, [[parent_field, "=", partner_id]], sort, 50)
    columns = [c for c in tree.definition.list_columns()[:4] if c != parent_field]
    page, titles = titled_page(service, tree, query, columns)
    return {
        "meta": tree,
        "items": page["items"],
        "columns": columns,
        "titles": titles,
        "more": page["next_cursor"] is not None,
    }


@bp.get("/search")
@signed_in
def search() -> Any:
    """Global search: each readable object's title and searchable fields."""
    text = request.args.get("q", "").strip()[:100]
    service = records()
    groups = []
    if text:
        for group in navigation():
            for item in group["items"]:
                found = service.search(item["name"], text, limit=5)
                if found:
                    groups.append({"name": item["name"], "label": item["label"], "hits": found})
    return render_template("ui/search.html", q=text, groups=groups)


@bp.post("/language")
@signed_in
def switch_language() -> Any:
    """Remember the chosen language on the user; every page follows it."""
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        flash(_("Unknown language."), "error")
    else:
        UserService(page_session(), registry(), caller().user_id).update(
            caller().user_id, {"language": language}
        )
        commit()
        g.pop("language", None)
    back = request.form.get("next", "")
    from trellis.admin_ui import safe_next

    return redirect(safe_next(back) if back else url_for("ui.home"))
