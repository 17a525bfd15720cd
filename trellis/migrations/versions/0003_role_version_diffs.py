"""role version diffs

Role versions gain what object versions have: a diff from the version before, a one-line
summary, and which version a restore brought back. Versions written before keep a null
diff and an empty summary.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:51:36.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable or defaulted columns: SQLite adds them with ALTER TABLE, no table rebuild.
    with op.batch_alter_table("role_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("diff", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("restored_from", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("role_versions", schema=None) as batch_op:
        batch_op.drop_column("restored_from")
        batch_op.drop_column("summary")
        batch_op.drop_column("diff")
