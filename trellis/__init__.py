"""Trellis: a low-code platform. ``create_app`` is the application factory."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from trellis import config as settings
from trellis.exceptions import Forbidden, TooManyAttempts, TrellisError

__version__ = "0.1.0"

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from defaults, ``TRELLIS_*`` variables and ``test_config``, in that order."""
    app = Flask(
        __name__,
        instance_path=os.path.abspath(os.environ.get("TRELLIS_INSTANCE_PATH", "instance")),
    )
    app.config.update(settings.DEFAULTS)
    app.config.update(settings.from_environment())
    if test_config:
        app.config.update(test_config)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = settings.default_database_url(app.instance_path)
        settings.Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = settings.instance_secret(app.instance_path)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    from trellis import admin_ui
    from trellis.extensions import Database
    from trellis.platform.runtime import api, files, jobs
    from trellis.platform.runtime.automations import engine as automations
    from trellis.platform.runtime.imports.service import release_request_sheets
    from trellis.platform.runtime.workflow import deadlines  # approvals' deadline schedule

    # First of all: every view may read request.args, which fails on bytes that are not UTF-8.
    app.before_request(_refuse_undecodable_query)
    Database.init_app(app)
    files.init_app(app)
    app.teardown_request(release_request_sheets)
    jobs.init_app(app)
    api.init_app(app)
    automations.install()  # the record-write hooks, once per process
    del deadlines  # imported for the job and schedule it registers
    admin_ui.init_app(app)
    # Tokens need no CSRF check; session writes to the API are checked by the API itself.
    admin_ui.csrf.exempt(api.bp)
    _register_error_handlers(app)
    return app


def _refuse_undecodable_query() -> None:
    from trellis.platform.runtime.unicode_text import refuse_undecodable_query

    refuse_undecodable_query(request.query_string)


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """The error as JSON under ``/api/``, as the app's own page everywhere else."""
    if not _is_api():
        from trellis.admin_ui import error_page

        return error_page(status, message, details=details, headers=headers)
    details = _in_callers_language(details or [])
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonify(body), status, headers or {}


def _in_callers_language(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages written in several languages (validation rules) in the caller's: their
    ``Accept-Language``, zh-CN or English."""
    from trellis.platform.messages import Localized

    if not any(isinstance(d.get("message"), Localized) for d in details if isinstance(d, dict)):
        return details
    best = request.accept_languages.best_match(["en", "zh-CN", "zh"], default="en")
    language = "zh-CN" if best.startswith("zh") else "en"
    return [
        {**d, "message": d["message"].in_language(language)}
        if isinstance(d, dict) and isinstance(d.get("message"), Localized)
        else d
        for d in details
    ]


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TrellisError)
    def trellis_error(exc: TrellisError) -> Any:
        if isinstance(exc, Forbidden) and _is_api():
            from trellis.platform.runtime.api import defer_event

            defer_event(
                "permission.denied",
                f"{request.method} {request.path}",
                {"message": exc.message, "details": exc.details},
            )
        headers = {}
        if isinstance(exc, TooManyAttempts):
            headers["Retry-After"] = str(exc.retry_after)
        return _error(exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.response is not None:  # it brings its own answer (the sign-in rate limit's)
            return exc.response
        code = (exc.name or "error").lower().replace(" ", "_")
        # Keep what the exception says beyond its body: Allow on a 405, for one.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _error(exc.code or 500, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(DataError)
    def data_error(exc: DataError) -> Any:
        # Input the database refuses (a NUL character on PostgreSQL…): bad input, not a crash.
        log.info("value refused by the database: %s", exc.orig)
        return _error(400, "bad_request", "the request holds a value the database cannot store")

    @app.errorhandler(IntegrityError)
    def integrity_error(exc: IntegrityError) -> Any:
        # The service checks references and uniqueness first; this is the race backstop.
        log.info("integrity error: %s", exc.orig)
        return _error(409, "conflict", "the change conflicts with a concurrent change; retry")

    @app.errorhandler(OperationalError)
    def operational_error(exc: OperationalError) -> Any:
        if "locked" in str(exc.orig):
            return _error(503, "busy", "the database is busy; retry")
        log.exception("database error")
        return _error(500, "internal_error", "internal error")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal_error", "internal error")
