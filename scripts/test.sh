#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint, types, tests
# (SQLite, PostgreSQL, Redis, headless Chromium). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (browser tests)"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium chromium-driver >/dev/null \
        || echo "could not install chromium; browser tests will skip (and fail under CI)"
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && command -v redis-server >/dev/null; then
    log "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

log "installing Python packages"
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

log "ruff"
ruff format --check .
ruff check .

log "mypy"
mypy

log "pytest"
python3 -m pytest -n 2 "$@"
