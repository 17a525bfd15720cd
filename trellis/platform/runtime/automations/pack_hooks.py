"""Named Python actions of packs: what metadata cannot express (DESIGN §8).

A pack's optional ``hooks.py`` registers them, each named ``<pack>.<action>``::

    from trellis.platform.runtime.automations import HookContext, pack_hook

    @pack_hook("channel_pack.recompute_exposure")
    def recompute_exposure(ctx: HookContext) -> None:
        ctx.records.update("dealer", ctx.record_id, {...})

An automation's ``{"type": "hook", "name": "channel_pack.recompute_exposure"}`` runs it in
the write's transaction; what it writes goes through ``ctx.records`` (the record service,
as the system), so the pipeline, rules and the loop guard apply. The module is imported
when the pack is installed and, in every other process, the first time a hook is looked
up (the installed pack's manifest names the file).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trellis.exceptions import PackError
from trellis.platform.messages import N_

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.records import RecordService
    from trellis.platform.runtime.registry import MetaRegistry

HOOKS_FILE = "hooks.py"


@dataclass
class HookContext:
    """What a pack hook is given: the transaction, the system's record service, and the
    record that set the automation off."""

    session: Session
    registry: MetaRegistry
    records: RecordService
    automation: str
    object_name: str
    record_id: int | None
    record: dict[str, Any]


PackHook = Callable[[HookContext], None]
_HOOKS: dict[str, PackHook] = {}
_LOADED: set[str] = set()
_LOCK = threading.Lock()


def pack_hook(name: str) -> Callable[[PackHook], PackHook]:
    """Register ``function`` as the pack action ``name`` (``<pack>.<action>``)."""

    def register(function: PackHook) -> PackHook:
        _HOOKS[name] = function
        return function

    return register


def names() -> frozenset[str]:
    """The names of every registered pack hook."""
    return frozenset(_HOOKS)


def get(name: str) -> PackHook | None:
    """The hook registered as ``name``, if any."""
    return _HOOKS.get(name)


def load(pack_name: str, path: Path) -> list[str]:
    """Import a pack's ``hooks.py`` once per process; the names it registered.

    Raises ``PackError`` when it fails to import or registers a name outside its pack.
    """
    key = str(path.resolve())
    with _LOCK:
        if key in _LOADED:
            return sorted(n for n in _HOOKS if n.startswith(f"{pack_name}."))
        before = set(_HOOKS)
        spec = importlib.util.spec_from_file_location(f"trellis_pack_hooks.{pack_name}", path)
        if spec is None or spec.loader is None:
            raise PackError(N_("cannot load %(file)s", file=HOOKS_FILE))
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the pack's own code: any failure is the pack's problem
            for name in set(_HOOKS) - before:
                del _HOOKS[name]
            raise PackError(
                N_("%(file)s failed to load: %(reason)s", file=HOOKS_FILE, reason=repr(exc))
            ) from None
        added = sorted(set(_HOOKS) - before)
        foreign = [n for n in added if not n.startswith(f"{pack_name}.")]
        if foreign:
            for name in added:
                del _HOOKS[name]
            raise PackError(
                N_(
                    "%(file)s may only register hooks named %(pack)s.<action>, not %(names)s",
                    file=HOOKS_FILE,
                    pack=pack_name,
                    names=", ".join(foreign),
                )
            )
        _LOADED.add(key)
        return added


def load_installed(registry: MetaRegistry) -> None:
    """Import the hooks of every installed pack that has them (once per process)."""
    for name, manifest in registry.installed_packs():
        path = manifest.get("hooks_file")
        if (
            isinstance(path, str)
            and str(Path(path).resolve()) not in _LOADED
            and Path(path).is_file()
        ):
            load(name, Path(path))
