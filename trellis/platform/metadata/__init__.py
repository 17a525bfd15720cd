"""Object definitions as JSON Schema: the meta-schema, field types, versions and diffs.

Pure: no Flask, no database session. Everything here can be tested in microseconds.
"""

from trellis.platform.metadata.definition import (
    ObjectDefinition,
    Problem,
    load_definition,
    meta_schema,
    parse_definition,
    validate_definition,
)
from trellis.platform.metadata.diff import DefinitionDiff, diff_definitions
from trellis.platform.metadata.fieldtypes import FieldSpec, FieldType, get_type, register

__all__ = [
    "DefinitionDiff",
    "FieldSpec",
    "FieldType",
    "ObjectDefinition",
    "Problem",
    "diff_definitions",
    "get_type",
    "load_definition",
    "meta_schema",
    "parse_definition",
    "register",
    "validate_definition",
]
