"""stored files

The metadata of the files uploaded to records' ``file`` and ``image`` fields
(``runtime/files.py``); their bytes live in the file store.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("object_name", sa.String(length=40), nullable=False),
        sa.Column("field_name", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime", sa.String(length=100), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_files")),
    )
    op.create_index(
        "ix_stored_files_record",
        "stored_files",
        ["object_name", "record_id", "field_name"],
        unique=False,
    )
    op.create_index(
        op.f("ix_stored_files_storage_key"), "stored_files", ["storage_key"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_stored_files_storage_key"), table_name="stored_files")
    op.drop_index("ix_stored_files_record", table_name="stored_files")
    op.drop_table("stored_files")
