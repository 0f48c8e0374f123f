"""traffic_rollups: fillfactor 50 on PostgreSQL (issue 20)

Every collector flush adds to every row of the current 5-minute intervals
in one transaction; with room left on each page the new row versions stay
on their page (HOT updates: no index is touched) and page pruning reclaims
the old ones later. Measured with 400,000 rows a flush on a loaded 2-core
box: a flush that updates took 8.0 s at the default fillfactor, 6.7 s at 80
(a page whose every row is updated at once needs room for all of them) and
2.2–2.8 s at 50. The price is space: the pages of past intervals, written
once, stay half full (the tiering of old rollups, issue 19, rewrites them).

Revision ID: a2000000c002
Revises: a2000000c001
Create Date: 2026-12-06 06:30:00
"""
from alembic import op

revision = 'a2000000c002'
down_revision = 'a2000000c001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE traffic_rollups SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE traffic_rollups RESET (fillfactor)")
