"""The file store behind ``file`` and ``image`` fields, and what is read from an upload.

Bytes go to a ``FileStore`` (``put`` / ``open`` / ``delete`` by key); their metadata to the
``stored_files`` table (``models.StoredFile``). ``LocalFileStore`` keeps them under the
instance folder, content-addressed: the key is the SHA-256 of the bytes, the path
``files/<2 hex>/<64 hex>``, so the user's file name never becomes a path and the same
bytes are kept once. An S3-compatible store is another class with the same three methods.

The type of an upload is read from its content (``puremagic``), never from its name or
the Content-Type the client sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flask import Flask, Response

    from trellis.platform.runtime.models import StoredFile

# Served inline (an image field's preview); any other type is always a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

KEY_RE = re.compile(r"^[0-9a-f]{64}$")
UNKNOWN_MIME = "application/octet-stream"
MAX_NAME_LENGTH = 200


class FileStore(Protocol):
    """Where uploaded bytes live, by key."""

    def put(self, data: bytes) -> str:
        """Keep ``data``; return its key."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """The bytes of ``key``, as a binary file to read (``FileNotFoundError`` if gone)."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (nothing happens when it is gone already)."""
        ...


class LocalFileStore:
    """A ``FileStore`` in a folder: content-addressed files, written atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not KEY_RE.match(key):  # a key is ours: never a path someone sent
            raise ValueError(f"not a file key: {key!r}")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Write ``data`` under its SHA-256 (once: the same bytes share a file)."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def open(self, key: str) -> IO[bytes]:
        """The file of ``key``, opened for reading."""
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        """Remove the file of ``key`` if it is there."""
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the store holds ``key``."""
        return self._path(key).exists()


def sniff_mime(data: bytes) -> str:
    """The MIME type the content says it is (magic bytes), else ``application/octet-stream``."""
    import puremagic

    try:
        matches = puremagic.magic_string(data[:8192] if len(data) > 8192 else data)
    except (puremagic.PureError, ValueError):
        return UNKNOWN_MIME
    typed = [m for m in matches if m.mime_type]
    if not typed:
        return UNKNOWN_MIME
    best = max(typed, key=lambda m: m.confidence)
    return str(best.mime_type).lower()


def safe_name(name: str | None) -> str:
    """A file name fit to show and to send back in ``Content-Disposition``: the last path
    part, control characters and quotes removed, at most 200 characters; ``file`` if empty.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" and c not in '"<>')
    text = text.strip().strip(".") or "file"
    if len(text) > MAX_NAME_LENGTH:
        stem, dot, suffix = text.rpartition(".")
        text = (
            f"{stem[: MAX_NAME_LENGTH - len(suffix) - 1]}.{suffix}"
            if dot and len(suffix) <= 10
            else text[:MAX_NAME_LENGTH]
        )
    return text


def init_app(app: Flask) -> None:
    """Give the app its file store: ``FILES_PATH`` (default ``<instance>/files``)."""
    root = app.config.get("FILES_PATH") or os.path.join(app.instance_path, "files")
    app.extensions["trellis.files"] = LocalFileStore(root)


def current_store() -> FileStore:
    """The running app's file store."""
    from flask import current_app

    store: FileStore = current_app.extensions["trellis.files"]
    return store


def upload_cap() -> int:
    """The hard cap on any upload, bytes (``FILE_MAX_BYTES``; a field may ask for less)."""
    from flask import current_app

    return int(current_app.config.get("FILE_MAX_BYTES") or 0) or 8 * 1024 * 1024


def send_stored(stored: StoredFile, store: FileStore) -> Response:
    """The response of a download: the sniffed type, ``nosniff``, a sandboxing CSP, and
    ``attachment`` for everything but the raster images a preview shows.
    """
    from flask import send_file

    from trellis.exceptions import NotFound
    from trellis.platform.messages import N_

    try:
        handle = store.open(stored.storage_key)
    except FileNotFoundError:
        raise NotFound(N_("the file is gone")) from None
    response = send_file(
        handle,
        mimetype=stored.mime,
        as_attachment=stored.mime not in INLINE_TYPES,
        download_name=stored.original_name,
        etag=stored.sha256,
        conditional=True,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


__all__ = [
    "FileStore",
    "LocalFileStore",
    "current_store",
    "init_app",
    "safe_name",
    "send_stored",
    "sniff_mime",
    "upload_cap",
]
