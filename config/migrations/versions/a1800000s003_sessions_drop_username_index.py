"""sessions: the username index goes (issue 18)

No query reads sessions by username: the cabinet, the CLI, the enforcer
and the archive find sessions by account, by (NAS, Acct-Session-Id), or
open per NAS. The index cost every new session a text B-tree insertion:
bench/radius_acct.py's upsert measured 8-15 % cheaper per new session on
PostgreSQL without it (one of five index insertions on the table, and the
widest key).

Revision ID: a1800000s003
Revises: a1900000t002
Create Date: 2026-12-07 14:45:00
"""
from alembic import op


revision = 'a1800000s003'
down_revision = 'a1900000t002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_sessions_username', table_name='sessions')


def downgrade() -> None:
    op.create_index('ix_sessions_username', 'sessions', ['username'], unique=False)
