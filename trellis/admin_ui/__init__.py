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
from flask_wtf.csrf import CSRFError, CSRFProtect

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


@bp.before_app_request
def load_signed_in_user() -> None:
    g.user = None
    user_id = session.get("user_id")
    if user_id is None or request.path.startswith("/api/"):
        return
    with db.session() as db_session:
        user = db_session.get(User, user_id)
        if user is None or not user.is_active or session.get("stamp") != _stamp(user):
            session.clear()
            return
        db_session.expunge(user)
    g.user = user


def _safe_next(target: str | None) -> str:
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


def login_required() -> Any:
    if g.user is None:
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    return None


@bp.get("/")
def home() -> Any:
    if (response := login_required()) is not None:
        return response
    with db.session() as db_session:
        service = UserService(db_session, current_app.extensions["trellis.registry"], g.user.id)
        roles = service.roles_of(g.user.id)
    return render_template("ui/home.html", user=g.user, roles=roles)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        if g.user is not None:
            return redirect(_safe_next(request.args.get("next")))
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
        flash(f"{exc.message} ({exc.retry_after} s) · 登录失败次数过多，请稍后再试", "error")
        page = render_template("ui/login.html", next=request.form.get("next", ""), email=email)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    except AuthenticationRequired:
        audit.record_now(db.engine, "auth.login.failure", actor_email=email.lower(), **_client())
        flash("Wrong e-mail or password · 邮箱或密码错误", "error")
        page = render_template("ui/login.html", next=request.form.get("next", ""), email=email)
        return page, 401
    audit.record_now(
        db.engine, "auth.login.success", actor_id=user.id, actor_email=user.email, **_client()
    )
    session.clear()  # a fresh session: no fixation
    session.permanent = True
    session["user_id"] = user.id
    session["stamp"] = _stamp(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Any:
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
    flash("Signed out · 已退出", "info")
    return redirect(url_for("ui.login"))


@bp.route("/password", methods=["GET", "POST"])
def change_password() -> Any:
    if (response := login_required()) is not None:
        return response
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
        flash(f"{exc.message} ({exc.retry_after} s) · 失败次数过多，请稍后再试", "error")
        return render_template("ui/password.html"), 429, {"Retry-After": str(exc.retry_after)}
    if not right:
        audit.record_now(
            db.engine,
            "auth.password.failure",
            actor_id=g.user.id,
            actor_email=g.user.email,
            **_client(),
        )
        flash("The current password is wrong · 当前密码错误", "error")
        return render_template("ui/password.html"), 400
    if new != request.form.get("confirm_password", ""):
        flash("The new passwords differ · 两次输入的新密码不一致", "error")
        return render_template("ui/password.html"), 400
    try:
        check_password(new)
    except ValidationFailed as exc:
        flash(f"{exc.message}: {exc.details[0]['message']} · 密码至少 8 位", "error")
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
    flash("Password changed · 密码已修改", "info")
    return redirect(url_for("ui.home"))


def init_app(app: Flask) -> None:
    # Flask's own defaults (no SameSite, 31-day sessions) are not what we want.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    csrf.init_app(app)
    app.register_blueprint(bp)
    sign_in_limits.init_app(app)

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError) -> Any:
        return error_page(
            400, f"{exc.description} Reload the page and try again.", "Form expired · 表单已过期"
        )


ERROR_TITLES = {
    400: "Bad request · 请求有误",
    401: "Sign-in required · 需要登录",
    403: "Not allowed · 无权访问",
    404: "Page not found · 页面不存在",
    405: "Method not allowed · 不支持该请求方式",
    409: "Conflict · 冲突",
    429: "Too many requests · 请求过多",
    500: "Something went wrong · 出错了",
    503: "Busy · 系统繁忙",
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
    heading = title or ERROR_TITLES.get(status, f"Error {status} · 错误")
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
