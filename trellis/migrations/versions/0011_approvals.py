"""approvals

Approval requests (one pending per record, a partial unique index), their tasks (one per
approver and step; the inbox reads them by approver and status, the deadline runner by
status and due time), their history, and users' out-of-office delegations.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:02:50.385415
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("object_name", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_name", sa.String(length=40), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("transition", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=True),
        sa.Column("step_name", sa.String(length=40), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column(
            "submitter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["submitter_id"],
            ["users.id"],
            name=op.f("fk_approval_requests_submitter_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_requests_record", ["object_name", "record_id", "id"], unique=False
        )
        batch_op.create_index(
            "uq_approval_requests_pending",
            ["object_name", "record_id"],
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )

    op.create_table(
        "out_of_office",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "delegate_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delegate_id"],
            ["users.id"],
            name=op.f("fk_out_of_office_delegate_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_out_of_office_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_out_of_office")),
    )
    op.create_table(
        "approval_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(length=40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("lane", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column(
            "approver_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "on_behalf_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_done", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("escalations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("reject_to", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["approver_id"],
            ["users.id"],
            name=op.f("fk_approval_tasks_approver_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["on_behalf_of_id"],
            ["users.id"],
            name=op.f("fk_approval_tasks_on_behalf_of_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["approval_requests.id"],
            name=op.f("fk_approval_tasks_request_id_approval_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_tasks")),
    )
    with op.batch_alter_table("approval_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_approval_tasks_due", ["status", "due_at"], unique=False)
        batch_op.create_index(
            "ix_approval_tasks_inbox", ["approver_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_approval_tasks_request", ["request_id", "step_index", "round"], unique=False
        )

    op.create_table(
        "approval_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("step_name", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "on_behalf_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_approval_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["on_behalf_of_id"],
            ["users.id"],
            name=op.f("fk_approval_events_on_behalf_of_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["approval_requests.id"],
            name=op.f("fk_approval_events_request_id_approval_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["approval_tasks.id"],
            name=op.f("fk_approval_events_task_id_approval_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_events")),
    )
    with op.batch_alter_table("approval_events", schema=None) as batch_op:
        batch_op.create_index("ix_approval_events_request", ["request_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approval_events", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_events_request")

    op.drop_table("approval_events")
    with op.batch_alter_table("approval_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_tasks_request")
        batch_op.drop_index("ix_approval_tasks_inbox")
        batch_op.drop_index("ix_approval_tasks_due")

    op.drop_table("approval_tasks")
    op.drop_table("out_of_office")
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_approval_requests_pending",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index("ix_approval_requests_record")

    op.drop_table("approval_requests")
