"""collector replay memory as one row per flush (collector_replay_sets)
instead of one row per export packet (collector_packets) (issue 20)

Revision ID: a2000000c001
Revises: a1800000f001
Create Date: 2026-12-06 06:40:00
"""
import datetime as dt
import uuid

from alembic import op
import sqlalchemy as sa


revision = 'a2000000c001'
down_revision = 'a1800000f001'
branch_labels = None
depends_on = None

_CHUNK = 100_000


def upgrade() -> None:
    replay_sets = op.create_table(
        'collector_replay_sets',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('batch_id', sa.String(length=32), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.Column('origin', sa.String(length=64), nullable=False),
        sa.Column('packets', sa.Integer(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('flows', sa.BigInteger(), nullable=False),
        sa.Column('digests', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_collector_replay_sets')),
        sa.UniqueConstraint('batch_id', name=op.f('uq_collector_replay_sets_batch_id')))
    with op.batch_alter_table('collector_replay_sets', schema=None) as batch_op:
        batch_op.create_index('ix_collector_replay_sets_seen_at', ['seen_at'], unique=False)
    # The packets remembered so far (a day at most) move over in sets, so a
    # replay right after the upgrade is still recognised.
    bind = op.get_bind()
    packets = sa.table('collector_packets', sa.column('digest', sa.LargeBinary),
                       sa.column('seen_at', sa.DateTime))
    rows = bind.execute(sa.select(packets.c.digest, packets.c.seen_at)
                        .order_by(packets.c.seen_at)).all()
    for start in range(0, len(rows), _CHUNK):
        part = rows[start:start + _CHUNK]
        bind.execute(replay_sets.insert().values(
            batch_id=uuid.uuid4().hex, seen_at=part[-1][1] or dt.datetime(1970, 1, 1),
            origin='migrated', packets=len(part), rows=0, flows=0,
            digests=b''.join(bytes(r[0]).ljust(16, b'\0')[:16] for r in part)))
    with op.batch_alter_table('collector_packets', schema=None) as batch_op:
        batch_op.drop_index('ix_collector_packets_seen_at')
    op.drop_table('collector_packets')


def downgrade() -> None:
    op.create_table('collector_packets',
                    sa.Column('digest', sa.LargeBinary(length=16), nullable=False),
                    sa.Column('seen_at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('digest', name=op.f('pk_collector_packets')))
    with op.batch_alter_table('collector_packets', schema=None) as batch_op:
        batch_op.create_index('ix_collector_packets_seen_at', ['seen_at'], unique=False)
    with op.batch_alter_table('collector_replay_sets', schema=None) as batch_op:
        batch_op.drop_index('ix_collector_replay_sets_seen_at')
    op.drop_table('collector_replay_sets')
