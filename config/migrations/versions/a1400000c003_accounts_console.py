"""the operator's console, accounts part: an admin block (account state
"blocked"), search keys on accounts, NAS secret rotation with a grace
period, family linking of cabinet logins to several accounts

Revision ID: a1400000c003
Revises: a1400000c004
Create Date: 2026-12-05 23:55:00
"""
import re

import sqlalchemy as sa
from alembic import op

revision = 'a1400000c003'
down_revision = 'a1400000c004'
branch_labels = None
depends_on = None


def _name_key(value):
    if value is None:
        return None
    folded = " ".join(str(value).casefold().split()).replace("ё", "е")
    return folded[:200] or None


def _phone_key(value):
    if value is None:
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) < 5:
        return None
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    return digits[-15:]


_OLD_STATES = "state IN ('active', 'frozen', 'closed')"
_NEW_STATES = "state IN ('active', 'frozen', 'closed', 'blocked')"


def _replace_state_check(old: str, new: str) -> None:
    """accounts.state's CHECK from ``old`` to ``new``.

    PostgreSQL: drop and add. SQLite cannot alter a CHECK, and rebuilding
    ``accounts`` (batch mode's copy, drop, rename) trips the foreign keys
    of every table that refers to it, which cannot be switched off inside
    the migration's transaction. SQLite documents the way for a change that
    no stored row can violate (ALTER TABLE, "making other kinds of table
    schema changes"): edit the table's SQL in the schema and bump
    schema_version, in one transaction. Allowing one more state is such a
    change; the downgrade first moves the extra state's rows out of it."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_accounts_state"), "accounts", type_="check")
        op.create_check_constraint(op.f("ck_accounts_state"), "accounts", new)
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'accounts'").scalar()
    if old not in sql:
        raise RuntimeError(f"accounts has no CHECK ({old}) to replace")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND "
                         "name = 'accounts'", (sql.replace(old, new),))
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _replace_state_check(_OLD_STATES, _NEW_STATES)
    # Plain ADD COLUMN (no table rebuild on SQLite either).
    op.add_column("accounts", sa.Column("search_name", sa.String(length=200), nullable=True))
    op.add_column("accounts", sa.Column("phone_key", sa.String(length=16), nullable=True))
    op.create_index("ix_accounts_search_name", "accounts", ["search_name"])
    op.create_index("ix_accounts_phone_key", "accounts", ["phone_key"])
    # The keys of the accounts already there (a Python fold: SQL lower()
    # differs between SQLite and PostgreSQL).
    connection = op.get_bind()
    accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("name", sa.String),
                        sa.column("phone", sa.String), sa.column("search_name", sa.String),
                        sa.column("phone_key", sa.String))
    rows = connection.execute(sa.select(accounts.c.id, accounts.c.name, accounts.c.phone)).all()
    if rows:
        connection.execute(
            accounts.update().where(accounts.c.id == sa.bindparam("b_id"))
            .values(search_name=sa.bindparam("b_name"), phone_key=sa.bindparam("b_phone")),
            [{"b_id": r.id, "b_name": _name_key(r.name), "b_phone": _phone_key(r.phone)}
             for r in rows])
    op.add_column("nas", sa.Column("previous_secret", sa.String(length=128), nullable=True))
    op.add_column("nas", sa.Column("previous_secret_until", sa.DateTime(), nullable=True))
    op.create_table(
        "cabinet_user_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cabinet_user_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_cabinet_user_accounts_account_id_accounts")),
        sa.ForeignKeyConstraint(["cabinet_user_id"], ["cabinet_users.id"],
                                name=op.f("fk_cabinet_user_accounts_cabinet_user_id_cabinet_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cabinet_user_accounts")),
        sa.UniqueConstraint("cabinet_user_id", "account_id",
                            name="uq_cabinet_user_accounts_user_account"),
    )
    op.create_index("ix_cabinet_user_accounts_cabinet_user_id", "cabinet_user_accounts",
                    ["cabinet_user_id"])
    op.create_index("ix_cabinet_user_accounts_account_id", "cabinet_user_accounts",
                    ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_cabinet_user_accounts_account_id", table_name="cabinet_user_accounts")
    op.drop_index("ix_cabinet_user_accounts_cabinet_user_id", table_name="cabinet_user_accounts")
    op.drop_table("cabinet_user_accounts")
    op.drop_column("nas", "previous_secret_until")
    op.drop_column("nas", "previous_secret")
    op.drop_index("ix_accounts_phone_key", table_name="accounts")
    op.drop_index("ix_accounts_search_name", table_name="accounts")
    op.execute("UPDATE accounts SET state = 'closed' WHERE state = 'blocked'")
    op.drop_column("accounts", "phone_key")
    op.drop_column("accounts", "search_name")
    _replace_state_check(_NEW_STATES, _OLD_STATES)
