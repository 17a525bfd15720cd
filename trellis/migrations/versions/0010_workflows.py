"""workflows

Workflow documents (state machines over an object's status field) are versioned like
roles: a head row per workflow and immutable versions. History rows gain a ``detail``
(a transition's name, its states and its comment).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workflows")),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workflow_name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False, server_default=""),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("author_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_workflow_versions_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_name"],
            ["workflows.name"],
            name=op.f("fk_workflow_versions_workflow_name_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint(
            "workflow_name", "version", name=op.f("uq_workflow_versions_workflow_name_version")
        ),
    )
    # Nullable: SQLite adds it with ALTER TABLE, PostgreSQL without rewriting the table.
    with op.batch_alter_table("record_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("record_history", schema=None) as batch_op:
        batch_op.drop_column("detail")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
