"""Pages for people: sign-in, sign-out, change password, the start page.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure when
``TRELLIS_SESSION_COOKIE_SECURE`` is set); every form carries a CSRF token
(Flask-WTF), and a session ends when its user's password changes or the user is
deactivated. Views parse input, call the identity service and redirect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect

from trellis.admin_ui import i18n
from trellis.admin_ui.context import close_page, open_page, user_choices
from trellis.admin_ui.forms import (
    RICH_TYPES,
    list_href,
    record_href,
    rich_value,
    system_label,
    table_body,
    table_columns,
)
from trellis.admin_ui.pages import (
    designer_links,
    designer_tabs,
    moment_text,
    navigation,
    navigation_html,
    signed_in,
)
from trellis.exceptions import AuthenticationRequired, TooManyAttempts, ValidationFailed
from trellis.extensions import db
from trellis.platform.runtime import audit
from trellis.platform.runtime.identity import UserService, check_current_password, sign_in
from trellis.platform.runtime.identity import limits as sign_in_limits
from trellis.platform.runtime.identity.passwords import check_password
from trellis.platform.runtime.identity.sessions import session_stamp
from trellis.platform.runtime.models import User

bp = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)
csrf = CSRFProtect()

SESSION_LIFETIME = dt.timedelta(hours=12)


def _stamp(user: User) -> str:
    """The stamp a session of ``user`` carries; the API checks the same one."""
    return session_stamp(user.password_changed_at, user.session_epoch)


def _client() -> dict[str, Any]:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string}


def safe_next(target: str | None) -> str:
    """Only same-site paths: never an open redirect."""
    if not target:
        return url_for("ui.home")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        # Browsers read "\" as "/" and drop tabs and newlines: "/\evil.example" is off-site.
        or "\\" in target
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target)
    ):
        return url_for("ui.home")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """``/login``: the sign-in form (a signed-in user is sent on to ``next``); a right
    password starts a fresh session. 401 for a wrong one, 429 with Retry-After when locked.
    """
    if request.method == "GET":
        if g.user is not None:
            return redirect(safe_next(request.args.get("next")))
        return render_template("ui/login.html", next=request.args.get("next", ""))
    # No address holds a NUL, and PostgreSQL could not even look one up (or audit it).
    email = request.form.get("email", "")[:254].replace("\x00", "")
    password = request.form.get("password", "")[:1000]
    try:
        # Counts the attempt in its own transaction, committed even when it is refused.
        user = sign_in(db.engine, email, password)
    except TooManyAttempts as exc:
        audit.record_now(
            db.engine,
            "auth.login.throttled",
            actor_email=email.lower(),
            detail={"retry_after": exc.retry_after},
            **_client(),
        )
        flash(
            _(
                "Too many failed sign-ins: the account is locked; try again in %(seconds)d s.",
                seconds=exc.retry_after,
            ),
            "error",
        )
        page = render_template("ui/login.html", next=request.form.get("next", ""), email=email)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    except AuthenticationRequired:
        audit.record_now(db.engine, "auth.login.failure", actor_email=email.lower(), **_client())
        flash(_("Wrong e-mail or password."), "error")
        page = render_template("ui/login.html", next=request.form.get("next", ""), email=email)
        return page, 401
    audit.record_now(
        db.engine, "auth.login.success", actor_id=user.id, actor_email=user.email, **_client()
    )
    session.clear()  # a fresh session: no fixation
    session.permanent = True
    session["user_id"] = user.id
    session["stamp"] = _stamp(user)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Any:
    """``POST /logout``: end every session of the user (the epoch moves, copied cookies
    too), audited, and go back to the sign-in page.
    """
    if g.user is not None:
        with db.session() as db_session:
            db_session.execute(
                sa.update(User)
                .where(User.id == g.user.id)
                .values(session_epoch=User.session_epoch + 1)
            )
            audit.record(
                db_session,
                "auth.logout",
                actor_id=g.user.id,
                actor_email=g.user.email,
                **_client(),
            )
            db_session.commit()
    session.clear()
    flash(_("Signed out."), "info")
    return redirect(url_for("ui.login"))


@bp.route("/password", methods=["GET", "POST"])
@signed_in
def change_password() -> Any:
    """``/password``: change the signed-in user's password, checked like a sign-in.

    400 for a wrong current password, differing or weak new ones; 429 with Retry-After when
    locked. Other sessions end; this one carries the new stamp.
    """
    if request.method == "GET":
        return render_template("ui/password.html")
    current = request.form.get("current_password", "")[:1000]
    new = request.form.get("new_password", "")
    try:
        # Counted like a sign-in before the check, so a stolen session cannot guess freely.
        right = check_current_password(db.engine, g.user.id, current)
    except TooManyAttempts as exc:
        audit.record_now(
            db.engine,
            "auth.password.throttled",
            actor_id=g.user.id,
            actor_email=g.user.email,
            detail={"retry_after": exc.retry_after},
            **_client(),
        )
        flash(
            _("Too many failed attempts; try again in %(seconds)d s.", seconds=exc.retry_after),
            "error",
        )
        return render_template("ui/password.html"), 429, {"Retry-After": str(exc.retry_after)}
    if not right:
        audit.record_now(
            db.engine,
            "auth.password.failure",
            actor_id=g.user.id,
            actor_email=g.user.email,
            **_client(),
        )
        flash(_("The current password is wrong."), "error")
        return render_template("ui/password.html"), 400
    if new != request.form.get("confirm_password", ""):
        flash(_("The new passwords differ."), "error")
        return render_template("ui/password.html"), 400
    try:
        check_password(new)
    except ValidationFailed as exc:
        flash(
            _(
                "The new password is too weak: %(reason)s",
                reason=i18n.told(exc.details[0]["message"]),
            ),
            "error",
        )
        return render_template("ui/password.html"), 400
    with db.session() as db_session:
        user = db_session.get(User, g.user.id)
        assert user is not None
        UserService(db_session, current_app.extensions["trellis.registry"], user.id).update(
            user.id, {"password": new}
        )
        audit.record(
            db_session,
            "auth.password.changed",
            actor_id=user.id,
            actor_email=user.email,
            **_client(),
        )
        db_session.commit()
        session["stamp"] = _stamp(user)
    flash(_("Password changed."), "info")
    return redirect(url_for("ui.home"))


# Requests a page sends by itself while the user works (htmx previews, typeahead, the view
# picker): they never set the session cookie unless they changed the session. A cookie
# session is last-writer-wins, and a preview answered after a save would put back the
# session from before it (the save's "Saved." message lost).
BACKGROUND_ENDPOINTS = frozenset(
    {
        "ui.record_compute",
        "ui.field_settings",
        "ui.field_preview",
        "ui.view_menu",
        "ui.lookup_options",
        "ui.job_progress",
    }
)


class PageSessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, not refreshed by the page's background requests."""

    def should_set_cookie(self, app: Flask, session: Any) -> bool:
        """Not for a background request that left the session as it was."""
        if request.endpoint in BACKGROUND_ENDPOINTS and not session.modified:
            return False
        return bool(super().should_set_cookie(app, session))


def init_app(app: Flask) -> None:
    """Register the pages: session cookie settings, CSRF, languages, the view modules,
    the template globals, and the per-page unit of work.
    """
    app.session_interface = PageSessionInterface()
    # Flask's own defaults (no SameSite, 31-day sessions) are not what we want.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    csrf.init_app(app)
    i18n.init_app(app)
    from trellis.admin_ui.views import (
        approvals,
        automations,
        designer_access,
        designer_history,
        designer_layout,
        designer_rules,
        imports,
        jobs,
        notifications,
        objects,
        outbox,
        record_compute,
        records,
        saved_views,
        shell,
        webhooks,
        workflow_approval,
        workflows,
    )

    del designer_access, designer_history, designer_layout, objects, records, saved_views, shell
    del automations, designer_rules, imports, jobs, outbox, record_compute, webhooks, workflows
    del workflow_approval
    app.jinja_env.globals.update(
        navigation=navigation,
        navigation_html=navigation_html,
        designer_links=designer_links,
        designer_tabs=designer_tabs,
        system_label=system_label,
        table_columns=table_columns,
        table_body=table_body,
        record_href=record_href,
        list_href=list_href,
        rich_value=rich_value,
        rich_types=RICH_TYPES,
        user_choices=user_choices,
        unread_notifications=notifications.unread_notifications,
        pending_approvals=approvals.pending_approvals,
    )
    del notifications, approvals
    app.jinja_env.filters["moment"] = moment_text
    app.before_request(open_page)
    app.teardown_request(close_page)
    app.register_blueprint(bp)
    sign_in_limits.init_app(app)

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError) -> Any:
        return error_page(
            400,
            _("%(reason)s Reload the page and try again.", reason=exc.description),
            _("Form expired"),
        )


ERROR_TITLES = {
    400: _l("Bad request"),
    401: _l("Sign-in required"),
    403: _l("Not allowed"),
    404: _l("Page not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    413: _l("Too large"),
    422: _l("Not valid"),
    429: _l("Too many requests"),
    500: _l("Something went wrong"),
    503: _l("Busy"),
}


def error_page(
    status: int,
    message: str,
    title: str | None = None,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """The app's own error page (its layout, the message, a link home) with ``status``."""
    heading = title or str(ERROR_TITLES.get(status) or _("Error %(status)d", status=status))
    try:
        page = render_template(
            "ui/error.html", title=heading, status=status, message=message, details=details or []
        )
    except Exception:
        # The page must not fail where the error came from (a database that is down…).
        current_app.logger.exception("the error page could not be rendered")
        page = f"{heading}\n\n{message}\n"
        headers = {**(headers or {}), "Content-Type": "text/plain; charset=utf-8"}
    return page, status, headers or {}
