"""bulk changes and scheduled changes (issue 21, part B)

bulk_operations and bulk_items: one change previewed for many accounts
(cost or refusal each), applied chunk by chunk, followed and reverted;
scheduled_changes: a change ordered for a day, made once by the scheduler.

Revision ID: a2100000b001
Revises: a2100000o001
Create Date: 2026-12-06 20:59:05
"""
from alembic import op
import sqlalchemy as sa
import config.db


revision = 'a2100000b001'
down_revision = 'a2100000o001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bulk_operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('selection', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reverts_id', sa.Integer(), nullable=True),
    sa.Column('effective_on', sa.Date(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('applied_by', sa.String(length=100), nullable=True),
    sa.Column('applied_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.CheckConstraint("state IN ('previewed', 'applying', 'applied', 'partially', 'reverted')", name=op.f('ck_bulk_operations_state')),
    sa.ForeignKeyConstraint(['reverts_id'], ['bulk_operations.id'], name=op.f('fk_bulk_operations_reverts_id_bulk_operations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_operations'))
    )
    op.create_table('bulk_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bulk_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('change', sa.JSON(), nullable=True),
    sa.Column('cost', config.db.Money(precision=14, scale=2), nullable=True),
    sa.Column('reason_code', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('changed_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("state IN ('ready', 'refused', 'done', 'scheduled')", name=op.f('ck_bulk_items_state')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_bulk_items_account_id_accounts')),
    sa.ForeignKeyConstraint(['bulk_id'], ['bulk_operations.id'], name=op.f('fk_bulk_items_bulk_id_bulk_operations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_items'))
    )
    with op.batch_alter_table('bulk_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bulk_items_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_bulk_items_operation_state', ['bulk_id', 'state'], unique=False)
        batch_op.create_index('uq_bulk_items_operation_account', ['bulk_id', 'account_id'], unique=True)

    op.create_table('scheduled_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('effective_on', sa.Date(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason_code', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('bulk_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_by', sa.String(length=100), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'applied', 'cancelled', 'failed')", name=op.f('ck_scheduled_changes_state')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_scheduled_changes_account_id_accounts')),
    sa.ForeignKeyConstraint(['bulk_id'], ['bulk_operations.id'], name=op.f('fk_scheduled_changes_bulk_id_bulk_operations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_changes'))
    )
    with op.batch_alter_table('scheduled_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scheduled_changes_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_scheduled_changes_bulk_id'), ['bulk_id'], unique=False)
        batch_op.create_index('ix_scheduled_changes_due', ['state', 'effective_on'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('scheduled_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduled_changes_due')
        batch_op.drop_index(batch_op.f('ix_scheduled_changes_bulk_id'))
        batch_op.drop_index(batch_op.f('ix_scheduled_changes_account_id'))

    op.drop_table('scheduled_changes')
    with op.batch_alter_table('bulk_items', schema=None) as batch_op:
        batch_op.drop_index('uq_bulk_items_operation_account')
        batch_op.drop_index('ix_bulk_items_operation_state')
        batch_op.drop_index(batch_op.f('ix_bulk_items_account_id'))

    op.drop_table('bulk_items')
    op.drop_table('bulk_operations')
