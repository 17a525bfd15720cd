"""A ``user`` field reads as a user id: it compares with ``$user.id``."""

from __future__ import annotations

import pytest

from tests.factories import definition, field
from trellis.platform.expressions import ExpressionError, compile_expression

NOTE = definition(
    "note",
    {"owner_rep": field("user", "Rep"), "body": field("richtext", "Body"), "n": field("integer")},
)


def test_a_user_field_compares_with_the_callers_id() -> None:
    mine = compile_expression("owner_rep = $user.id", NOTE)
    assert mine({"owner_rep": 7}, user={"id": 7, "roles": [], "partner": None}) is True
    assert mine({"owner_rep": 8}, user={"id": 7, "roles": [], "partner": None}) is False


def test_a_user_field_is_no_text_and_richtext_is() -> None:
    assert compile_expression("CONTAINS(body, 'x')", NOTE)({"body": "<p>x</p>"}) is True
    with pytest.raises(ExpressionError):
        compile_expression("owner_rep = 'bob'", NOTE)
