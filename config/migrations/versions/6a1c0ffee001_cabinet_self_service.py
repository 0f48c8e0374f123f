"""cabinet account self-service (reset tokens, service requests)

Revision ID: 6a1c0ffee001
Revises: 32ad95101a54
Create Date: 2026-11-23 13:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401


revision = '6a1c0ffee001'
down_revision = '32ad95101a54'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
