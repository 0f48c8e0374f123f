"""Login, logout and the language switch.

The Flask-Login identifier is ``"<user id>:<session epoch>"``. A password
change bumps ``CabinetUser.session_epoch``, so every other session's
identifier stops matching and the loader answers "nobody": those sessions
end at their next request.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache

from flask import (Blueprint, Flask, current_app, g, jsonify, redirect, render_template,
                   request, session, url_for)
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect, generate_csrf
from flask_login import UserMixin, current_user, login_user, logout_user
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from cabinet import queries
from cabinet.app import db, reads
from cabinet.forms import LanguageForm, LoginForm
from cabinet.i18n import LOCALES
from rating import cabinet_ops, org
from rating.models import CabinetUser
from rating.passwords import hash_password, verify_password

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

LOGIN_LIMITS = "10 per minute;50 per hour"
ADDRESS_LIMITS = "100 per minute"
# Wrong passwords for one login from every source together (a botnet gives
# each guess a new address); a browser this login has logged in from
# before does not count against it, so guessers cannot lock the subscriber
# out of their own devices.
LOGIN_ANY_SOURCE_LIMITS = "30 per hour"
DEVICE_COOKIE = "abonent_device"
DEVICE_COOKIE_DAYS = 365


@dataclass(frozen=True)
class Principal(UserMixin):
    """Who is logged in; a plain value, detached from any database session."""

    user_id: int
    account_id: int
    login: str
    role: str
    epoch: int
    # Family linking: the login's own account; ``account_id`` is the one
    # selected with the switcher (the own one, or one linked to the login).
    own_account_id: int = 0
    # Issue 21: what the login may do on the selected account (rating.org:
    # its grants on the customer's branch, a family link, or its role).
    rights: frozenset = frozenset()

    def get_id(self) -> str:
        return f"{self.user_id}:{self.epoch}"

    def may(self, change: str) -> bool:
        """Whether this login may make a change of rating.roles' group
        ``change`` on the selected account."""
        return org.may(self.rights, change)

    @classmethod
    def of(cls, user: CabinetUser) -> "Principal":
        return cls(user.id, user.account_id, user.login, user.role, user.session_epoch)


def load_user(identifier: str) -> Principal | None:
    try:
        user_id, epoch = (int(part) for part in identifier.split(":"))
    except ValueError:
        return None
    # One Core SELECT, with the account and its tariff: the dashboard (the
    # busiest page) shows them, and building ORM objects for the login cost
    # more than the rest of the query. Pages that change the account read
    # it themselves.
    found = queries.login_view(reads(), user_id)
    if found is None or found.session_epoch != epoch:
        return None
    account_id, account = found.account_id, found.account
    # No grants, no selection: the login's role on its own account, and no
    # query more than before issue 21 (the busiest path).
    rights = org.role_rights(found.role) if not found.has_grants else None
    selected = session.get(SELECTED_ACCOUNT)
    if selected is not None and selected != found.account_id:
        # Checked on every request: a link or a grant removed ends the
        # login's reach at once; the login is back on its own account.
        reach = _rights_on(found.user_id, selected)
        view = queries.account_view(reads(), selected) if "view" in reach else None
        if view is None:
            session.pop(SELECTED_ACCOUNT, None)
        else:
            account_id, account, rights = selected, view, reach
    if rights is None:
        rights = _rights_on(found.user_id, account_id)
        if "view" not in rights:
            # A login with grants on a branch that does not hold its own
            # account starts on the first account it may see.
            first = next(iter(org.accounts_with_right(reads(), found.user_id, "view")), None)
            view = queries.account_view(reads(), first) if first is not None else None
            if view is not None:
                account_id, account = first, view
                rights = _rights_on(found.user_id, first)
                # Selected from now on: the next request checks this one
                # account instead of looking for it again.
                session[SELECTED_ACCOUNT] = first
    g.login_account = account
    g.login_has_grants = found.has_grants
    return Principal(found.user_id, account_id, found.login, found.role,
                     found.session_epoch, found.account_id, frozenset(rights))


# -- family linking: one login, several accounts --------------------------------

SELECTED_ACCOUNT = "account_id"


def _rights_on(user_id: int, account_id) -> frozenset:
    if not isinstance(account_id, int) or not 0 < account_id < 2 ** 31:
        return frozenset()
    return org.rights_on(reads(), user_id, account_id)


# The switcher is a select: past this many accounts it lists the first
# ones and the company's overview page finds the rest.
SWITCHER_LIMIT = 200


def reachable_accounts() -> list:
    """(id, number, name) of every account the login may view (its own when
    it may, the linked ones, those of its branches), own first; empty when
    there is nothing to switch between."""
    from rating.models import Account, CabinetUserAccount
    if not current_user.is_authenticated or not current_user.own_account_id:
        return []
    if not g.get("login_has_grants"):
        # Before issue 21's grants (most logins): its own account and those
        # linked to it, in one statement.
        linked = reads().execute(
            select(Account.id, Account.number, Account.name)
            .join(CabinetUserAccount, CabinetUserAccount.account_id == Account.id)
            .where(CabinetUserAccount.cabinet_user_id == current_user.user_id)
            .order_by(Account.number)).all()
        if not linked:
            return []
        own = reads().execute(select(Account.id, Account.number, Account.name)
                              .where(Account.id == current_user.own_account_id)).first()
        return [tuple(own)] + [tuple(row) for row in linked]
    ids = org.accounts_with_right(reads(), current_user.user_id, "view")
    if len(ids) < 2 and ids == [current_user.account_id]:
        return []
    if not ids:
        return []
    rows = reads().execute(select(Account.id, Account.number, Account.name)
                           .where(Account.id.in_(ids[:SWITCHER_LIMIT] + [current_user.account_id]))
                           .order_by(Account.number)).all()
    own = [tuple(row) for row in rows if row.id == current_user.own_account_id]
    return own + [tuple(row) for row in rows if row.id != current_user.own_account_id]


# What a login that may see no account at all (its grants cover no account
# yet) may still reach: its own login's pages and the company pages, which
# check their own rights.
WITHOUT_AN_ACCOUNT = {"static", "favicon", "auth.login", "auth.logout", "auth.set_language",
                      "auth.switch_account", "main.password", "main.end_other_sessions"}


@blueprint.before_app_request
def _an_account_to_show():
    """Every other page shows or changes the selected account: without the
    right to view it (rating.org), 403 rather than the login's own account."""
    endpoint = request.endpoint or ""
    if (endpoint in WITHOUT_AN_ACCOUNT or endpoint.startswith("company.")
            or ("_user_id" not in session and "Authorization" not in request.headers)):
        return None
    if current_user.is_authenticated and "view" not in current_user.rights:
        if request.path.startswith("/api/"):
            return jsonify({"error": "forbidden"}), 403
        return render_template("error.html", code=403), 403
    return None


@blueprint.app_context_processor
def _account_switcher():
    return {"reachable_accounts": reachable_accounts}


@blueprint.route("/account/switch", methods=["POST"])
def switch_account():
    """Select which of the login's accounts every page shows."""
    if not current_user.is_authenticated:
        return unauthorized()
    try:
        wanted = int(request.form.get("account_id", ""))
    except ValueError:
        wanted = 0
    if wanted == current_user.own_account_id and "view" in _rights_on(current_user.user_id,
                                                                       wanted):
        session.pop(SELECTED_ACCOUNT, None)
    elif "view" in _rights_on(current_user.user_id, wanted):
        session[SELECTED_ACCOUNT] = wanted
    else:
        # Not the login's: the same answer whether the account exists or not.
        return render_template("error.html", code=404), 404
    log.info("cabinet.switch_account user_id=%s account_id=%s", current_user.user_id, wanted)
    return redirect(safe_target(request.form.get("next")))


def unauthorized():
    """The JSON API answers 401; pages send the browser to the login form."""
    if request.path.startswith("/api/"):
        return jsonify({"error": "login required"}), 401
    return redirect(url_for("auth.login", next=request.path))


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return hash_password("decoy password that matches nothing")


def authenticate(login: str, password: str) -> CabinetUser | None:
    user = db().scalar(select(CabinetUser).where(CabinetUser.login == login))
    if user is None:
        # Spend the same scrypt time as for a real login, so the answer's
        # timing does not tell which logins exist.
        verify_password(password, _decoy_hash())
        return None
    if not verify_password(password, user.password_hash):
        return None
    return user


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        login_name = form.login.data.strip()
        user = authenticate(login_name, form.password.data)
        if user is not None:
            lang = session.get("lang")
            # A fresh session on login: nothing an attacker planted survives.
            session.clear()
            if lang:
                session["lang"] = lang
            login_user(Principal.of(user))
            # The new session's CSRF secret goes out with the login's own
            # cookie. Made later, by the first page with a form, it would
            # be a second Set-Cookie, and a client that keeps the login's
            # cookie (a script, the bench) would have the session re-signed
            # and a new secret made on every page (~0.4 ms each). The token
            # this request's form made (from the cleared secret) goes first.
            g.pop("csrf_token", None)
            generate_csrf()
            log.info("cabinet.login account_id=%s user_id=%s ip=%s", user.account_id, user.id,
                     request.remote_addr)
            _remember_device(login_name)
            return redirect(safe_target(request.args.get("next")))
        log.info("cabinet.login_failed ip=%s", request.remote_addr)
        form.password.errors.append(_("Wrong login or password."))
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


@blueprint.route("/logout", methods=["POST"])
def logout():
    # CSRFProtect has checked the token: a foreign page cannot log us out.
    # The session lives in a signed cookie, so clearing it here would not
    # stop a copy of it being replayed; moving the login's epoch on does.
    # The price: logging out ends this login's sessions on every device.
    if current_user.is_authenticated:
        database = db()
        # API tokens stay: logging out of a browser must not stop the
        # accounting system's script ("log out everywhere" revokes them).
        cabinet_ops.end_other_sessions(database, current_user.user_id,
                                       actor=f"cabinet:{current_user.login}",
                                       revoke_tokens=False)
        database.commit()
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    return redirect(url_for("auth.login"))


@blueprint.route("/lang", methods=["POST"])
def set_language():
    form = LanguageForm()
    if form.validate_on_submit() and form.lang.data in LOCALES:
        session["lang"] = form.lang.data
    return redirect(safe_target(request.form.get("next")))


def safe_target(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return url_for("main.dashboard")
    return target


def _client_and_login() -> str:
    return f"{get_remote_address()}|{_form_login()}"


def _failed(response) -> bool:
    return response.status_code != 302


def _form_login() -> str:
    return (request.form.get("login") or "").strip().lower()[:64]


def _login_only() -> str:
    return f"login|{_form_login()}"


def _device_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="abonent-known-device")


def _login_digest(login_name: str) -> str:
    # The cookie is signed, not encrypted: it names the login by a digest.
    return hashlib.sha256(login_name.strip().lower()[:64].encode()).hexdigest()[:32]


def _remember_device(login_name: str) -> None:
    """A signed cookie naming the login that logged in from this browser
    (after the session's cookie, see CabinetFlask.process_response)."""
    g.cookies_after_session = [(
        DEVICE_COOKIE, _device_serializer().dumps(_login_digest(login_name)),
        dict(max_age=DEVICE_COOKIE_DAYS * 86400, httponly=True, samesite="Lax",
             secure=current_app.config["SESSION_COOKIE_SECURE"]))]


def _known_device() -> bool:
    """The login in the form has logged in from this browser before."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if not cookie:
        return False
    try:
        return _device_serializer().loads(cookie) == _login_digest(_form_login())
    except BadSignature:
        return False


def apply_limits(app: Flask, limiter: Limiter, csrf: CSRFProtect) -> None:
    """Rate-limit failed login attempts (POST only: showing the form is free).

    Per address and login, so guessing one password is slow; per address
    alone with a higher ceiling, because many subscribers share one address
    behind the operator's own CGNAT; and per login from every address, but
    not for a browser the login has used before (the "address" is the
    client's, see cabinet.trusted_proxies).
    """
    endpoint = "auth.login"
    view = app.view_functions[endpoint]
    view = limiter.limit(LOGIN_ANY_SOURCE_LIMITS, key_func=_login_only, methods=["POST"],
                         deduct_when=_failed, exempt_when=_known_device)(view)
    view = limiter.limit(LOGIN_LIMITS, key_func=_client_and_login, methods=["POST"],
                         deduct_when=_failed)(view)
    view = limiter.limit(ADDRESS_LIMITS, methods=["POST"], deduct_when=_failed)(view)
    app.view_functions[endpoint] = view
    # The limit is checked inside the view, so CSRFProtect's early refusal
    # would skip it; LoginForm checks the CSRF token itself instead.
    csrf.exempt(view)
