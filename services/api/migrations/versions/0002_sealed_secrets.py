"""sealed secrets: room for a sealed TOTP secret

Revision ID: 0002_sealed_secrets
Revises: 0001_identity
Create Date: 2026-11-26

TOTP secrets and signing keys are now sealed (carevault_api.secrets); a sealed
TOTP secret is longer than the 64 characters the column allowed. Values stored
in clear before are resealed by api when next used (signing keys: at start).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_sealed_secrets"
down_revision = "0001_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("totp_secret", existing_type=sa.String(length=64), type_=sa.String(length=255), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("totp_secret", existing_type=sa.String(length=255), type_=sa.String(length=64), existing_nullable=True)
