"""Alembic environment. The engine comes from config.migrate (or settings)."""

import re

from alembic import context

from config.db import Base
# The model modules register their tables on Base.metadata. This script is
# run by Alembic, not imported by the package, so config/ still imports
# nothing of ours at import time.
import aaa.models  # noqa: F401,E402
import collector.models  # noqa: F401,E402
import collector.radius_usage  # noqa: F401,E402
import rating.models  # noqa: F401,E402
import rating.requests  # noqa: F401,E402
import rating.selfservice  # noqa: F401,E402
import rating.payments  # noqa: F401,E402
import rating.autopay  # noqa: F401,E402
import rating.vouchers  # noqa: F401,E402
import rating.api_tokens  # noqa: F401,E402
import rating.agents  # noqa: F401,E402
import rating.bank_statement  # noqa: F401,E402

target_metadata = Base.metadata

# The partitions of the traffic tiers (collector.tiers creates and drops
# them) are not models: `db check` compares the partitioned tables only.
_PARTITION = re.compile(r"^traffic_rollups(_detail|_hourly|_daily)?_(p\d+|default)$")


def _include_name(name, type_, parent_names) -> bool:
    return not (type_ == "table" and name and _PARTITION.match(name))


def _engine():
    engine = context.config.attributes.get("engine")
    if engine is None:
        from config.context import open_context
        engine = open_context().engine
    return engine


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename); with
            # foreign keys enforced, dropping a table other rows refer to
            # (accounts) fails once there is data. SQLite's own procedure for
            # such changes (sqlite.org/lang_altertable.html): foreign keys off
            # outside the transaction, checked before the commit, back on.
            # The PRAGMA goes to the driver's connection directly, because
            # SQLAlchemy would open the transaction first (BEGIN IMMEDIATE,
            # config.db) and inside one the PRAGMA does nothing.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                include_name=_include_name,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left rows whose foreign keys "
                                           f"point nowhere: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


run_migrations_online()
