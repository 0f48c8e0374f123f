"""cabinet account self-service (reset tokens, service requests)

Revision ID: 6a1c0ffee001
Revises: 32ad95101a54
Create Date: 2026-11-23 13:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '6a1c0ffee001'
down_revision = '32ad95101a54'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'password_resets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['cabinet_users.id'],
                                name=op.f('fk_password_resets_user_id_cabinet_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_password_resets')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_password_resets_token_hash')),
    )
    op.create_index(op.f('ix_password_resets_user_id'), 'password_resets', ['user_id'],
                    unique=False)

    op.create_table(
        'service_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('topic', sa.String(length=32), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('answer', sa.Text(), nullable=True),
        sa.Column('author', sa.String(length=100), nullable=False),
        sa.Column('idempotency_key', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint("topic IN ('no_connection', 'slow_speed', 'billing', 'move', 'other')",
                           name=op.f('ck_service_requests_topic')),
        sa.CheckConstraint("status IN ('new', 'in_progress', 'done', 'rejected')",
                           name=op.f('ck_service_requests_status')),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_service_requests_account_id_accounts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_service_requests')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_service_requests_idempotency_key')),
    )
    op.create_index('ix_service_requests_account_created', 'service_requests',
                    ['account_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_service_requests_status'), 'service_requests', ['status'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_service_requests_status'), table_name='service_requests')
    op.drop_index('ix_service_requests_account_created', table_name='service_requests')
    op.drop_table('service_requests')
    op.drop_index(op.f('ix_password_resets_user_id'), table_name='password_resets')
    op.drop_table('password_resets')
