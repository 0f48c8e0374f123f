"""the catalogue as data: an option's monthly limit; the balance ladder
stored in the database (policy_rungs)

Revision ID: a1400000c001
Revises: a1400000c003
Create Date: 2026-12-06 00:00:00
"""
import sqlalchemy as sa
from alembic import op

import config.db

revision = 'a1400000c001'
down_revision = 'a1400000c003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("option_types") as batch:
        batch.add_column(sa.Column("max_per_month", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "policy_rungs",
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("offset", config.db.Money(precision=14, scale=2), nullable=False),
        sa.Column("past_credit", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("rate_kbps", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.CheckConstraint("mode IN ('throttle', 'redirect', 'block')",
                           name=op.f("ck_policy_rungs_mode")),
        sa.CheckConstraint("rate_kbps >= 0", name=op.f("ck_policy_rungs_rate_kbps")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_policy_rungs")),
        sa.UniqueConstraint("profile", name=op.f("uq_policy_rungs_profile")),
    )


def downgrade() -> None:
    op.drop_table("policy_rungs")
    with op.batch_alter_table("option_types") as batch:
        batch.drop_column("max_per_month")
