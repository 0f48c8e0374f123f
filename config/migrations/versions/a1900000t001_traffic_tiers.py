"""traffic tiers: 5-minute rollups partitioned by day, hourly and daily tiers (issue 19)

traffic_rollups loses its surrogate ``id``: the key (account, interval,
class, direction, source) becomes the primary key, which every writer's
ON CONFLICT already names. On PostgreSQL the table becomes declaratively
partitioned by range of ``interval_start`` (a partitioned table's primary
key must contain the partition column; the id could not be the key any
more). The rows are copied: days of the last 62 get their own partition,
older rows go to the default partition, where the first tiering run
(collector.tiers) moves them down to the hourly tier. SQLite keeps one
plain table, rebuilt without the id.

traffic_rollups_hourly (monthly partitions) and traffic_rollups_daily
(yearly) hold the coarser tiers; traffic_tiers says where each tier stops
being complete. Partitions ahead of time are created by the tiering job.

Downgrade keeps the 5-minute rows only (the coarser tiers have no place in
the old schema).

Revision ID: a1900000t001
Revises: a1900000a001
Create Date: 2026-12-07 00:40:00
"""
import datetime as dt

from alembic import op
import sqlalchemy as sa


revision = 'a1900000t001'
down_revision = 'a1900000a001'
branch_labels = None
depends_on = None

_KEY = ['account_id', 'interval_start', 'traffic_class', 'direction', 'source']
_COLUMNS = "account_id, interval_start, traffic_class, direction, bytes, packets, source"
# Issue 20: the 5-minute partitions that take the collector's upserts keep
# half of each page free, so the updates stay HOT.
_FILLFACTOR = 50


def _tier_columns():
    return [sa.Column('account_id', sa.Integer(), nullable=False),
            sa.Column('interval_start', sa.DateTime(), nullable=False),
            sa.Column('traffic_class', sa.String(length=32), nullable=False),
            sa.Column('direction', sa.String(length=3), nullable=False),
            sa.Column('bytes', sa.BigInteger(), nullable=False),
            sa.Column('packets', sa.BigInteger(), nullable=False),
            sa.Column('source', sa.String(length=16), nullable=False)]


def _create_tier(name: str, postgres: bool, foreign_key: bool = False) -> None:
    # Only the 5-minute tier checks the account: the coarser tiers are sums
    # of its rows (collector.models).
    keys = ([sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                     name=op.f(f'fk_{name}_account_id_accounts'))]
            if foreign_key else [])
    op.create_table(
        name, *_tier_columns(), *keys,
        sa.PrimaryKeyConstraint(*_KEY, name=op.f(f'pk_{name}')),
        **({"postgresql_partition_by": "RANGE (interval_start)"} if postgres else {}))
    if postgres:
        op.execute(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table('traffic_tiers',
                    sa.Column('tier', sa.String(length=8), nullable=False),
                    sa.Column('complete_from', sa.DateTime(), nullable=True),
                    sa.Column('updated_at', sa.DateTime(), nullable=True),
                    sa.PrimaryKeyConstraint('tier', name=op.f('pk_traffic_tiers')))
    op.execute("INSERT INTO traffic_tiers (tier) VALUES ('5min'), ('hourly'), ('daily')")
    _create_tier('traffic_rollups_hourly', postgres)
    _create_tier('traffic_rollups_daily', postgres)

    if postgres:
        for old, new in (("pk_traffic_rollups", "pk_traffic_rollups_old"),
                         ("uq_traffic_rollups_key", "uq_traffic_rollups_key_old"),
                         ("ix_traffic_rollups_interval", "ix_traffic_rollups_interval_old")):
            op.execute(f"ALTER INDEX {old} RENAME TO {new}")
        op.execute("ALTER TABLE traffic_rollups RENAME CONSTRAINT "
                   "fk_traffic_rollups_account_id_accounts TO fk_traffic_rollups_old_account")
        op.execute("ALTER TABLE traffic_rollups RENAME TO traffic_rollups_old")
    else:
        op.rename_table('traffic_rollups', 'traffic_rollups_old')
        op.drop_index('ix_traffic_rollups_interval', table_name='traffic_rollups_old')
    _create_tier('traffic_rollups', postgres, foreign_key=True)
    op.create_index('ix_traffic_rollups_interval', 'traffic_rollups', ['interval_start'])
    if postgres:
        today = dt.datetime.now(dt.timezone.utc).date()
        first = today - dt.timedelta(days=62)
        days = {row[0] for row in op.get_bind().execute(sa.text(
            "SELECT DISTINCT CAST(interval_start AS date) FROM traffic_rollups_old "
            "WHERE interval_start >= :first"), {"first": first})}
        days |= {today + dt.timedelta(days=n) for n in range(-1, 8)}
        for day in sorted(days):
            fill = f" WITH (fillfactor = {_FILLFACTOR})" if day >= today - dt.timedelta(days=1) else ""
            op.execute(f"CREATE TABLE traffic_rollups_p{day:%Y%m%d} PARTITION OF traffic_rollups "
                       f"FOR VALUES FROM ('{day}') TO ('{day + dt.timedelta(days=1)}'){fill}")
    op.execute(f"INSERT INTO traffic_rollups ({_COLUMNS}) SELECT {_COLUMNS} FROM traffic_rollups_old")
    op.drop_table('traffic_rollups_old')


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.rename_table('traffic_rollups', 'traffic_rollups_new')
    if postgres:
        op.execute("ALTER INDEX pk_traffic_rollups RENAME TO pk_traffic_rollups_new")
        op.execute("ALTER INDEX ix_traffic_rollups_interval RENAME TO ix_traffic_rollups_interval_new")
    else:
        op.drop_index('ix_traffic_rollups_interval', table_name='traffic_rollups_new')
    op.create_table(
        'traffic_rollups',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        *_tier_columns(),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_traffic_rollups_account_id_accounts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_traffic_rollups')),
        sa.UniqueConstraint(*_KEY, name='uq_traffic_rollups_key'))
    op.create_index('ix_traffic_rollups_interval', 'traffic_rollups', ['interval_start'])
    if postgres:
        op.execute("ALTER TABLE traffic_rollups SET (fillfactor = 50)")
    op.execute(f"INSERT INTO traffic_rollups ({_COLUMNS}) SELECT {_COLUMNS} FROM traffic_rollups_new")
    op.drop_table('traffic_rollups_new')
    op.drop_table('traffic_rollups_daily')
    op.drop_table('traffic_rollups_hourly')
    op.drop_table('traffic_tiers')
