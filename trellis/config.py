"""Settings, read from ``TRELLIS_*`` environment variables.

| variable | meaning | default |
| --- | --- | --- |
| TRELLIS_DATABASE_URL | SQLAlchemy URL of the database | SQLite file in the instance folder |
| TRELLIS_REDIS_URL | Redis for background jobs (optional) | unset |
| TRELLIS_SECRET_KEY | signs sessions and CSRF tokens | random, kept in the instance folder |
| TRELLIS_INSTANCE_PATH | folder of the SQLite file and generated secret | ./instance |
| TRELLIS_MAX_CONTENT_LENGTH | largest request body, bytes | 10 MiB |
| TRELLIS_FILE_MAX_BYTES | hard cap on one upload (`x-max-bytes` may be less) | 8 MiB |
| TRELLIS_FILES_PATH | folder of the local file store | `files/` in the instance folder |
| TRELLIS_SESSION_COOKIE_SECURE | send the sign-in cookie over HTTPS only | false |
| TRELLIS_LOGIN_RATE_LIMIT | sign-in POSTs allowed per client address | 20 per minute |
| TRELLIS_PASSWORD_SCRYPT_N | scrypt cost n of new password hashes (only tests lower it) | 32768 |
| TRELLIS_RATE_LIMIT_STORAGE_URL | where those counts live | TRELLIS_REDIS_URL, else memory |
| TRELLIS_RATE_LIMIT_KEY_PREFIX | prefix of the counts' keys in that storage | trellis |
| TRELLIS_BASE_URL | public address (https://host[/prefix]) for OpenAPI `servers` | relative |
| TRELLIS_WEBHOOK_TIMEOUT | seconds a webhook receiver has to answer | 10 |
| TRELLIS_WEBHOOK_ALLOWED_NETWORKS | private networks webhooks may reach (`10.0.0.0/8`) | none |
| TRELLIS_WEBHOOK_CA_BUNDLE | PEM file of the CAs receivers' certificates chain to | certifi's |
| TRELLIS_SMTP_HOST | SMTP server of notification e-mails (unset: no e-mail) | unset |
| TRELLIS_SMTP_PORT | its port | 587 |
| TRELLIS_SMTP_USERNAME / _PASSWORD | sign-in at the SMTP server, if it needs one | unset |
| TRELLIS_SMTP_STARTTLS | upgrade the connection with STARTTLS | true |
| TRELLIS_SMTP_SENDER | the From address | trellis@localhost |
| TRELLIS_JOB_MODULES | modules defining jobs, imported by app and worker (a,b) | none |
| TRELLIS_JOB_LEASE_SECONDS | a running job's (or claimed event's) hold without news | 60 |
| TRELLIS_JOB_REPUSH_SECONDS | a due job not picked up this long is pushed to RQ again | 60 |
| TRELLIS_RETRY_BASE_SECONDS | first back-off of a failed job or delivery (doubles) | 5 |
| TRELLIS_OUTBOX_MAX_ATTEMPTS | deliveries tried before an outbox event is marked failed | 20 |
| TRELLIS_WORKER_POLL_SECONDS | the worker's relay, sweeper and scheduler tick | 1 |
| TRELLIS_IMPORT_MAX_ROWS | data rows one import file may hold | 100,000 |
| TRELLIS_IMPORT_MAX_BYTES | bytes of one import file (may exceed MAX_CONTENT_LENGTH) | 50 MiB |
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trellis import defaults

PREFIX = "TRELLIS_"

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,
    "REDIS_URL": None,
    "SECRET_KEY": None,
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    "FILE_MAX_BYTES": 8 * 1024 * 1024,
    "FILES_PATH": None,
    "PAGE_SIZE_DEFAULT": defaults.PAGE_SIZE_DEFAULT,
    "PAGE_SIZE_MAX": defaults.PAGE_SIZE_MAX,
    "SQL_ECHO": False,
    "SESSION_COOKIE_SECURE": False,
    "LOGIN_RATE_LIMIT": "20 per minute",
    "RATE_LIMIT_STORAGE_URL": None,
    "RATE_LIMIT_KEY_PREFIX": "trellis",
    "BASE_URL": None,
    "WEBHOOK_TIMEOUT": 10.0,
    "WEBHOOK_ALLOWED_NETWORKS": "",
    "WEBHOOK_CA_BUNDLE": None,
    "SMTP_HOST": None,
    "SMTP_PORT": 587,
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_STARTTLS": True,
    "SMTP_SENDER": "trellis@localhost",
    "JOB_MODULES": "",
    "JOB_LEASE_SECONDS": 60,
    "JOB_REPUSH_SECONDS": 60,
    "RETRY_BASE_SECONDS": 5,
    "OUTBOX_MAX_ATTEMPTS": 20,
    "WORKER_POLL_SECONDS": 1,
    "IMPORT_MAX_ROWS": defaults.IMPORT_MAX_ROWS,
    "IMPORT_MAX_BYTES": defaults.IMPORT_MAX_BYTES,
}


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings found in the environment, typed like their defaults."""
    environ = dict(os.environ if environ is None else environ)
    settings: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        raw = environ.get(PREFIX + key)
        if raw is None or raw == "":
            continue
        if isinstance(default, bool):
            settings[key] = raw.lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, int):
            settings[key] = int(raw)
        elif isinstance(default, float):
            settings[key] = float(raw)
        else:
            settings[key] = raw
    if "BASE_URL" in settings:
        settings["BASE_URL"] = base_url(settings["BASE_URL"])
    password_scrypt_n(environ)  # read where hashes are made, not an app setting: checked here
    return settings


SCRYPT_N_VARIABLE = PREFIX + "PASSWORD_SCRYPT_N"
DEFAULT_SCRYPT_N = 2**15  # werkzeug's own (with r=8, p=1): 32 MiB of memory a hash


def password_scrypt_n(environ: Mapping[str, str] | None = None) -> int:
    """The scrypt cost n of new password hashes: ``TRELLIS_PASSWORD_SCRYPT_N``, else 2¹⁵.

    A process-wide setting, read from the environment when a hash is made (users are made
    outside any app too: ``trellis init``, packs' demo users). Only a test suite lowers it,
    to sign in thousands of times; a stored hash names its own cost, so it is checked the
    same whatever the setting is now.
    """
    raw = (os.environ if environ is None else environ).get(SCRYPT_N_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_SCRYPT_N
    n = int(raw) if raw.isascii() and raw.isdigit() else 0
    # From 128: below it werkzeug's memory bound for scrypt is too small for OpenSSL.
    if not 2**7 <= n <= 2**20 or n & (n - 1):
        raise ValueError(
            f"{SCRYPT_N_VARIABLE} must be a power of two from 128 to {2**20}, not {raw!r}"
        )
    return n


def base_url(raw: str) -> str:
    """``TRELLIS_BASE_URL`` checked and without its trailing slash: an http(s) origin and
    optional path prefix, nothing else (a query or fragment would end up inside every URL)."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"TRELLIS_BASE_URL must look like https://trellis.example.com, not {raw!r}"
        )
    return raw.strip().rstrip("/")


def default_database_url(instance_path: str) -> str:
    """A SQLite file ``trellis.db`` in the instance folder, when no DATABASE_URL is given."""
    return f"sqlite:///{Path(instance_path) / 'trellis.db'}"


def instance_secret(instance_path: str) -> str:
    """A secret key generated once and kept (mode 0600) in the instance folder."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
