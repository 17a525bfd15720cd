"""Workflows: state machines over an object's status field, as JSON documents. Pure: no
Flask, no session (DESIGN §6). ``document`` holds the format and its checks, ``engine``
the decisions; ``runtime/workflow.py`` applies them."""

from trellis.platform.workflow.document import (
    Category,
    CommentRule,
    State,
    Transition,
    Workflow,
    parse_workflow,
    validate_workflow,
    workflow_meta_schema,
)
from trellis.platform.workflow.engine import (
    Decision,
    Migration,
    Refusal,
    available,
    decide,
    locked_changes,
    migrate_states,
    status_problem,
)

__all__ = [
    "Category",
    "CommentRule",
    "Decision",
    "Migration",
    "Refusal",
    "State",
    "Transition",
    "Workflow",
    "available",
    "decide",
    "locked_changes",
    "migrate_states",
    "parse_workflow",
    "status_problem",
    "validate_workflow",
    "workflow_meta_schema",
]
