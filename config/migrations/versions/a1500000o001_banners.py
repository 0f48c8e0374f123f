"""banners on the cabinet's overview (issue 15): a period, an audience

Revision ID: a1500000o001
Revises: a1500000t001
Create Date: 2026-12-06 03:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1500000o001'
down_revision = 'a1500000t001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('banners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('tariff_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("audience IN ('all', 'tariff', 'debtors')", name=op.f('ck_banners_audience')),
    sa.CheckConstraint("(audience = 'tariff') = (tariff_id IS NOT NULL)", name=op.f('ck_banners_tariff')),
    sa.ForeignKeyConstraint(['tariff_id'], ['tariffs.id'], name=op.f('fk_banners_tariff_id_tariffs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_banners'))
    )
    op.create_index('ix_banners_ends_at', 'banners', ['ends_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_banners_ends_at', table_name='banners')
    op.drop_table('banners')
