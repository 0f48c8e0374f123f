"""ledger keys in C collation

Revision ID: 32ad95101a54
Revises: f1a2b3c4d5e6
Create Date: 2026-11-23 12:01:45.573319
"""
from alembic import op


revision = '32ad95101a54'
down_revision = 'f1a2b3c4d5e6'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # PostgreSQL only (SQLite compares bytes already); rebuilds the unique index.
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE ledger_entries ALTER COLUMN idempotency_key '
                   'TYPE varchar(200) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE ledger_entries ALTER COLUMN idempotency_key '
                   'TYPE varchar(200) COLLATE "default"')
