"""spending limits: per account or branch, a month's state, actions on accounts (issue 21)

A monthly limit on money charged or traffic used, on one account or on an
org unit (a branch); one state row per (limit, month) records that its
warning and its action fired; the accounts carry until when a reached
limit throttles them or refuses extras.

Revision ID: a2100000l001
Revises: a2100000o001
Create Date: 2026-12-06 21:30:00
"""
from alembic import op
import sqlalchemy as sa
import config.db


revision = 'a2100000l001'
down_revision = 'a2100000b001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('spending_limits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('org_unit_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=8), nullable=False),
    sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=True),
    sa.Column('traffic_bytes', sa.BigInteger(), nullable=True),
    sa.Column('warn_percent', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('author', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("metric IN ('money', 'traffic')", name=op.f('ck_spending_limits_metric')),
    sa.CheckConstraint("action IN ('notify', 'throttle', 'block_extras')", name=op.f('ck_spending_limits_action')),
    sa.CheckConstraint('(account_id IS NULL) <> (org_unit_id IS NULL)', name=op.f('ck_spending_limits_one_scope')),
    sa.CheckConstraint('warn_percent > 0 AND warn_percent < 100', name=op.f('ck_spending_limits_warn_percent')),
    sa.CheckConstraint("(metric = 'money' AND amount > 0 AND traffic_bytes IS NULL) OR (metric = 'traffic' AND traffic_bytes > 0 AND amount IS NULL)", name=op.f('ck_spending_limits_figure')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_spending_limits_account_id_accounts')),
    sa.ForeignKeyConstraint(['org_unit_id'], ['org_units.id'], name=op.f('fk_spending_limits_org_unit_id_org_units'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spending_limits')),
    sa.UniqueConstraint('account_id', 'metric', name='uq_spending_limits_account_metric'),
    sa.UniqueConstraint('org_unit_id', 'metric', name='uq_spending_limits_unit_metric')
    )
    with op.batch_alter_table('spending_limits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spending_limits_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spending_limits_org_unit_id'), ['org_unit_id'], unique=False)

    op.create_table('spending_limit_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('limit_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('used_money', config.db.Money(precision=14, scale=2), nullable=True),
    sa.Column('used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('evaluated_at', sa.DateTime(), nullable=False),
    sa.Column('warned_revision', sa.Integer(), nullable=True),
    sa.Column('warned_at', sa.DateTime(), nullable=True),
    sa.Column('acted_revision', sa.Integer(), nullable=True),
    sa.Column('acted_at', sa.DateTime(), nullable=True),
    sa.Column('lifted_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['limit_id'], ['spending_limits.id'], name=op.f('fk_spending_limit_states_limit_id_spending_limits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spending_limit_states')),
    sa.UniqueConstraint('limit_id', 'month', name='uq_spending_limit_states_limit_month')
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('limit_throttled_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('extras_blocked_until', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('extras_blocked_until')
        batch_op.drop_column('limit_throttled_until')
    op.drop_table('spending_limit_states')
    with op.batch_alter_table('spending_limits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spending_limits_org_unit_id'))
        batch_op.drop_index(batch_op.f('ix_spending_limits_account_id'))
    op.drop_table('spending_limits')
