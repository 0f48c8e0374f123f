"""ledger entries carry what they are for as a code and its arguments
(memo_code, memo_args), so the cabinet words each line in the reader's
language; memo stays the operator's English text (issue 15)

Revision ID: a1500000i001
Revises: a1500000o001
Create Date: 2026-12-06 03:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1500000i001'
down_revision = 'a1500000o001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing on PostgreSQL, and
    # the old rows are worded from their kind and key.
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('memo_code', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('memo_args', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_column('memo_args')
        batch_op.drop_column('memo_code')
