"""Records: the one write path of every entry point (DESIGN §4), and their serialisation.

- ``service``: ``RecordService``, the public verbs (get, list, create, update, delete…);
"""

from __future__ import annotations

from trellis.platform.runtime.records.service import (
    EXPORT_PAGE,
    MAX_EXPORT_ROWS,
    RecordService,
    serialise,
)

__all__ = ["EXPORT_PAGE", "MAX_EXPORT_ROWS", "RecordService", "serialise"]
