"""list views

Saved list views: per user, or shared with a role (``runtime/views.py``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 16:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "list_views",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("object_name", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=120), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shared_with_role", sa.String(length=40), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_name"],
            ["meta_objects.name"],
            name=op.f("fk_list_views_object_name_meta_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_list_views_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shared_with_role"],
            ["roles.name"],
            name=op.f("fk_list_views_shared_with_role_roles"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_views")),
        sa.UniqueConstraint(
            "owner_id",
            "object_name",
            "label",
            name=op.f("uq_list_views_owner_id_object_name_label"),
        ),
    )
    op.create_index(
        "ix_list_views_shared", "list_views", ["object_name", "shared_with_role"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_list_views_shared", table_name="list_views")
    op.drop_table("list_views")
