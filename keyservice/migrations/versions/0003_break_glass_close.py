"""break glass: a case can be closed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("break_glass_requests") as batch:
        batch.add_column(sa.Column("closed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("break_glass_requests") as batch:
        batch.drop_column("closed_at")
        batch.drop_column("closed_by")
