"""Cabinet logins from the console: add, list, remove, reset-password, and
family linking (one login reaching several accounts)."""

from __future__ import annotations

import re
import secrets

import click
from sqlalchemy import delete, func, select

from rating import accounts as acc
from rating import oplog, validate
from rating.choices import USER_ROLES
from rating.models import Account, CabinetUser, CabinetUserAccount
from rating.passwords import hash_password
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, json_option,
                            page_options, transaction)

_LOGIN = re.compile(r"^[\w.@+-]{1,64}$")
# A one-time password: 12 characters from an alphabet with no look-alikes.
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _login(value: str) -> str:
    value = (value or "").strip()
    if not _LOGIN.match(value):
        raise CliError("a cabinet login must be 1-64 letters, digits or . @ + - _")
    return value


def _password(value: str | None) -> tuple[str, bool]:
    """(password, generated)."""
    if value is None:
        return "".join(secrets.choice(_ALPHABET) for _ in range(12)), True
    try:
        value = validate.text(value, "password", maximum=128)
    except validate.DomainError as error:
        raise CliError(str(error)) from None
    if len(value) < 8:
        raise CliError("the password must be at least 8 characters")
    return value, False


def _user(session, login: str) -> CabinetUser:
    found = session.scalar(select(CabinetUser).where(CabinetUser.login == login))
    if found is None:
        raise CliError(f"no cabinet login {login!r}")
    return found


def _linked(session, user_id: int) -> list[str]:
    return list(session.scalars(select(Account.number).join(
        CabinetUserAccount, CabinetUserAccount.account_id == Account.id)
        .where(CabinetUserAccount.cabinet_user_id == user_id).order_by(Account.number)))


def user_view(session, user: CabinetUser) -> dict:
    return dict(id=user.id, login=user.login, account=user.account.number, role=user.role,
                email=user.email, linked_accounts=_linked(session, user.id),
                created_at=user.created_at)


@click.group("cabinet-user")
def cabinet_user():
    """Cabinet logins: add, list, remove, reset-password, link, unlink."""


@cabinet_user.command("add")
@click.argument("login")
@click.argument("number")
@click.option("--role", type=click.Choice(USER_ROLES), default="owner", show_default=True,
              help="accountant and viewer are for company accounts.")
@click.option("--password", help="Set this password; without it a one-time password is "
                                 "printed.")
@click.option("--email")
@json_option
def cabinet_user_add(login, number, role, password, email, as_json):
    """Add a cabinet login to account NUMBER."""
    login = _login(login)
    password, generated = _password(password)
    with transaction() as session:
        owner = acc.find_account(session, number)
        if owner.state == "closed":
            raise CliError(f"account {number} is closed")
        if owner.kind == "person":
            if role != "owner":
                raise CliError("a person's account has one login, the owner; roles are for "
                               "company accounts")
            if session.scalar(select(CabinetUser.id).where(
                    CabinetUser.account_id == owner.id)) is not None:
                raise CliError(f"account {number} already has a cabinet login; link another "
                               f"login to it with `abonent cabinet-user link`")
        user = acc.create_cabinet_user(session, owner, login=login, password=password,
                                       role=role, email=validate.email(email), actor=actor())
        view = user_view(session, user)
    if generated:
        view["one_time_password"] = password
    if as_json:
        emit_json(view)
        return
    click.echo(f"cabinet login {login} added to account {number} ({role})")
    if generated:
        click.echo(f"one-time password: {password}")


@cabinet_user.command("list")
@click.option("--account", "number", help="Only the logins of (or linked to) this account.")
@page_options()
@json_option
def cabinet_user_list(number, limit, offset, as_json):
    """List cabinet logins (never their passwords)."""
    with transaction() as session:
        query = select(CabinetUser).order_by(CabinetUser.login)
        if number:
            found = acc.find_account(session, number)
            linked = select(CabinetUserAccount.cabinet_user_id).where(
                CabinetUserAccount.account_id == found.id)
            query = query.where((CabinetUser.account_id == found.id)
                                | CabinetUser.id.in_(linked))
        rows = [user_view(session, u) for u in fetch_page(session, query, limit, offset)]
    for row in rows:
        row["linked"] = ",".join(row["linked_accounts"]) or None
    if as_json:
        for row in rows:
            row.pop("linked")
    emit_rows(rows, as_json, ["login", "account", "role", "email", "linked"])


@cabinet_user.command("remove")
@click.argument("login")
@json_option
def cabinet_user_remove(login, as_json):
    """Remove a cabinet login (its API tokens, reset links and account links go too)."""
    from rating.api_tokens import ApiToken
    from rating.selfservice import PasswordReset
    with transaction() as session:
        user = _user(session, login)
        account_id = user.account_id
        for model, column in ((CabinetUserAccount, CabinetUserAccount.cabinet_user_id),
                              (PasswordReset, PasswordReset.user_id),
                              (ApiToken, ApiToken.user_id)):
            session.execute(delete(model).where(column == user.id))
        session.delete(user)
        oplog.record(session, account_id=account_id, actor=actor(),
                     action="cabinet_user.remove", login=login)
    emit_json(dict(login=login, removed=True)) if as_json else click.echo(
        f"cabinet login {login} removed")


@cabinet_user.command("reset-password")
@click.argument("login")
@click.option("--password", help="Set this password; without it a one-time password is "
                                 "printed.")
@json_option
def cabinet_user_reset_password(login, password, as_json):
    """Set a new password for a cabinet login; its sessions end."""
    password, generated = _password(password)
    with transaction() as session:
        user = _user(session, login)
        user.password_hash = hash_password(password)
        # Every browser logged in with the old password is logged out.
        user.session_epoch += 1
        oplog.record(session, account_id=user.account_id, actor=actor(),
                     action="cabinet_user.reset_password", login=login,
                     generated=generated)
    view = dict(login=login)
    if generated:
        view["one_time_password"] = password
    if as_json:
        emit_json(view)
    elif generated:
        click.echo(f"one-time password for {login}: {password}")
    else:
        click.echo(f"password of {login} set")


@cabinet_user.command("link")
@click.argument("login")
@click.argument("number")
@json_option
def cabinet_user_link(login, number, as_json):
    """Let LOGIN reach account NUMBER too (family linking), with its role."""
    with transaction() as session:
        user = _user(session, login)
        target = acc.find_account(session, number)
        if target.id == user.account_id:
            raise CliError(f"account {number} is the login's own account")
        if target.state == "closed":
            raise CliError(f"account {number} is closed")
        if session.scalar(select(CabinetUserAccount.id).where(
                CabinetUserAccount.cabinet_user_id == user.id,
                CabinetUserAccount.account_id == target.id)) is not None:
            raise CliError(f"login {login} already reaches account {number}")
        count = session.scalar(select(func.count()).select_from(CabinetUserAccount).where(
            CabinetUserAccount.cabinet_user_id == user.id))
        if count >= 50:
            raise CliError(f"login {login} already reaches 50 accounts")
        session.add(CabinetUserAccount(cabinet_user_id=user.id, account_id=target.id))
        session.flush()
        oplog.record(session, account_id=target.id, actor=actor(), action="cabinet_user.link",
                     login=login, number=number)
        view = user_view(session, user)
    emit_json(view) if as_json else click.echo(f"login {login} now reaches account {number}")


@cabinet_user.command("unlink")
@click.argument("login")
@click.argument("number")
@json_option
def cabinet_user_unlink(login, number, as_json):
    """Stop LOGIN reaching account NUMBER."""
    with transaction() as session:
        user = _user(session, login)
        target = acc.find_account(session, number)
        link = session.scalar(select(CabinetUserAccount).where(
            CabinetUserAccount.cabinet_user_id == user.id,
            CabinetUserAccount.account_id == target.id))
        if link is None:
            raise CliError(f"login {login} is not linked to account {number}")
        session.delete(link)
        session.flush()
        oplog.record(session, account_id=target.id, actor=actor(),
                     action="cabinet_user.unlink", login=login, number=number)
        view = user_view(session, user)
    emit_json(view) if as_json else click.echo(f"login {login} no longer reaches account "
                                               f"{number}")
