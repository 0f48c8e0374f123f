"""sessions and ip_leases without foreign keys (issue 18)

Every new session paid five foreign-key checks in PostgreSQL (NAS,
account, service; the lease's account and session): about half of what
writing a Start cost (measured: 118 -> 63 us per new session in the
batch upsert). Worse, PostgreSQL plans each check once per connection
and keeps the plan: a server that connected while ``sessions`` was small
kept a sequential scan for the lease's session check, 0.3 ms per new
session and growing with the table. FreeRADIUS's radacct has none either.

The values come from the server's own caches of the same database (NAS
table, subscriber directory) and from the session row just written;
accounts are never deleted, a NAS with sessions cannot be removed
(``abonent nas remove``), a removed service's sessions have service_id
cleared (aaa.admin.remove_service).

Revision ID: a1800000f001
Revises: a1500000i001
Create Date: 2026-12-06 06:20:00
"""
from alembic import op


revision = 'a1800000f001'
down_revision = 'a1500000i001'
branch_labels = None
depends_on = None

_DROPPED = (
    ("sessions", "fk_sessions_nas_id_nas", "nas", ["nas_id"]),
    ("sessions", "fk_sessions_account_id_accounts", "accounts", ["account_id"]),
    ("sessions", "fk_sessions_service_id_services", "services", ["service_id"]),
    ("ip_leases", "fk_ip_leases_account_id_accounts", "accounts", ["account_id"]),
    ("ip_leases", "fk_ip_leases_session_id_sessions", "sessions", ["session_id"]),
)


def upgrade() -> None:
    for table in ("sessions", "ip_leases"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for owner, name, _target, _columns in _DROPPED:
                if owner == table:
                    batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in ("sessions", "ip_leases"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for owner, name, target, columns in _DROPPED:
                if owner == table:
                    batch_op.create_foreign_key(name, target, columns, ["id"])
