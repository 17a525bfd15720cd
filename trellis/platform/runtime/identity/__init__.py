"""Identity: users, roles, sign-in and API tokens — who may act, and with which rights.

- ``users``: ``UserService``, the one way to create and change a user;
- ``roles``: ``RoleService``, roles as versioned documents;
- ``signin``: e-mail and password, slowed and then locked after repeated failures;
- ``tokens``: API tokens (only their hash is stored) and who a bearer token stands for;
- ``sessions``: who a signed browser session stands for;
- ``caller``: ``Identity``, what either way of signing in yields, and ``Caller``, with rights;
- ``passwords``: what a password must be, and checking one.
"""

from __future__ import annotations

from trellis.platform.runtime.identity.caller import Caller, Identity
from trellis.platform.runtime.identity.roles import RoleService
from trellis.platform.runtime.identity.signin import (
    LOCK_AFTER,
    SLOW_AFTER,
    check_current_password,
    sign_in,
)
from trellis.platform.runtime.identity.users import UserService

__all__ = [
    "LOCK_AFTER",
    "SLOW_AFTER",
    "Caller",
    "Identity",
    "RoleService",
    "UserService",
    "check_current_password",
    "sign_in",
]
