"""cabinet API tokens

Revision ID: 6c3c0ffee003
Revises: 6b2c0ffee002
Create Date: 2026-11-23 13:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401


revision = '6c3c0ffee003'
down_revision = '6b2c0ffee002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
