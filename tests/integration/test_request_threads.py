"""A service request as a thread, on SQLite and PostgreSQL: the subscriber
writes in the cabinet (Flask test client), the operator answers with the
`abonent` executable (`request set --answer`, `request reply`, `request
show`), and both see the messages and status changes in the order they
happened, in English and Russian. Bad input changes nothing; the migration
moves answers given before threads into them."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import create_engine, func, insert, make_url, select, text

from config.migrate import upgrade
from rating import requests as service_requests
from rating.accounts import create_cabinet_user
from rating.models import Account, OperationLog
from tests.conftest import PG_URL, make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, logged_in, seed_subscriber)

Message = service_requests.ServiceRequestMessage


@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500")


def _new_request(client, text="The light on the ONT is red."):
    page = client.get("/requests").text
    form_id = re.search(r'name="request_id"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/requests", data={"topic": "no_connection", "text": text,
                                              "request_id": form_id,
                                              "csrf_token": csrf_token(page)})
    assert response.status_code == 302


def _message_form(page, request_id):
    form = re.search(rf'action="/requests/{request_id}/messages".*?</form>', page, re.S)
    assert form, "no message form for this request"
    form = form.group(0)
    return {"csrf_token": csrf_token(form),
            "message_id": re.search(r'name="message_id" value="([^"]+)"', form).group(1)}


def _thread(page, request_id):
    """[(kind, status change or None, text or None)] as the page shows them."""
    item = re.search(rf'data-test="request-{request_id}">(.*?)</li>', page, re.S).group(1)
    entries = []
    for kind, body in re.findall(r'data-kind="(\w+)">(.*?)</div>', item, re.S):
        status = re.search(r'data-test="status-change">([^<]+)<', body)
        said = re.search(r'<p class="(?:text|answer)"[^>]*>([^<]*)<', body)
        entries.append((kind, status and status.group(1), said and said.group(1)))
    return entries


def _counts(ctx):
    with ctx.Session() as session:
        return (session.scalar(select(func.count()).select_from(Message)),
                session.scalars(select(service_requests.ServiceRequest.status)).all(),
                session.scalar(select(func.count()).select_from(OperationLog)))


def test_the_thread_reads_in_order_in_the_cabinet_and_the_cli(logged_in, cabinet_ctx,
                                                              subscriber, abonent_exe):
    _new_request(logged_in)
    (row,) = json.loads(abonent_exe("request", "list", "--json").stdout)
    request_id = row["id"]

    answered = abonent_exe("request", "set", request_id, "in_progress", "--answer",
                           "We are checking the line.")
    assert f"request {request_id} of account {subscriber.number} is in_progress" in \
        answered.stdout
    page = logged_in.get("/requests").text
    data = {**_message_form(page, request_id), "text": "  Still red at 18:00.  "}
    assert logged_in.post(f"/requests/{request_id}/messages", data=data).status_code == 302
    # The same form again (a double tap): still one message.
    assert logged_in.post(f"/requests/{request_id}/messages", data=data).status_code == 302
    reply = json.loads(abonent_exe("request", "reply", request_id,
                                   "A technician comes tomorrow at 10:00.", "--json").stdout)
    assert reply["by"] == "operator" and reply["status"] is None
    assert reply["author"] == "admin:test" and reply["request"] == request_id
    abonent_exe("request", "set", request_id, "done")
    # The same status again without an answer adds nothing.
    abonent_exe("request", "set", request_id, "done")

    shown = json.loads(abonent_exe("request", "show", request_id, "--json").stdout)
    assert shown["status"] == "done" and shown["text"] == "The light on the ONT is red."
    assert [(m["by"], m["status"], m["text"]) for m in shown["messages"]] == [
        ("operator", "in_progress", "We are checking the line."),
        ("subscriber", None, "Still red at 18:00."),
        ("operator", None, "A technician comes tomorrow at 10:00."),
        ("operator", "done", None),
    ]
    assert shown["answer"] == "A technician comes tomorrow at 10:00."  # the latest
    assert [m["id"] for m in shown["messages"]] == sorted(m["id"] for m in shown["messages"])
    table = abonent_exe("request", "show", request_id).stdout
    assert table.index("We are checking the line.") < table.index("Still red at 18:00.") \
        < table.index("A technician comes tomorrow") < table.index("operator, status done")

    page = logged_in.get("/requests").text
    assert _thread(page, request_id) == [
        ("subscriber", None, "The light on the ONT is red."),
        ("operator", "Status changed to: in progress", "We are checking the line."),
        ("subscriber", None, "Still red at 18:00."),
        ("operator", None, "A technician comes tomorrow at 10:00."),
        ("operator", "Status changed to: done", None),
    ]
    # A closed request takes no more messages: no form, and a POST is refused.
    assert f'action="/requests/{request_id}/messages"' not in page
    before = _counts(cabinet_ctx)
    response = logged_in.post(f"/requests/{request_id}/messages",
                              data={"csrf_token": csrf_token(page), "text": "Hello?",
                                    "message_id": uuid.uuid4().hex})
    assert response.status_code == 400
    assert "This request is closed; please add a new one" in response.text
    assert _counts(cabinet_ctx) == before
    assert "Message in a service request" in logged_in.get("/history").text
    (api,) = logged_in.get(f"/api/v1/accounts/{subscriber.account_id}/requests").json
    assert [(m["by"], m["status"], m["text"]) for m in api["messages"]] == [
        (m["by"], m["status"], m["text"]) for m in shown["messages"]]
    assert "admin:test" not in json.dumps(api)

    logged_in.post("/lang", data={"lang": "ru", "next": "/requests",
                                  "csrf_token": csrf_token(page)})
    page = logged_in.get("/requests").text
    assert [entry[1] for entry in _thread(page, request_id)] == [
        None, "Статус изменён: в работе", None, None, "Статус изменён: выполнена"]
    assert "Оператор" in page and "Вы ·" in page


@pytest.mark.parametrize("data, message", [
    ({"text": "   "}, "A message must be 1 to 2000 characters long"),
    ({"text": "x" * 2001}, "A message must be 1 to 2000 characters long"),
    ({"text": "x" * 5000}, "A message must be 1 to 2000 characters long"),
    ({"text": "hello", "message_id": ""}, "The form has expired"),
])
def test_bad_messages_change_nothing(logged_in, cabinet_ctx, data, message):
    _new_request(logged_in)
    page = logged_in.get("/requests").text
    (request_id,) = map(int, re.findall(r'data-test="request-(\d+)"', page))
    before = _counts(cabinet_ctx)
    response = logged_in.post(f"/requests/{request_id}/messages",
                              data={**_message_form(page, request_id), **data})
    assert response.status_code == 400 and message in response.text
    assert _counts(cabinet_ctx) == before


def test_messages_go_only_to_own_requests_and_only_from_editors(client, cabinet_ctx,
                                                                subscriber):
    other = seed_subscriber(cabinet_ctx)
    with cabinet_ctx.Session() as session:
        foreign, _ = service_requests.create(session, other.account_id, topic="other",
                                             text="not yours", request_id="form-000009",
                                             actor="cabinet:other")
        own, _ = service_requests.create(session, subscriber.account_id, topic="other",
                                         text="mine", request_id="form-000010",
                                         actor="cabinet:me")
        account = session.get(Account, subscriber.account_id)
        create_cabinet_user(session, account, login="viewer9", password="viewer-pass-1",
                            role="viewer")
        session.commit()
        foreign_id, own_id = foreign.id, own.id
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    page = client.get("/requests").text
    before = _counts(cabinet_ctx)
    for request_id in (foreign_id, 999999):
        response = client.post(f"/requests/{request_id}/messages",
                               data={**_message_form(page, own_id), "text": "hi"})
        assert response.status_code == 404 and b"not yours" not in response.data
    assert _counts(cabinet_ctx) == before

    viewer = client.application.test_client()
    assert log_in(viewer, "viewer9", "viewer-pass-1", lang="en").status_code == 302
    page = viewer.get("/requests").text
    assert "mine" in page and 'data-test="send-message"' not in page
    response = viewer.post(f"/requests/{own_id}/messages",
                           data={"csrf_token": csrf_token(page), "text": "hi",
                                 "message_id": uuid.uuid4().hex})
    assert response.status_code == 403
    assert _counts(cabinet_ctx) == before


@pytest.mark.parametrize("args, message", [
    (["request", "reply", "999", "hello"], "request 999 does not exist"),
    (["request", "reply", "1", "   "], "an answer must be 1 to 2000 characters long"),
    (["request", "reply", "1", "x" * 2001], "an answer must be 1 to 2000 characters long"),
    (["request", "reply", "one", "hello"], "a request id is a number, not 'one'"),
    (["request", "reply", "99999999999", "hello"], "request 99999999999 does not exist"),
    (["request", "show", "999"], "request 999 does not exist"),
    (["request", "show", "1.5"], "a request id is a number, not '1.5'"),
    (["request", "set", "1", "done", "--answer", "x" * 2001], "at most 2000 characters"),
    (["request", "set", "1", "closed", "--answer", "ok"], "status must be one of"),
])
def test_bad_cli_input_is_one_sentence_and_changes_nothing(abonent, cabinet_ctx, subscriber,
                                                           args, message):
    # In-process (click's runner) for the matrix; the executable below.
    _one_request(cabinet_ctx, subscriber)
    before = _counts(cabinet_ctx)
    result = abonent(*args, code=2)
    assert result.stderr.strip().startswith("abonent: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _counts(cabinet_ctx) == before


def test_the_executable_refuses_a_bad_reply_with_one_line(abonent_exe, cabinet_ctx,
                                                          subscriber):
    _one_request(cabinet_ctx, subscriber)
    before = _counts(cabinet_ctx)
    # abonent_exe checks the rest: exit 2, one line on stderr, no traceback.
    assert "request 999 does not exist" in abonent_exe("request", "reply", "999", "hi",
                                                       code=2).stderr
    assert "an answer must be 1 to 2000 characters long" in abonent_exe(
        "request", "reply", "1", "  ", code=2).stderr
    assert _counts(cabinet_ctx) == before


def _one_request(ctx, subscriber):
    with ctx.Session() as session:
        created, _ = service_requests.create(session, subscriber.account_id, topic="other",
                                             text="hello", request_id="form-000001",
                                             actor="cabinet:test")
        session.commit()
        assert created.id == 1


# -- the migration ----------------------------------------------------------------------

@pytest.fixture
def blank_url(db_url, tmp_path):
    """An empty database of db_url's kind, not migrated yet."""
    if make_url(db_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.sqlite3'}"
        return
    name = f"abonent_blank_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_migration_moves_answers_into_threads(blank_url, abonent_exe):
    context = make_context(blank_url)
    upgrade(context.engine, "a1400000c002")
    requests_table = service_requests.ServiceRequest.__table__
    with context.Session() as session:
        # The account as that revision's table has it (today's model has
        # columns the old schema lacks).
        session.execute(text(
            "INSERT INTO accounts (number, kind, name, state, credit_limit, balance, profile, "
            "created_at, version) VALUES ('M1', 'person', 'Ivan Petrov', 'active', 0, 0, "
            "'normal', CURRENT_TIMESTAMP, 1)"))
        account = session.execute(text("SELECT id FROM accounts WHERE number = 'M1'")).one()
        rows = [("answered", "done", "Fixed on our side."), ("waiting", "new", None),
                ("taken", "in_progress", None)]
        for index, (body, status, answer) in enumerate(rows):
            session.execute(insert(requests_table).values(
                account_id=account.id, topic="other", body=body, status=status,
                answer=answer, author="cabinet:x", idempotency_key=f"k{index}",
                created_at=func.current_timestamp(), updated_at=func.current_timestamp()))
        session.commit()
    upgrade(context.engine)
    context.dispose()
    env = {"ABONENT_DATABASE_URL": blank_url}
    threads = {}
    for request_id in (1, 2, 3):
        shown = json.loads(abonent_exe("request", "show", request_id, "--json",
                                       env=env).stdout)
        threads[shown["text"]] = [(m["by"], m["status"], m["text"])
                                  for m in shown["messages"]]
    assert threads == {"answered": [("operator", "done", "Fixed on our side.")],
                       "waiting": [],
                       "taken": [("operator", "in_progress", None)]}
