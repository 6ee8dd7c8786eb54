"""break-glass: where each request's written document is stored, and its sealed key

Revision ID: breakglass_0001
Revises:
Create Date: 2026-12-01

The break-glass domain keeps its own branch (label ``break_glass``), beside the
identity and audit ones; ``migrate`` upgrades every head.
"""

import sqlalchemy as sa
from alembic import op

revision = "breakglass_0001"
down_revision = None
branch_labels = ("break_glass",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "break_glass_documents",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("sealed_file_key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_break_glass_documents")),
    )


def downgrade() -> None:
    op.drop_table("break_glass_documents")
