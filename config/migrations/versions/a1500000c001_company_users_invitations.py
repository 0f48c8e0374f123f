"""company users (issue 15): a password link is a reset or an invitation

An invitation is a one-time link like a password reset; ``purpose`` keeps
the two apart, so a link made for one page is refused by the other.

Revision ID: a1500000c001
Revises: a1400000c002
Create Date: 2026-12-06 03:15:00
"""
from alembic import op
import sqlalchemy as sa

revision = 'a1500000c001'
down_revision = 'a1400000c002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=16), nullable=False,
                                      server_default="reset"))


def downgrade() -> None:
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_column("purpose")
