"""Webhooks as administrators manage them: create, change, rotate the secret, delete, and
read the delivery log. No Flask here: the API and the Setup pages both call this service.

A secret is handed out once, by ``create`` and ``rotate``; everything else answers its
hint (``whsec_…a1b2``). Changes are audited in the caller's transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import NotFound, TargetRefused, ValidationFailed
from trellis.platform.messages import N_
from trellis.platform.runtime import audit
from trellis.platform.runtime.models import Webhook, WebhookDelivery, utcnow
from trellis.platform.runtime.sealing import hint, seal, unseal
from trellis.platform.runtime.versioning import bump_revision
from trellis.platform.runtime.webhooks.targets import Network, allowed_networks, check_target

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry

SECRET_PREFIX = "whsec_"
# The record events the platform publishes; automations may publish others of this shape.
RECORD_EVENTS = ("record.created", "record.updated", "record.deleted")
TEST_EVENT = "webhook.test"
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,28}(\.[a-z][a-z0-9_]{0,28}){1,2}$")
MAX_EVENTS = 20
MAX_OBJECTS = 100
DELIVERIES_PAGE = 50
# What decides which events a webhook gets: a change to one moves the metadata revision,
# so that every process reads the webhooks again before it publishes (``events.routes``).
ROUTING = frozenset({"events", "objects", "active"})


@dataclass(frozen=True)
class WebhookSettings:
    """What deliveries and URL checks need from the app's settings."""

    secret_key: str
    timeout: float
    allowed: tuple[Network, ...]
    ca_bundle: str | None = None  # PEM file of the CAs receivers' certificates chain to

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> WebhookSettings:
        """The settings of an app's ``config``."""
        return cls(
            secret_key=str(config["SECRET_KEY"]),
            timeout=float(config.get("WEBHOOK_TIMEOUT") or 10.0),
            allowed=allowed_networks(config.get("WEBHOOK_ALLOWED_NETWORKS")),
            ca_bundle=config.get("WEBHOOK_CA_BUNDLE") or None,
        )


def new_secret() -> str:
    """A fresh signing secret: 256 random bits, prefixed so it is recognised when leaked."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_of(webhook: Webhook, settings: WebhookSettings) -> str:
    """The webhook's signing secret, unsealed (for signing only: never answered)."""
    return unseal(webhook.secret_sealed, settings.secret_key)


@dataclass(frozen=True)
class Route:
    """What publishing needs of an active webhook: its id and what it wants."""

    id: int
    events: tuple[str, ...]
    objects: tuple[str, ...]
    active: bool = True


def wants(webhook: Webhook | Route, event_type: str, object_name: str | None) -> bool:
    """Whether ``webhook`` is told about ``event_type`` on ``object_name``."""
    if not webhook.active or event_type not in webhook.events:
        return False
    return not webhook.objects or object_name in webhook.objects


class WebhookService:
    """The webhooks of one database, changed by one (administrator) user."""

    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        settings: WebhookSettings,
        actor_id: int | None,
        audit_context: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.settings = settings
        self.actor_id = actor_id
        self.audit_context = audit_context or {}

    def all(self) -> list[Webhook]:
        """Every webhook, by name."""
        return list(self.session.scalars(sa.select(Webhook).order_by(Webhook.name, Webhook.id)))

    def get(self, webhook_id: int) -> Webhook:
        """One webhook; ``NotFound`` when there is none of that id."""
        webhook = self.session.get(Webhook, webhook_id)
        if webhook is None:
            raise NotFound(N_("no webhook %(id)s", id=webhook_id))
        return webhook

    def create(self, data: Mapping[str, Any]) -> tuple[Webhook, str]:
        """A new webhook from ``name``, ``url``, ``events`` (and ``objects``, ``active``),
        checked first; it and its secret, which is shown this once."""
        values = self._checked(data, None)
        secret = new_secret()
        webhook = Webhook(
            **values,
            secret_sealed=seal(secret, self.settings.secret_key),
            secret_hint=hint(secret, SECRET_PREFIX),
            created_by=self.actor_id,
        )
        self.session.add(webhook)
        self.session.flush()
        self._audit("webhook.created", webhook, sorted(values))
        bump_revision(self.session)  # what publishing keeps (``events.routes``) moves
        return webhook, secret

    def update(self, webhook_id: int, data: Mapping[str, Any]) -> Webhook:
        """Change the keys of ``data`` (checked as on create); the secret stays."""
        webhook = self._locked(webhook_id)
        values = self._checked(data, webhook)
        changed = sorted(key for key, value in values.items() if getattr(webhook, key) != value)
        if changed:
            for key in changed:
                setattr(webhook, key, values[key])
            webhook.version += 1
            webhook.updated_at = utcnow()
            self.session.flush()
            self._audit("webhook.updated", webhook, changed)
            if ROUTING.intersection(changed):
                bump_revision(self.session)
        return webhook

    def rotate(self, webhook_id: int) -> tuple[Webhook, str]:
        """A new secret for the webhook (the old one stops signing at once), shown this once."""
        webhook = self._locked(webhook_id)
        secret = new_secret()
        webhook.secret_sealed = seal(secret, self.settings.secret_key)
        webhook.secret_hint = hint(secret, SECRET_PREFIX)
        webhook.version += 1
        webhook.updated_at = utcnow()
        self.session.flush()
        self._audit("webhook.secret_rotated", webhook, ["secret"])
        return webhook, secret

    def delete(self, webhook_id: int) -> None:
        """Delete the webhook and its delivery log; events not yet delivered are dropped."""
        webhook = self._locked(webhook_id)
        self._audit("webhook.deleted", webhook, [])
        self.session.execute(
            sa.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
        )
        self.session.delete(webhook)
        self.session.flush()
        bump_revision(self.session)

    def deliveries(
        self, webhook_id: int, before: int | None = None, limit: int = DELIVERIES_PAGE
    ) -> list[WebhookDelivery]:
        """The webhook's delivery attempts, newest first, ``limit`` at a time before an id."""
        self.get(webhook_id)
        statement = (
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
        if before is not None:
            statement = statement.where(WebhookDelivery.id < before)
        return list(self.session.scalars(statement))

    # --- checks ------------------------------------------------------------------------------

    def _locked(self, webhook_id: int) -> Webhook:
        """The webhook re-read under a row lock, so two changes queue."""
        webhook = self.session.scalars(
            sa.select(Webhook)
            .where(Webhook.id == webhook_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        if webhook is None:
            raise NotFound(N_("no webhook %(id)s", id=webhook_id))
        return webhook

    def _checked(self, data: Mapping[str, Any], current: Webhook | None) -> dict[str, Any]:
        """The values of ``data`` to store, or ``ValidationFailed`` naming every problem."""
        problems: list[dict[str, str]] = []
        values: dict[str, Any] = {}
        refusal: type[ValidationFailed] = ValidationFailed
        if "name" in data or current is None:
            name = str(data.get("name") or "").strip()
            if not name:
                problems.append({"field": "name", "message": N_("a name is required")})
            values["name"] = name[:120]
        if "url" in data or current is None:
            url = str(data.get("url") or "").strip()
            try:
                check_target(url, self.settings.allowed)
            except TargetRefused as exc:
                problems.extend(exc.details)
                refusal = TargetRefused
            values["url"] = url
        if "events" in data or current is None:
            events = list(dict.fromkeys(data.get("events") or []))
            problems.extend(_event_problems(events))
            values["events"] = events
        if "objects" in data or current is None:
            objects = list(dict.fromkeys(data.get("objects") or []))
            problems.extend(self._object_problems(objects))
            values["objects"] = objects
        if "active" in data or current is None:
            values["active"] = bool(data.get("active", True))
        if problems:
            fields = ", ".join(dict.fromkeys(p["field"] for p in problems))
            raise refusal(N_("the webhook was refused: %(fields)s", fields=fields), problems)
        return values

    def _object_problems(self, objects: list[Any]) -> list[dict[str, str]]:
        if len(objects) > MAX_OBJECTS:
            return [{"field": "objects", "message": N_("at most %(max)s objects", max=MAX_OBJECTS)}]
        known = {meta.name for meta in self.registry.all()}
        return [
            {
                "field": f"objects[{index}]",
                "message": N_("%(name)s is not an object", name=repr(name)),
            }
            for index, name in enumerate(objects)
            if name not in known
        ]

    def _audit(self, action: str, webhook: Webhook, changed: list[str]) -> None:
        audit.record(
            self.session,
            action,
            actor_id=self.actor_id,
            target=f"webhook/{webhook.id}",
            detail={"name": webhook.name, "url": webhook.url, "changed": changed},
            **self.audit_context,
        )


def _event_problems(events: list[Any]) -> list[dict[str, str]]:
    if not events:
        return [{"field": "events", "message": N_("choose at least one event")}]
    if len(events) > MAX_EVENTS:
        return [{"field": "events", "message": N_("at most %(max)s events", max=MAX_EVENTS)}]
    return [
        {
            "field": f"events[{index}]",
            "message": N_(
                "%(name)s is not an event type (such as record.created)", name=repr(name)
            ),
        }
        for index, name in enumerate(events)
        if not isinstance(name, str) or not EVENT_TYPE.match(name)
    ]
