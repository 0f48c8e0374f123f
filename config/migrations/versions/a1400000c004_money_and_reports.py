"""money and reports (issue 14): the audit reader reads operation_log newest
first and by time range; an index on created_at serves both

Revision ID: a1400000c004
Revises: 8e10c0a11b2c
Create Date: 2026-12-05 23:59:00
"""
from alembic import op

revision = 'a1400000c004'
down_revision = '8e10c0a11b2c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_operation_log_created_at", "operation_log", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_operation_log_created_at", table_name="operation_log")
