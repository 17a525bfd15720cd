"""A limit on sign-in attempts per client address, across accounts (password spraying).

The account lock (``signin``) stops guessing one account's password; this stops one
address trying a few passwords on many accounts. It is Flask-Limiter's moving window,
``TRELLIS_LOGIN_RATE_LIMIT`` (default 20 per minute) POSTs to ``/login`` per address,
kept in Redis when ``TRELLIS_REDIS_URL`` (or ``TRELLIS_RATE_LIMIT_STORAGE_URL``) is set,
so every worker shares one count, and in each process's memory otherwise. Only the
sign-in view is limited: the REST API, authenticated by bearer tokens, never is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import current_app, flash, jsonify, make_response, render_template, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from limits import parse_many

from trellis.extensions import db
from trellis.platform.runtime import audit

if TYPE_CHECKING:
    from flask import Flask, Response

LIMITED_VIEWS = ("ui.login",)  # the views whose POSTs count against the address


def storage_uri(config: dict[str, Any]) -> str:
    """Where the counts live: a shared Redis when there is one, else this process."""
    return str(config.get("RATE_LIMIT_STORAGE_URL") or config.get("REDIS_URL") or "memory://")


def login_limit() -> str:
    """The current app's limit, read per request so tests can change it."""
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def _retry_after(limit: RequestLimit) -> int:
    return max(1, limit.reset_at - int(time.time()))


def _refused(limit: RequestLimit) -> Response:
    """429 for a browser (the sign-in page) or a JSON client, with Retry-After; audited."""
    retry_after = _retry_after(limit)
    email = request.form.get("email", "")[:254].replace("\x00", "").strip().lower()
    audit.record_now(
        db.engine,
        "auth.login.rate_limited",
        actor_email=email or None,
        detail={"limit": str(limit.limit), "retry_after": retry_after},
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    message = f"too many sign-in attempts from this address; try again in {retry_after} s"
    if request.accept_mimetypes.best == "application/json":
        body = {
            "error": {
                "code": "too_many_attempts",
                "message": message,
                "details": [{"field": "retry_after", "message": str(retry_after)}],
            }
        }
        response = make_response(jsonify(body), 429)
    else:
        flash(f"{message} · 登录尝试过于频繁，请稍后再试", "error")
        page = render_template("ui/login.html", next=request.form.get("next", ""), email=email)
        response = make_response(page, 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    """Limit the sign-in views of ``app``; call after their blueprint is registered."""
    try:
        parse_many(str(app.config["LOGIN_RATE_LIMIT"]))
    except ValueError as exc:
        raise ValueError(
            f"TRELLIS_LOGIN_RATE_LIMIT {app.config['LOGIN_RATE_LIMIT']!r} is not a rate "
            "limit such as '20 per minute'"
        ) from exc
    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=storage_uri(app.config),
        strategy="moving-window",
        key_prefix=str(app.config["RATE_LIMIT_KEY_PREFIX"]),
        # Redis down: sign-in goes on, still guarded by the per-account lock, and it is logged.
        swallow_errors=True,
        on_breach=_refused,
    )
    limiter.init_app(app)
    # One limiter per app (tests build many): wrap this app's registered views, not the
    # blueprint's functions that every app shares.
    for endpoint in LIMITED_VIEWS:
        decorate = limiter.limit(login_limit, methods=["POST"], override_defaults=True)
        limited: Any = decorate(app.view_functions[endpoint])
        app.view_functions[endpoint] = limited
    app.extensions["trellis.limiter"] = limiter
