"""cabinet payments (vouchers, provider payments)

Revision ID: 6b2c0ffee002
Revises: 6a1c0ffee001
Create Date: 2026-11-23 13:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401


revision = '6b2c0ffee002'
down_revision = '6a1c0ffee001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
