"""traffic tiers: 5-minute rows kept for the day graph after their day is hourly (issue 19)

Days past the late-data window move to the hourly tier early (settings
``traffic_tiers.hourly_after_days``), so that every reader but the day
graph reads a month from hourly rows; their 5-minute rows move to
traffic_rollups_detail (on PostgreSQL as whole partitions, detached from
traffic_rollups and attached here) and are dropped after
``five_minute_days``. traffic_tiers gets the row of this tier; its
``complete_from`` stays NULL until the first day moves in.

Revision ID: a1900000t002
Revises: a1700000c001
Create Date: 2026-12-07 04:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1900000t002'
down_revision = 'a1700000c001'
branch_labels = None
depends_on = None

_KEY = ['account_id', 'interval_start', 'traffic_class', 'direction', 'source']


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        'traffic_rollups_detail',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('interval_start', sa.DateTime(), nullable=False),
        sa.Column('traffic_class', sa.String(length=32), nullable=False),
        sa.Column('direction', sa.String(length=3), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('packets', sa.BigInteger(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY, name=op.f('pk_traffic_rollups_detail')),
        **({"postgresql_partition_by": "RANGE (interval_start)"} if postgres else {}))
    if postgres:
        op.execute("CREATE TABLE traffic_rollups_detail_default "
                   "PARTITION OF traffic_rollups_detail DEFAULT")
    op.execute("INSERT INTO traffic_tiers (tier) VALUES ('detail')")


def downgrade() -> None:
    op.execute("DELETE FROM traffic_tiers WHERE tier = 'detail'")
    op.drop_table('traffic_rollups_detail')
