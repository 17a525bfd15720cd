"""The platform's limits and defaults, in one place so they are easy to find and to tune."""

from __future__ import annotations

# Lists and exports
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 500
EXPORT_PAGE = 1000  # rows read per query while exporting
MAX_EXPORT_ROWS = 100_000  # an export refuses to hold more

# Writes
BULK_MAX_RECORDS = 1000  # records in one POST /records/<object>/bulk
MAX_CHILDREN_PER_RECORD = 1000  # master-detail lines written with one parent
