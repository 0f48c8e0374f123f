"""Cabinet logins from the console (issue 14): add with roles, one-time
passwords, reset, link/unlink (family linking), remove; through the
`abonent` executable on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import select, text

from rating import accounts as acc
from rating.models import CabinetUser, CabinetUserAccount, OperationLog
from rating.passwords import verify_password
from tests.conftest import make_context


def js(result):
    return json.loads(result.stdout)


def test_cabinet_users_end_to_end(abonent_exe, db_url):
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_account(session, number="100", name="Ivan Petrov")
        acc.create_account(session, number="101", name="Petrov Junior")
        acc.create_account(session, number="200", name="OOO Romashka", kind="company")
        session.commit()
    run = abonent_exe

    def table_rows():
        with context.engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                    for t in ("cabinet_users", "cabinet_user_accounts", "operation_log")}

    # A one-time password is printed once; only its hash is kept, never logged.
    added = js(run("cabinet-user", "add", "ivan", "100", "--json"))
    one_time = added["one_time_password"]
    assert len(one_time) == 12
    run("cabinet-user", "add", "buh", "200", "--role", "accountant", "--password",
        "long-enough-1")
    run("cabinet-user", "add", "boss", "200", "--role", "owner", "--password", "long-enough-2")
    with context.Session() as session:
        ivan = session.scalar(select(CabinetUser).where(CabinetUser.login == "ivan"))
        assert verify_password(one_time, ivan.password_hash) and ivan.role == "owner"
        epoch = ivan.session_epoch
        logs = json.dumps([r.details for r in session.scalars(select(OperationLog))])
        assert one_time not in logs and "long-enough" not in logs

    before = table_rows()
    for args, message in [
            (["cabinet-user", "add", "x1", "999"], "does not exist"),
            (["cabinet-user", "add", "two words", "101"], "cabinet login must be"),
            (["cabinet-user", "add", "", "101"], "cabinet login must be"),
            (["cabinet-user", "add", "x1", "101", "--password", "short"], "at least 8"),
            (["cabinet-user", "add", "x1", "101", "--password", "bad\x07password"],
             "control characters"),
            (["cabinet-user", "add", "x1", "101", "--role", "viewer"], "roles are for company"),
            (["cabinet-user", "add", "x1", "100"], "already has a cabinet login"),
            (["cabinet-user", "add", "ivan", "101"], "is taken"),
            (["cabinet-user", "link", "ivan", "100"], "own account"),
            (["cabinet-user", "link", "nobody", "101"], "no cabinet login"),
            (["cabinet-user", "unlink", "ivan", "101"], "not linked"),
            (["cabinet-user", "reset-password", "nobody"], "no cabinet login"),
            (["cabinet-user", "remove", "nobody"], "no cabinet login")]:
        assert message in run(*args, code=2).stderr, args
    assert table_rows() == before

    # Family linking: ivan reaches 101 too; the list shows it.
    run("cabinet-user", "link", "ivan", "101")
    assert "already reaches" in run("cabinet-user", "link", "ivan", "101", code=2).stderr
    listed = {u["login"]: u for u in js(run("cabinet-user", "list", "--json"))}
    assert listed["ivan"]["linked_accounts"] == ["101"]
    assert listed["buh"]["role"] == "accountant" and listed["buh"]["account"] == "200"
    assert [u["login"] for u in js(run("cabinet-user", "list", "--account", "101",
                                       "--json"))] == ["ivan"]
    cut = run("cabinet-user", "list", "--limit", "2", "--json")
    assert len(js(cut)) == 2 and "more with --offset 2" in cut.stderr

    # Reset: a given password, or a new one-time one; every session ends.
    run("--actor", "alice", "cabinet-user", "reset-password", "ivan", "--password",
        "brand-new-pass")
    with context.Session() as session:
        ivan = session.scalar(select(CabinetUser).where(CabinetUser.login == "ivan"))
        assert verify_password("brand-new-pass", ivan.password_hash)
        assert not verify_password(one_time, ivan.password_hash)
        assert ivan.session_epoch == epoch + 1
        log = session.scalar(select(OperationLog).where(
            OperationLog.action == "cabinet_user.reset_password"))
        assert log.actor == "admin:alice" and "brand-new-pass" not in json.dumps(log.details)

    run("cabinet-user", "unlink", "ivan", "101")
    run("cabinet-user", "link", "ivan", "101")
    run("cabinet-user", "remove", "ivan")
    with context.Session() as session:
        assert session.scalar(select(CabinetUser).where(CabinetUser.login == "ivan")) is None
        assert session.scalars(select(CabinetUserAccount)).all() == []
    context.dispose()
