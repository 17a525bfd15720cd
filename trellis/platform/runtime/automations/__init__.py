"""Automations (issue 9): versioned documents that act on record writes, on a cron
schedule, or relative to a date field. docs/automations.md is the reference.

- ``store``: ``AutomationService``, the documents in the versioned store;
- ``engine``: the write hooks (``install``) and the loop guard;
- ``actions``: what each action does; ``pack_hooks``: packs' named Python actions;
- ``runs``: the run history.
"""

from __future__ import annotations

from trellis.platform.runtime.automations.pack_hooks import HookContext, pack_hook
from trellis.platform.runtime.automations.store import AutomationService

__all__ = ["AutomationService", "HookContext", "pack_hook"]
