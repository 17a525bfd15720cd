"""What every page shares: the sign-in requirement and the app shell's navigation."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from flask import g, redirect, request, url_for

from trellis.admin_ui.i18n import pick
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.access import Access

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


def installed_packs() -> list[tuple[str, list[str]]]:
    """Each installed pack's label (current language) and the objects it installed."""
    from trellis.admin_ui.context import page_session
    from trellis.platform.runtime.models import InstalledPack

    packs = page_session().execute(
        sa.select(InstalledPack.name, InstalledPack.manifest).order_by(InstalledPack.installed_at)
    )
    return [
        (pick(manifest.get("label"), name), list(manifest.get("installed_objects", [])))
        for name, manifest in packs
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


def designer_links() -> list[tuple[str, str]]:
    """The setup pages an administrator sees in the navigation."""
    return [(endpoint, label()) for endpoint, label in DESIGNERS]


def designer_tabs(kind: str) -> list[tuple[str, str]]:
    """The tabs of an object's (``kind="object"``) or a role's (``"role"``) designer pages."""
    tabs = OBJECT_TABS if kind == "object" else ROLE_TABS
    return [(endpoint, label()) for endpoint, label in tabs]
