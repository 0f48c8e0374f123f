"""enforcement as a reconciler: jobs per NAS lane with a target profile;
a NAS's vendor override; turbo is an option, not a profile

Revision ID: 8e10c0a11b2c
Revises: 7d4a11f0ff50
Create Date: 2026-12-05 12:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '8e10c0a11b2c'
down_revision = '7d4a11f0ff50'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enforcement_jobs") as batch:
        batch.add_column(sa.Column("nas_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("target", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key("fk_enforcement_jobs_nas_id_nas", "nas", ["nas_id"], ["id"])
    op.create_index("ix_enforcement_jobs_nas_id", "enforcement_jobs", ["nas_id"])
    with op.batch_alter_table("nas") as batch:
        batch.add_column(sa.Column("vendor_override", sa.JSON(), nullable=True))
    # Jobs of the old outbox that never reached a final state are left to
    # the reconciler, which compares every open session anew.
    op.execute("UPDATE enforcement_jobs SET status = 'superseded' "
               "WHERE status IN ('pending', 'sending')")
    # A turbo is an option that stacks on the balance ladder's verdict
    # (rating.profile); the ladder's verdict of such an account was normal.
    op.execute("UPDATE accounts SET profile = 'normal', version = version + 1 "
               "WHERE profile = 'turbo'")


def downgrade() -> None:
    with op.batch_alter_table("nas") as batch:
        batch.drop_column("vendor_override")
    op.drop_index("ix_enforcement_jobs_nas_id", table_name="enforcement_jobs")
    with op.batch_alter_table("enforcement_jobs") as batch:
        batch.drop_constraint("fk_enforcement_jobs_nas_id_nas", type_="foreignkey")
        batch.drop_column("tries")
        batch.drop_column("target")
        batch.drop_column("nas_id")
