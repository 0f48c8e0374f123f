"""The operation log: every change a subscriber or an admin makes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from rating.models import OperationLog


def record(session: Session, *, account_id: int | None, actor: str, action: str,
           **details) -> OperationLog:
    """Add a log line in the caller's transaction. Never pass secrets in details."""
    line = OperationLog(account_id=account_id, actor=actor, action=action,
                        details={k: (str(v) if v is not None else None)
                                 for k, v in details.items()})
    session.add(line)
    return line
