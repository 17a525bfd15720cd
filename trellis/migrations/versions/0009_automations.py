"""automations

Automation documents (versioned like roles: a head row and immutable versions) and their
run history, whose ``run_key`` keeps a scheduled run to once across workers.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_automations")),
    )
    op.create_table(
        "automation_versions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("automation_name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["automation_name"],
            ["automations.name"],
            name=op.f("fk_automation_versions_automation_name_automations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_automation_versions_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_versions")),
        sa.UniqueConstraint(
            "automation_name", "version", name=op.f("uq_automation_versions_automation_name")
        ),
    )
    op.create_table(
        "automation_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("automation_name", sa.String(length=40), nullable=False),
        sa.Column("automation_version", sa.Integer(), nullable=False),
        sa.Column("object_name", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_key", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_runs")),
        sa.UniqueConstraint("run_key", name=op.f("uq_automation_runs_run_key")),
    )
    op.create_index(
        "ix_automation_runs_automation", "automation_runs", ["automation_name", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_automation_runs_automation", table_name="automation_runs")
    op.drop_table("automation_runs")
    op.drop_table("automation_versions")
    op.drop_table("automations")
