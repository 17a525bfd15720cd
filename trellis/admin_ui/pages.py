"""What every page shares: the sign-in requirement and the app shell's navigation."""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import g, redirect, request, url_for
from markupsafe import Markup

from trellis.admin_ui.i18n import pick
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.access import Access
from trellis.platform.runtime.models import as_utc

P = ParamSpec("P")
R = TypeVar("R")


def signed_in(view: Callable[P, R]) -> Callable[P, R | Any]:
    """Send a visitor who is not signed in to the sign-in page (htmx: a full redirect)."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Any:
        if g.get("caller") is None:
            target = url_for("ui.login", next=request.full_path.rstrip("?"))
            if request.headers.get("HX-Request"):
                return "", 401, {"HX-Redirect": target}
            return redirect(target)
        return view(*args, **kwargs)

    return wrapper


def admin_only(view: Callable[P, R]) -> Callable[P, R | Any]:
    """Designers: administrators only (others get the app's 403 page)."""

    @wraps(view)
    @signed_in
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Any:
        from trellis.exceptions import Forbidden

        if not g.caller.is_admin:
            raise Forbidden("only administrators may use the designers")
        return view(*args, **kwargs)

    return wrapper


def navigation() -> list[dict[str, Any]]:
    """The objects the user may read, grouped by the pack that installed them."""
    from trellis.admin_ui.context import page_session, registry

    caller = g.get("caller")
    if caller is None:
        return []
    cached = g.get("navigation")
    if cached is not None:
        return list(cached)
    reg = registry()
    access = Access(reg, caller, page_session())
    readable = {m.name: m for m in reg.all() if access.allowed(m, Operation.READ)}
    groups: list[dict[str, Any]] = []
    placed: set[str] = set()
    for label, installed in installed_packs():
        names = [n for n in installed if n in readable]
        if names:
            groups.append({"label": label, "items": _items(names, readable)})
            placed.update(names)
    rest = sorted(n for n in readable if n not in placed)
    if rest:
        from flask_babel import gettext

        groups.append({"label": gettext("Custom objects"), "items": _items(rest, readable)})
    g.navigation = groups
    return groups


# Fragments of pages (the navigation, an empty filter panel), per registry (one per
# database), by revision and what else they depend on: the same for everyone with the same
# rights and language, so rendered once per revision rather than once per page.
_NAV_HTML: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()
_NAV_HTML_MAX = 512


def cached_fragment(key: tuple[Any, ...], render: Callable[[], str]) -> str:
    """HTML that depends only on the metadata and ``key`` (language, rights…): rendered
    once per registry revision and ``key``, then reused by every page that asks."""
    from trellis.admin_ui.context import registry

    reg = registry()
    cache = _NAV_HTML.setdefault(reg, {})
    full = (reg.revision, request.script_root, *key)
    html = cache.get(full)
    if html is None:
        html = render()
        if len(cache) >= _NAV_HTML_MAX:
            cache.clear()
        cache[full] = html
    return html


def navigation_html() -> Markup:
    """The navigation (``_nav.html``) for the signed-in caller, the current page's entry
    marked: rendered once for each set of rights and language, then reused."""
    from flask import render_template

    from trellis.admin_ui.i18n import current_language

    caller = g.get("caller")
    if caller is None:
        return Markup("")
    key = ("navigation", current_language(), caller.is_admin, caller.roles)
    html = cached_fragment(key, lambda: render_template("ui/_nav.html"))
    if request.endpoint == "ui.home":
        active = "home"
    else:
        active = (request.view_args or {}).get("object_name", "")
    marker = f' data-nav="{active}"'
    if active and marker in html:  # names are identifiers: nothing to escape
        html = html.replace(marker, f'{marker} class="active" aria-current="page"', 1)
    return Markup(html)


def installed_packs() -> list[tuple[str, list[str]]]:
    """Each installed pack's label (current language) and the objects it installed."""
    from trellis.admin_ui.context import registry

    return [
        (pick(manifest.get("label"), name), list(manifest.get("installed_objects", [])))
        for name, manifest in registry().installed_packs()
    ]


def _items(names: list[str], readable: dict[str, Any]) -> list[dict[str, str]]:
    items = []
    for name in names:
        definition = readable[name].definition
        plural = definition.document.get("x-label-plural")
        items.append({"name": name, "label": pick(plural) or pick(definition.label, name)})
    return items


# Designers register their start pages here: (endpoint, label function).
DESIGNERS: list[tuple[str, Callable[[], str]]] = []
# Tabs of one object's / one role's designer pages: (endpoint taking ``name``, label function).
# Each designer module appends its own, so the pages link to each other without imports.
OBJECT_TABS: list[tuple[str, Callable[[], str]]] = []
ROLE_TABS: list[tuple[str, Callable[[], str]]] = []
# The order tabs are shown in, whatever order their modules were imported in.
TAB_ORDER = [
    "ui.object_settings",
    "ui.object_fields",
    "ui.object_layout",
    "ui.object_rules",
    "ui.object_history",
    "ui.role_edit",
    "ui.role_history",
]


def designer_links() -> list[tuple[str, str]]:
    """The setup pages an administrator sees in the navigation."""
    return [(endpoint, label()) for endpoint, label in DESIGNERS]


def designer_tabs(kind: str) -> list[tuple[str, str]]:
    """The tabs of an object's (``kind="object"``) or a role's (``"role"``) designer pages."""
    tabs = OBJECT_TABS if kind == "object" else ROLE_TABS
    ordered = sorted(tabs, key=lambda tab: TAB_ORDER.index(tab[0]) if tab[0] in TAB_ORDER else 99)
    return [(endpoint, label()) for endpoint, label in ordered]


def moment_text(moment: dt.datetime | None) -> str:
    """A stored moment as the pages show it (``|moment``): ``2026-12-03 11:05:09 UTC``."""
    if moment is None:
        return "—"
    return as_utc(moment).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
