"""cabinet API tokens

Revision ID: 6c3c0ffee003
Revises: 6b2c0ffee002
Create Date: 2026-11-23 13:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '6c3c0ffee003'
down_revision = '6b2c0ffee002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rating.api_tokens.ApiToken, written by hand; names follow config.db's
    # naming convention.
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint("scope IN ('owner', 'accountant', 'viewer')",
                           name=op.f('ck_api_tokens_scope')),
        sa.ForeignKeyConstraint(['user_id'], ['cabinet_users.id'], ondelete='CASCADE',
                                name=op.f('fk_api_tokens_user_id_cabinet_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )
    op.create_index(op.f('ix_api_tokens_user_id'), 'api_tokens', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_api_tokens_user_id'), table_name='api_tokens')
    op.drop_table('api_tokens')
