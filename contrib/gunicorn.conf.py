"""gunicorn settings for the subscriber cabinet.

    ABONENT_CONFIG=/etc/abonent/abonent.toml \\
        gunicorn -c contrib/gunicorn.conf.py cabinet.wsgi:app

Put nginx (or another proxy doing TLS) in front; set cabinet.secure_cookies
then. Every worker opens its own database pool (the app is built after
the fork: no preload), and the workers share the cabinet's secret key
through the file in data_dir (or cabinet.secret_key), so a session made by
one worker is good in the others. The login, reset and voucher attempt
limits count per worker unless cabinet.rate_limit_storage points at Redis
(redis://127.0.0.1:6379/0): with N workers a guesser gets N times the
attempts, so set it (gunicorn warns at start when it is not set).

Environment overrides: ABONENT_CABINET_BIND, ABONENT_CABINET_WORKERS,
ABONENT_CABINET_THREADS.
"""

import multiprocessing
import os

bind = os.environ.get("ABONENT_CABINET_BIND", "127.0.0.1:8080")


def _count(name: str, default: int) -> int:
    """A positive whole number from the environment, or one clear sentence."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{name}={text!r}: expected a whole number of at least 1")
    return value


# A page is mostly Python (routing, templates), so the GIL lets one thread
# of a process run at a time: a process per core, two threads each (the
# second runs while the first waits for PostgreSQL). gthread, except that a
# worker whose threads are all busy leaves new connections to the others
# (cabinet/gunicorn_worker.py): kept-alive connections no longer pile up on
# the worker that woke first, which left it on one core and the rest idle.
# On the 2-core bench box (bench/cabinet_dashboard.py --server gunicorn,
# runs alternated): 2 x 2 balanced 448-660 req/s, 3 x 2 balanced 441-531,
# stock gthread 3 x 2 268-509, stock 2 x 2 217-265.
workers = _count("ABONENT_CABINET_WORKERS", multiprocessing.cpu_count())
worker_class = "cabinet.gunicorn_worker.BalancedThreadWorker"
threads = _count("ABONENT_CABINET_THREADS", 2)
keepalive = 5
backlog = 512

# Build the app in each worker: a database pool must not cross a fork.
preload_app = False

# Recycle workers now and then (a slow leak cannot grow forever); the
# jitter keeps them from restarting at once.
max_requests = 20_000
max_requests_jitter = 2_000
timeout = 30
graceful_timeout = 20

# No access log by default: a password-reset link carries its token in
# the query string, and a log line is not the place for it. The proxy's
# log (with its own masking) is the access log.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("ABONENT_CABINET_LOGLEVEL", "warning")

# Trust X-Forwarded-* only from the proxy on this host. gunicorn does not
# take the client address from X-Forwarded-For: the cabinet does, for its
# attempt limits, when cabinet.trusted_proxies says how many proxies
# stand in front (nginx alone: 1).
forwarded_allow_ips = "127.0.0.1"
proc_name = "abonent-cabinet"


def on_starting(server):
    """Warn when several workers would each keep their own attempt counters,
    and about what cabinet.app.startup_warnings names (no reset mail)."""
    from cabinet.app import startup_warnings
    from config.settings import load_settings

    settings = load_settings()
    for warning in startup_warnings(settings):
        server.log.warning("%s", warning)
    storage = settings.get("cabinet", "rate_limit_storage")
    if server.cfg.workers > 1 and storage.startswith("memory://"):
        server.log.warning(
            "cabinet.rate_limit_storage is %s: each of the %d workers counts login and "
            "voucher attempts apart; point it at Redis (redis://host:6379/0) to share them",
            storage, server.cfg.workers)


def post_worker_init(worker):
    """Once the app is loaded in a worker: move everything that exists now
    (modules, the app, compiled templates and statements) out of the cyclic
    garbage collector's reach, so its full passes walk only what requests
    made. callgrind: 9.30M -> 9.13M instructions per dashboard."""
    import gc

    gc.collect()
    gc.freeze()
