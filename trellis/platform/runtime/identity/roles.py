"""Roles: versioned documents like object definitions (``runtime/versioning.py``); the
pure rules are in ``platform/metadata/permissions.py``. A change bumps the metadata
revision so every process recombines the rights it cached.
"""

from __future__ import annotations

from typing import Any

from trellis.exceptions import InvalidDefinition
from trellis.platform.metadata.diff import DocumentDiff
from trellis.platform.metadata.permissions import validate_role
from trellis.platform.runtime.versioning import ROLES, DocumentStore


class RoleService(DocumentStore[DocumentDiff]):
    """Create, change and restore roles."""

    kind = ROLES

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        """The role document as stored, checked against the current objects and fields.

        Raises ``InvalidDefinition`` listing every problem.
        """
        self.registry.ensure_current(self.session)
        problems = validate_role(document, self.registry.documents())
        if problems:
            raise InvalidDefinition(
                f"the role has {len(problems)} problem(s)", [p.as_detail() for p in problems]
            )
        return dict(document)
