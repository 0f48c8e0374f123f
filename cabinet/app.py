"""The subscriber cabinet: the Flask application factory and a server that
can run in a background thread (``abonent serve cabinet``, ``abonent demo``).

Everything the app needs comes from the ``Context`` it is given: settings,
the engine and the session factory. There is no module-level app and no
module-level database, so several apps (tests, one per backend) can live in
one process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

from flask import Flask, current_app, g, jsonify, render_template, request, session
from flask_babel import Babel, get_locale
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from markupsafe import Markup
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import WSGIRequestHandler, make_server

from config.context import Context
from config.db import make_sessionmaker
from config.settings import SettingsError
from rating import policies
from cabinet import formatting
from cabinet.i18n import LOCALES, CabinetRequest, select_locale

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SECRET_KEY_FILE = "cabinet_secret_key"

# The cabinet serves only its own files, so the policy can be strict: no
# inline script or style, no framing, forms post only to us.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                           "script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'; object-src 'none'")


SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000")


class CabinetFlask(Flask):
    """Flask asks ensure_sync about every hook and the view on every request
    (an inspect.iscoroutinefunction each, some fifteen a page). Whether a
    function is async does not change, so the answer is kept (bounded: a
    hook made per request, after_this_request's, only churns it)."""

    _SYNC_CACHE_SIZE = 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def process_response(self, response):
        """As Flask's, then the cookies a view asked to come after the
        session's (``g.cookies_after_session``): a client that keeps only the
        first Set-Cookie of a login (a script, the bench) keeps the session."""
        response = super().process_response(response)
        for name, value, options in g.pop("cookies_after_session", ()):
            response.set_cookie(name, value, **options)
        return response

    def ensure_sync(self, func):
        try:
            return self._sync[func]
        except KeyError:
            pass
        except TypeError:  # not hashable
            return super().ensure_sync(func)
        if len(self._sync) >= self._SYNC_CACHE_SIZE:
            self._sync.clear()
        sync = self._sync[func] = super().ensure_sync(func)
        return sync


def create_app(ctx: Context, testing: bool = False) -> Flask:
    settings = ctx.settings
    app = CabinetFlask("cabinet", root_path=str(HERE), template_folder="templates",
                       static_folder="static")
    secure = bool(settings.get("cabinet", "secure_cookies"))
    app.config.update(
        TESTING=testing,
        SECRET_KEY=load_secret_key(ctx),
        SESSION_COOKIE_NAME="abonent_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        # A CSRF token lives as long as the login session, not one hour: a
        # subscriber who leaves a form open over lunch must not get a 400.
        WTF_CSRF_TIME_LIMIT=None,
        BABEL_DEFAULT_LOCALE=settings.get("cabinet", "default_locale"),
        BABEL_DEFAULT_TIMEZONE=settings.get("", "timezone"),
        BABEL_TRANSLATION_DIRECTORIES=str(HERE / "translations"),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    # Reset links start with this; empty: no reset mail (never the Host
    # header). `abonent demo` sets its own address here.
    app.config["ABONENT_PUBLIC_URL"] = public_url(settings)
    proxies = trusted_proxies(settings)
    if proxies:
        # The client address (and so every attempt limit) from the last
        # `proxies` entries of X-Forwarded-For: the ones our proxies wrote.
        # Whatever a client put in the header itself stays to their left.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    app.extensions["abonent"] = ctx
    # Notices queued by the cabinet's requests (a payment's) in the operator's language.
    from rating import notify
    notify.DEFAULT_LANGUAGE = settings.get("notify", "default_language")
    app.extensions["abonent_reads_engine"] = _reads_engine(ctx)
    app.extensions["abonent_reads"] = make_sessionmaker(None)
    app.request_class = CabinetRequest

    csrf = CSRFProtect(app)
    # Attempt counters: per process (memory://) unless cabinet.rate_limit_storage
    # names a shared store (Redis) for several gunicorn workers or nodes.
    limiter = Limiter(get_remote_address, app=app,
                      storage_uri=settings.get("cabinet", "rate_limit_storage"),
                      headers_enabled=False)
    Babel(app, locale_selector=select_locale)
    app.extensions["abonent_limiter"] = limiter
    # Every limit of the cabinet is on a POST (login, forgot, reset, the
    # voucher: methods=["POST"]) and none is a default or application-wide
    # limit, so a GET or HEAD is exempt at once instead of having the
    # view's limits resolved and found POST-only on every page. A limit on
    # a GET would need this filter changed (tests/integration/test_cabinet_cheap_gets.py).
    limiter.request_filter(_safe_method)
    # And the filter is consulted only after Flask-Limiter has built its
    # context for the request (23 us a page): a GET or HEAD skips its hook.
    hooks = app.before_request_funcs.setdefault(None, [])
    hooks[hooks.index(limiter._check_request_limit)] = _unless_safe(limiter._check_request_limit)

    login_manager = LoginManager(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    # "strong" would drop the session when a phone moves between Wi-Fi and
    # LTE (the IP is part of the identifier); the epoch check covers theft
    # after a password change.
    login_manager.session_protection = "basic"

    from cabinet import auth, views
    login_manager.user_loader(auth.load_user)
    login_manager.unauthorized_handler(auth.unauthorized)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(views.blueprint)
    auth.apply_limits(app, limiter, csrf)
    from cabinet import plans
    app.register_blueprint(plans.blueprint)
    from cabinet import money
    money.init_app(app, limiter, csrf)
    from cabinet import selfservice
    selfservice.install(app, limiter, csrf)
    from cabinet import packages_page
    app.register_blueprint(packages_page.blueprint)
    from cabinet import calls_page
    calls_page.install(app)
    from cabinet import users_page
    users_page.install(app)
    from cabinet import bulk_page
    app.register_blueprint(bulk_page.blueprint)
    from cabinet import company, family_page
    company.install(app)
    family_page.install(app)
    from cabinet import company_page
    app.register_blueprint(company_page.blueprint)
    from cabinet import api, tokens
    api.register(app)
    app.register_blueprint(tokens.blueprint)
    tokens.apply_limits(app, limiter)
    from cabinet import osmp
    osmp.install(app, csrf)

    formatting.register(app)
    from cabinet import branding
    branding.init_app(app)
    app.extensions["abonent_nav"] = {}
    app.jinja_env.globals["nav_tabs"] = nav_tabs

    token = csrf_token_function(app)
    app.jinja_env.globals["csrf_token"] = token

    @app.context_processor
    def _globals():
        # csrf_token here too: Flask-WTF's own context processor hands the
        # templates its generate_csrf.
        return {"LOCALES": LOCALES, "get_locale": get_locale, "csrf_token": token}

    @app.teardown_appcontext
    def _close_db(_error):
        db = g.pop("db", None)
        if db is not None:
            db.close()
        connection = g.pop("reads", None)
        if connection is not None:
            connection.close()

    security_headers = SECURITY_HEADERS + ((HSTS,) if secure else ())

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        # What setdefault does for each, with one pass over the headers
        # (each setdefault scanned them all again).
        present = {key.lower() for key, _value in headers.items()}
        for key, value in security_headers:
            if key.lower() not in present:
                headers.add(key, value)
        if request.endpoint not in ("static", "favicon", "brand_css", "brand_logo"):
            # Pages show a balance and personal data: no shared caches, and
            # the back button after logout must not show them either.
            headers["Cache-Control"] = "no-store"
            headers.add("Vary", "Cookie")
        return response

    @app.route("/favicon.ico")
    def favicon():
        # Browsers ask for it on every first visit; an answer beats a 404
        # page rendered each time.
        return app.send_static_file("favicon.ico")

    @app.errorhandler(CSRFError)
    def _csrf_error(error):
        return render_template("error.html", code=400, message=error.description), 400

    @app.errorhandler(404)
    def _not_found(_error):
        if request.path.startswith("/api/"):
            return jsonify({"error": "not found"}), 404
        return render_template("error.html", code=404, message=None), 404

    @app.errorhandler(429)
    def _too_many(_error):
        return render_template("error.html", code=429, message=None), 429

    return app


def csrf_token_function(app: Flask):
    """The templates' csrf_token(): flask_wtf.csrf.generate_csrf (the same
    secret in the session, the same token, kept in ``g`` for the forms)
    with its serializer made once instead of on every page."""
    field = app.config["WTF_CSRF_FIELD_NAME"]
    serializer = URLSafeTimedSerializer(app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key,
                                        salt="wtf-csrf-token")

    def csrf_token() -> str:
        token = g.get(field)
        if token is None:
            if field not in session:
                session[field] = hashlib.sha1(os.urandom(64)).hexdigest()
            try:
                token = serializer.dumps(session[field])
            except TypeError:
                session[field] = hashlib.sha1(os.urandom(64)).hexdigest()
                token = serializer.dumps(session[field])
            setattr(g, field, token)
        return token

    return csrf_token


def _safe_method() -> bool:
    return request.method in ("GET", "HEAD")


def _unless_safe(hook):
    """A before_request hook that a GET or HEAD does not run."""
    @functools.wraps(hook)
    def unless_safe():
        return None if _safe_method() else hook()
    return unless_safe


MAX_TRUSTED_PROXIES = 5


def public_url(settings) -> str:
    """cabinet.public_url without its trailing slash; "" when unset.

    Anything but an http(s) URL with a host stops the start: it would make
    every reset link broken."""
    url = (settings.get("cabinet", "public_url") or "").strip().rstrip("/")
    if url and not (url.startswith(("http://", "https://")) and "//" in url
                    and url.split("//", 1)[1] and " " not in url):
        raise SettingsError(f"setting cabinet.public_url must be like https://my.isp.example, "
                            f"not {url!r}")
    return url


def trusted_proxies(settings) -> int:
    count = settings.get("cabinet", "trusted_proxies")
    if not 0 <= count <= MAX_TRUSTED_PROXIES:
        raise SettingsError(f"setting cabinet.trusted_proxies must be 0 to "
                            f"{MAX_TRUSTED_PROXIES} (the proxies in front), not {count}")
    return count


def startup_warnings(settings) -> list[str]:
    """What an operator must hear when the cabinet starts (serve, gunicorn)."""
    warnings = []
    if not public_url(settings):
        warnings.append("cabinet.public_url is not set, so the cabinet sends no password "
                        "reset mail; set it to the cabinet's public address, e.g. "
                        "https://my.isp.example")
    return warnings


# Languages x pages x script roots; a bound, should a proxy send odd ones.
NAV_CACHE_SIZE = 512


def nav_tabs() -> Markup:
    """The navigation of the logged-in pages (_nav.html: tabs on a desktop,
    a bar with "More" on a phone). It is the same for every subscriber, so
    each process draws it once per language and page."""
    cache = current_app.extensions["abonent_nav"]
    key = (request.script_root, formatting.locale_key(), request.endpoint)
    html = cache.get(key)
    if html is None:
        if len(cache) >= NAV_CACHE_SIZE:
            cache.clear()
        template = current_app.jinja_env.get_template("_nav.html")
        html = cache[key] = Markup(template.render(current=request.endpoint))
    return html


def ladder():
    """The operator's balance ladder (settings [policy]), read once per app:
    the cabinet's "speed now" asks rating.profile as RADIUS does."""
    cache = current_app.extensions.setdefault("abonent_ladder", [])
    if not cache:
        cache.append(policies.ladder_from_settings(
            current_app.extensions["abonent"].settings.section("policy")))
    # Read through the request's session: a second connection could wait
    # for the request's own on a one-connection SQLite pool.
    return policies.ladder_in_force(db(), cache[0])


def db():
    """The request's database session (closed at the end of the request).

    A GET or HEAD changes nothing, so on PostgreSQL its statements run
    without a transaction around them: no BEGIN and no ROLLBACK round trip.
    Under READ COMMITTED each statement has its own snapshot inside a
    transaction too, so the page sees nothing different. A dashboard
    makes 3 statements: 5 round trips became 3. Such a session works on
    the request's reads() connection."""
    if "db" not in g:
        connection = _reads_connection()
        if connection is None:
            g.db = current_app.extensions["abonent"].Session()
        else:
            g.db = current_app.extensions["abonent_reads"](bind=connection)
    return g.db


def reads():
    """What the Core SELECTs of cabinet.queries run on: for a GET or HEAD on
    PostgreSQL the request's autocommit connection itself (a Session around
    it, its transaction and its close, cost about as much as the dashboard's
    three statements' own work in SQLAlchemy), else db()."""
    connection = _reads_connection()
    return db() if connection is None else connection


def _reads_connection():
    connection = g.get("reads")
    if connection is None:
        engine = current_app.extensions["abonent_reads_engine"]
        if engine is None or request.method not in ("GET", "HEAD"):
            return None
        connection = g.reads = engine.connect()
    return connection


def _reads_engine(ctx: Context):
    """The engine on autocommit connections for safe requests (PostgreSQL
    only: SQLite's connections begin every transaction themselves, see
    config.db)."""
    if ctx.engine.dialect.name != "postgresql":
        return None
    return ctx.engine.execution_options(isolation_level="AUTOCOMMIT")


def load_secret_key(ctx: Context) -> str:
    """settings cabinet.secret_key, else a random key kept in data_dir.

    Kept in a file so that a restart (or a second worker) keeps the
    subscribers' sessions. Two processes starting at once must agree on one
    key and neither may read the file half-written: the key is written and
    flushed under a private name, then hard-linked to its own name, which
    fails if another process got there first (whose key is then read). The
    name thus only ever appears with the whole key in it.
    """
    configured = ctx.settings.get("cabinet", "secret_key")
    if configured:
        return configured
    data_dir = ctx.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        key = secrets.token_hex(32)
        descriptor, scratch = tempfile.mkstemp(prefix=f".{SECRET_KEY_FILE}.", dir=data_dir)
        try:
            _write_key(descriptor, key)     # mkstemp: mode 0600
            created = _link_or_create(scratch, path, key)
        finally:
            os.unlink(scratch)
        if created:
            log.info("cabinet.secret_key_created path=%s", path)
            return key
    for _ in range(20):
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
        time.sleep(0.05)    # only where _link_or_create had to create in place
    raise RuntimeError(f"{path} holds no usable secret key; delete it to make a new one")


def _link_or_create(scratch: str, path: Path, key: str) -> bool:
    """Give the key the name ``path`` unless another process has; whether
    this one did."""
    try:
        os.link(scratch, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass    # no hard links on this filesystem (vfat, some SMB shares)
    # O_EXCL still lets only one process create the file, but another may
    # open it before the key is in: load_secret_key's reader waits a moment.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    _write_key(descriptor, key)
    return True


def _write_key(descriptor: int, key: str) -> None:
    """The key, on disk, into the open file ``descriptor`` (closed after)."""
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class _RequestHandler(WSGIRequestHandler):
    # werkzeug writes the headers and the body separately; with Nagle on,
    # the body waits for the client's delayed ACK (~40 ms a page).
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        # Not "Werkzeug/3.1 Python/3.11": the versions help only an attacker.
        return "abonent"


class CabinetServer:
    """The cabinet on a werkzeug server in a background thread.

    ``port=0`` picks a free port; ``.port`` and ``.url`` tell which.
    """

    def __init__(self, ctx: Context, host: str = "127.0.0.1", port: int = 8080,
                 app: Flask | None = None):
        self.app = app or create_app(ctx)
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_RequestHandler)
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "CabinetServer":
        if self._thread is not None:
            raise RuntimeError("the cabinet server is already running")
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="cabinet-http", daemon=True)
        self._thread.start()
        log.info("cabinet.listening url=%s", self.url)
        return self

    def serve_forever(self) -> None:
        log.info("cabinet.listening url=%s", self.url)
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "CabinetServer":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
