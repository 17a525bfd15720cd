"""In-app notifications per user, optionally e-mailed (docs/notifications.md)."""

from __future__ import annotations

from trellis.platform.runtime.notifications.service import NotificationService, notify

__all__ = ["NotificationService", "notify"]
