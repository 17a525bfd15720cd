"""Import of records from CSV and XLSX files, and the XLSX side of exports.

``service`` keeps the runs (upload, mapping, mode, report), ``runner`` runs them through
the record service, ``mapping`` maps columns to fields and cells to values, ``sheets``
reads and writes the files. docs/import-export.md describes them.
"""

from __future__ import annotations

from trellis.platform.runtime.imports.runner import execute, run_here, start
from trellis.platform.runtime.imports.service import (
    FINISHED,
    ImportLimits,
    ImportMode,
    ImportService,
    ImportStatus,
    describe,
    report_csv,
)
from trellis.platform.runtime.imports.sheets import ImportFormat, write_xlsx

__all__ = [
    "FINISHED",
    "ImportFormat",
    "ImportLimits",
    "ImportMode",
    "ImportService",
    "ImportStatus",
    "describe",
    "execute",
    "report_csv",
    "run_here",
    "start",
    "write_xlsx",
]
