"""Records: the one write path of every entry point (DESIGN §4), and their serialisation.

- ``service``: ``RecordService``, the public verbs (get, list, create, bulk, update, delete…);
- ``pipeline``: the named steps every write goes through;
- ``hooks``: the moments other capabilities plug into (``Hook``, ``hooks.register``);
- ``serialise``: stored rows as API JSON, and the one timestamp format.
"""

from __future__ import annotations

from trellis.platform.runtime.records.hooks import Action, Hook, HookRegistry, WriteEvent, hooks
from trellis.platform.runtime.records.serialise import serialise
from trellis.platform.runtime.records.service import RecordService

__all__ = [
    "Action",
    "Hook",
    "HookRegistry",
    "RecordService",
    "WriteEvent",
    "hooks",
    "serialise",
]

# Workflows hold every write to their rules through a hook; registered with the package.
from trellis.platform.runtime.workflow import guard as _workflow_guard

del _workflow_guard
