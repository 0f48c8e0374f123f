"""voice_starts: answered calls a voice NAS has not sent the Stop of (issue 17)

Revision ID: a1700000s001
Revises: a1700000r001 (h17-rate's, merged into this branch; a1600000n001 before it)
Create Date: 2026-12-06 21:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1700000s001'
down_revision = 'a1700000r001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('voice_starts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('nas_id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('calling', sa.String(length=64), nullable=False),
    sa.Column('called', sa.String(length=64), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=True),
    sa.Column('setup_at', sa.DateTime(), nullable=True),
    sa.Column('answered_at', sa.DateTime(), nullable=False),
    sa.Column('sip_code', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voice_starts')),
    sa.UniqueConstraint('nas_id', 'call_id', name='uq_voice_starts_nas_call')
    )
    with op.batch_alter_table('voice_starts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voice_starts_answered_at'), ['answered_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('voice_starts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voice_starts_answered_at'))
    op.drop_table('voice_starts')
