"""online acquiring (issue 16): payment history, refunds, autopayment

provider_payments gains the idempotence key of its create call, the
provider's confirmation URL, its origin (cabinet / autopay), the 54-FZ
receipt data sent, the payment method the provider saved, whether it was
credited late, and the status "expired". provider_payment_events keeps
every change of state; provider_refunds each refund with its own key;
autopay_settings and autopay_attempts (one charge a day per account).

Revision ID: a1600000b001
Revises: a1600000a001
Create Date: 2026-12-06 17:44:23
"""
from alembic import op
import sqlalchemy as sa
import config.db


revision = 'a1600000b001'
down_revision = 'a1600000a001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # First, before any table refers to it (SQLite's batch mode rebuilds it).
    with op.batch_alter_table('provider_payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotence_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('confirmation_url', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('receipt', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('method_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('method_title', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('late', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_provider_payments_idempotence_key'), ['idempotence_key'])
        batch_op.drop_constraint(op.f('ck_provider_payments_status'), type_='check')
        batch_op.create_check_constraint(
            'status', "status IN ('pending', 'paid', 'declined', 'expired')")

    op.create_table('autopay_settings',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
    sa.Column('days_below', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_autopay_settings_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_autopay_settings'))
    )
    op.create_table('autopay_attempts',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_autopay_attempts_account_id_accounts')),
    sa.ForeignKeyConstraint(['payment_id'], ['provider_payments.id'], name=op.f('fk_autopay_attempts_payment_id_provider_payments')),
    sa.PrimaryKeyConstraint('account_id', 'day', name=op.f('pk_autopay_attempts'))
    )
    op.create_table('provider_payment_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=True),
    sa.CheckConstraint("source IN ('cabinet', 'webhook', 'poll', 'cli', 'scheduler', 'agent')", name=op.f('ck_provider_payment_events_source')),
    sa.ForeignKeyConstraint(['payment_id'], ['provider_payments.id'], name=op.f('fk_provider_payment_events_payment_id_provider_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_payment_events'))
    )
    with op.batch_alter_table('provider_payment_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_payment_events_payment_id'), ['payment_id'], unique=False)

    op.create_table('provider_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('idempotence_key', sa.String(length=64), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=True),
    sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'canceled')", name=op.f('ck_provider_refunds_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_provider_refunds_amount')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_provider_refunds_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['payment_id'], ['provider_payments.id'], name=op.f('fk_provider_refunds_payment_id_provider_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_refunds')),
    sa.UniqueConstraint('idempotence_key', name=op.f('uq_provider_refunds_idempotence_key'))
    )
    with op.batch_alter_table('provider_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_refunds_payment_id'), ['payment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('provider_payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_provider_payments_idempotence_key'), type_='unique')
        batch_op.drop_constraint(op.f('ck_provider_payments_status'), type_='check')
        batch_op.create_check_constraint(
            'status', "status IN ('pending', 'paid', 'declined')")
        batch_op.drop_column('late')
        batch_op.drop_column('method_title')
        batch_op.drop_column('method_id')
        batch_op.drop_column('receipt')
        batch_op.drop_column('origin')
        batch_op.drop_column('confirmation_url')
        batch_op.drop_column('idempotence_key')

    with op.batch_alter_table('provider_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_refunds_payment_id'))

    op.drop_table('provider_refunds')
    with op.batch_alter_table('provider_payment_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_payment_events_payment_id'))

    op.drop_table('provider_payment_events')
    op.drop_table('autopay_attempts')
    op.drop_table('autopay_settings')
