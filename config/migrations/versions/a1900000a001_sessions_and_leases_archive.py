"""sessions and IP leases archive tables (issue 19)

Closed sessions and leases past their hot retention are moved here by the
archive job (aaa.archive), ids and columns unchanged, so the hot tables the
RADIUS writer, the enforcer and the collector work on stay small.

Revision ID: a1900000a001
Revises: a2100000l001
Create Date: 2026-12-07 00:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = 'a1900000a001'
down_revision = 'a2100000l001'
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('sessions_archive',
    sa.Column('id', _BigId, autoincrement=False, nullable=False),
    sa.Column('nas_id', sa.Integer(), nullable=False),
    sa.Column('acct_session_id', sa.String(length=128), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('framed_ip', sa.String(length=45), nullable=True),
    sa.Column('calling_station_id', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.Column('octets_in', sa.BigInteger(), nullable=False),
    sa.Column('octets_out', sa.BigInteger(), nullable=False),
    sa.Column('packets_in', sa.BigInteger(), nullable=False),
    sa.Column('packets_out', sa.BigInteger(), nullable=False),
    sa.Column('session_time', sa.BigInteger(), nullable=False),
    sa.Column('terminate_cause', sa.String(length=64), nullable=True),
    sa.Column('profile', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions_archive'))
    )
    with op.batch_alter_table('sessions_archive', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_archive_account', ['account_id', 'started_at'], unique=False)
        batch_op.create_index('ix_sessions_archive_acct_session', ['acct_session_id'], unique=False)
        batch_op.create_index('ix_sessions_archive_framed_ip', ['framed_ip', 'started_at'], unique=False)

    op.create_table('ip_leases_archive',
    sa.Column('id', _BigId, autoincrement=False, nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=45), nullable=False),
    sa.Column('valid_from', sa.DateTime(), nullable=False),
    sa.Column('valid_to', sa.DateTime(), nullable=True),
    sa.Column('session_id', _BigId, nullable=True),
    sa.Column('open_address', sa.String(length=45), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ip_leases_archive'))
    )
    with op.batch_alter_table('ip_leases_archive', schema=None) as batch_op:
        batch_op.create_index('ix_ip_leases_archive_address', ['address', 'valid_from'], unique=False)
        batch_op.create_index(batch_op.f('ix_ip_leases_archive_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_table('ip_leases_archive')
    op.drop_table('sessions_archive')
