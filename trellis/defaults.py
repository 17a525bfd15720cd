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

# Imports (docs/import-export.md); the two limits are settings too (TRELLIS_IMPORT_MAX_*)
IMPORT_MAX_ROWS = 100_000  # data rows of one file
IMPORT_MAX_BYTES = 50 * 1024 * 1024  # bytes of one file (the upload's own request limit)
IMPORT_BATCH = BULK_MAX_RECORDS  # rows handed to the record service at a time (its most)
IMPORT_PREVIEW_ROWS = 5  # rows the mapping step shows

# Expressions (formulas, rules, conditions): docs/expressions.md
EXPRESSION_MAX_LENGTH = 4000  # characters of one expression
EXPRESSION_MAX_DEPTH = 32  # nested parentheses, calls and operators
EXPRESSION_MAX_NODES = 256  # values, operators and calls in one expression
EXPRESSION_MAX_TEXT_LITERAL = 1000  # characters of one 'text' literal
EXPRESSION_MAX_NUMBER_DIGITS = 38  # digits of one number literal
EXPRESSION_MAX_HOPS = 2  # lookups a field path follows (dealer.parent.name)
EXPRESSION_DIVISION_SCALE = 10  # decimal places a division keeps (rounded half away from zero)
EXPRESSION_ROUND_MAX_DIGITS = 10  # ROUND(x, n): n from 0 to this
EXPRESSION_CACHE_SIZE = 2048  # compiled expressions kept per process

# Automations: docs/automations.md
AUTOMATION_MAX_DEPTH = 5  # automations a write may set off one inside another (the loop guard)
AUTOMATION_DATE_CATCH_UP_DAYS = 7  # a date trigger missed while no scheduler ran still fires
AUTOMATION_SCHEDULE_EVERY = "* * * * *"  # how often the scheduler looks for due automations
APPROVAL_DEADLINES_EVERY = "* * * * *"  # how often approval deadlines are acted on
EMBEDDED_TICK_SECONDS = 15  # without Redis, how often each web process ticks the scheduler
