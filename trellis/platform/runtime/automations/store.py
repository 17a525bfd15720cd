"""Automation documents in the versioned-document store (``runtime/versioning.py``): the
same create / change / list / restore / delete as roles, checked against the current
objects, the pack hooks registered and the cron syntax."""

from __future__ import annotations

from typing import Any

from croniter import croniter

from trellis.exceptions import InvalidDefinition
from trellis.platform.messages import N_
from trellis.platform.metadata.automations import validate_automation
from trellis.platform.metadata.diff import DocumentDiff
from trellis.platform.runtime.automations import pack_hooks
from trellis.platform.runtime.versioning import AUTOMATIONS, DocumentStore


def cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression (``None``: nothing)."""
    if len(expression.split()) != 5:
        return N_("a cron schedule has five fields (minute hour day month weekday)")
    if not croniter.is_valid(expression):
        return N_("%(cron)s is not valid cron syntax", cron=repr(expression))
    return None


class AutomationService(DocumentStore[DocumentDiff]):
    """Create, change, restore and delete automations (administrators, through the API,
    the Setup pages and pack installs)."""

    kind = AUTOMATIONS

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        """The automation as stored, checked against the current objects and fields.

        Raises ``InvalidDefinition`` listing every problem at its JSON pointer.
        """
        self.registry.ensure_current(self.session)
        pack_hooks.load_installed(self.registry)
        problems = validate_automation(
            document,
            self.registry.documents(),
            hook_names=pack_hooks.names(),
            cron_problem=cron_problem,
        )
        if problems:
            raise InvalidDefinition(
                N_("the automation has %(count)s problem(s)", count=len(problems)),
                [p.as_detail() for p in problems],
            )
        return dict(document)
