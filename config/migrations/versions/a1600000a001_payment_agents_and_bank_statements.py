"""payment agents (OSMP) and bank statement lines (issue 16)

payment_agents: an agent's credentials (a scrypt hash), allowed networks,
limits. agent_payments: one row per accepted OSMP pay, unique on (agent,
txn_id) so a repeat credits once; its id is the prv_txn we answer.
bank_statement_lines: incoming payment orders from 1C client-bank
statements, unique on the order's key, matched or waiting for an operator.

Revision ID: a1600000a001
Revises: a2000000c002
Create Date: 2026-12-06 17:45:00
"""
import sqlalchemy as sa
from alembic import op

import config.db

revision = 'a1600000a001'
down_revision = 'a2000000c002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'payment_agents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=26), nullable=False),
        sa.Column('password_hash', sa.String(length=200), nullable=False),
        sa.Column('networks', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('min_amount', config.db.Money(precision=14, scale=2), nullable=False),
        sa.Column('max_amount', config.db.Money(precision=14, scale=2), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint('min_amount > 0 AND max_amount >= min_amount',
                           name=op.f('ck_payment_agents_amounts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_agents')),
        sa.UniqueConstraint('name', name=op.f('uq_payment_agents_name')),
    )
    op.create_table(
        'agent_payments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column('txn_id', sa.String(length=20), nullable=False),
        sa.Column('txn_date', sa.DateTime(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('provider_payment_id', sa.Integer(), nullable=True),
        sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_agent_payments_amount')),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_agent_payments_account_id_accounts')),
        sa.ForeignKeyConstraint(['agent_id'], ['payment_agents.id'],
                                name=op.f('fk_agent_payments_agent_id_payment_agents')),
        sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'],
                                name=op.f('fk_agent_payments_entry_id_ledger_entries')),
        sa.ForeignKeyConstraint(['provider_payment_id'], ['provider_payments.id'],
                                name=op.f('fk_agent_payments_provider_payment_id_provider_payments')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_payments')),
        sa.UniqueConstraint('agent_id', 'txn_id', name=op.f('uq_agent_payments_agent_id')),
    )
    op.create_index(op.f('ix_agent_payments_account_id'), 'agent_payments', ['account_id'],
                    unique=False)
    op.create_index(op.f('ix_agent_payments_txn_date'), 'agent_payments', ['txn_date'],
                    unique=False)
    op.create_table(
        'bank_statement_lines',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('line_key', sa.String(length=64), nullable=False),
        sa.Column('doc_number', sa.String(length=32), nullable=False),
        sa.Column('doc_date', sa.Date(), nullable=False),
        sa.Column('received_on', sa.Date(), nullable=True),
        sa.Column('amount', config.db.Money(precision=14, scale=2), nullable=False),
        sa.Column('payer_inn', sa.String(length=12), nullable=True),
        sa.Column('payer_name', sa.String(length=500), nullable=True),
        sa.Column('payer_account', sa.String(length=32), nullable=True),
        sa.Column('purpose', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=True),
        sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  nullable=True),
        sa.Column('imported_at', sa.DateTime(), nullable=False),
        sa.Column('imported_by', sa.String(length=80), nullable=False),
        sa.Column('assigned_at', sa.DateTime(), nullable=True),
        sa.Column('assigned_by', sa.String(length=80), nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_bank_statement_lines_amount')),
        sa.CheckConstraint("status IN ('matched', 'unmatched', 'assigned')",
                           name=op.f('ck_bank_statement_lines_status')),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_bank_statement_lines_account_id_accounts')),
        sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'],
                                name=op.f('fk_bank_statement_lines_entry_id_ledger_entries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_statement_lines')),
        sa.UniqueConstraint('line_key', name=op.f('uq_bank_statement_lines_line_key')),
    )
    op.create_index(op.f('ix_bank_statement_lines_account_id'), 'bank_statement_lines',
                    ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_bank_statement_lines_account_id'), table_name='bank_statement_lines')
    op.drop_table('bank_statement_lines')
    op.drop_index(op.f('ix_agent_payments_txn_date'), table_name='agent_payments')
    op.drop_index(op.f('ix_agent_payments_account_id'), table_name='agent_payments')
    op.drop_table('agent_payments')
    op.drop_table('payment_agents')
