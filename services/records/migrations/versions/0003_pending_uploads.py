"""pending uploads (Binary content handed out, Binary not committed yet)

Revision ID: pending01
Revises: erasure01
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "pending01"
down_revision = "erasure01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_uploads",
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("blob_id", name=op.f("pk_pending_uploads")),
    )
    op.create_index(op.f("ix_pending_uploads_created_at"), "pending_uploads", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pending_uploads_created_at"), table_name="pending_uploads")
    op.drop_table("pending_uploads")
