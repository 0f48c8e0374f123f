"""cabinet payments (vouchers, provider payments)

Revision ID: 6b2c0ffee002
Revises: 6a1c0ffee001
Create Date: 2026-11-23 13:00:00
"""
from alembic import op
import sqlalchemy as sa
import config.db


revision = '6b2c0ffee002'
down_revision = '6a1c0ffee001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vouchers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('code_tail', sa.String(length=8), nullable=False),
    sa.Column('batch', sa.String(length=32), nullable=False),
    sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('redeemed_by', sa.Integer(), nullable=True),
    sa.Column('redeemed_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_vouchers_amount')),
    sa.ForeignKeyConstraint(['redeemed_by'], ['accounts.id'], name=op.f('fk_vouchers_redeemed_by_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vouchers')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_vouchers_code_hash'))
    )
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vouchers_batch'), ['batch'], unique=False)
        batch_op.create_index(batch_op.f('ix_vouchers_redeemed_by'), ['redeemed_by'], unique=False)

    op.create_table('provider_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('txn_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'paid', 'declined')", name=op.f('ck_provider_payments_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_provider_payments_amount')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_provider_payments_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_provider_payments_entry_id_ledger_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_payments')),
    sa.UniqueConstraint('provider', 'txn_id', name=op.f('uq_provider_payments_provider'))
    )
    with op.batch_alter_table('provider_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_payments_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('provider_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_payments_account_id'))

    op.drop_table('provider_payments')
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vouchers_redeemed_by'))
        batch_op.drop_index(batch_op.f('ix_vouchers_batch'))

    op.drop_table('vouchers')
