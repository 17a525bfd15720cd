"""Who is making a request, and what they may do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trellis.platform.metadata.permissions import Permissions

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Caller:
    """Who is making the request, and what they may do."""

    user_id: int
    email: str
    is_admin: bool
    partner_id: int | None
    roles: tuple[str, ...]
    permissions: Permissions  # what the caller may do (everything, for an admin)
    role_permissions: Permissions  # what their roles alone grant (to audit admin bypass)
    token_id: int | None = None
