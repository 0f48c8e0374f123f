"""Settings: a TOML file plus ``ABONENT_*`` environment overrides.

Every setting lives in ``SCHEMA`` with its type and default, so a typo in the
file or a value of the wrong type is reported at start with the key named,
instead of surfacing later as a strange crash.

Environment names are ``ABONENT_<SECTION>_<KEY>`` in upper case, e.g.
``ABONENT_DATABASE_URL`` or ``ABONENT_RADIUS_AUTH_PORT``; top-level keys are
``ABONENT_<KEY>`` (``ABONENT_DATA_DIR``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


class SettingsError(ValueError):
    """A setting is unknown or has a value of the wrong type; the message names it."""


# (type, default). A default of None means "derived" or "unset".
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "": {
        "data_dir": (str, "./data"),
        "timezone": (str, "Europe/Moscow"),
        "log_level": (str, "INFO"),
    },
    "database": {
        # Empty means the embedded default: SQLite in data_dir.
        "url": (str, ""),
        "echo": (bool, False),
    },
    "radius": {
        "host": (str, "127.0.0.1"),
        "auth_port": (int, 1812),
        "acct_port": (int, 1813),
        "interim_interval": (int, 300),
        # A session with no Interim or Stop for this many interim intervals
        # is closed by the scheduler (cause Stale-Session); 0: never.
        "stale_after_intervals": (int, 3),
        "session_timeout": (int, 0),
        # Group commit: the writer commits what it has after this many ms.
        "batch_ms": (int, 5),
        "batch_max": (int, 2000),
        "duplicate_window": (int, 30),
        # Answer Access-Requests whose Accept is already known and plain
        # Accounting-Requests in compiled code (aaa.fastpath), and move
        # datagrams 16 a system call (recvmmsg, sendmmsg); off: every request
        # on the Python path, one by one.
        "fast_path": (bool, True),
        # Each duplicate cache (auth, acct) holds at most this many requests
        # and this many MiB of them (requests are up to 4 KiB).
        "duplicate_cache_entries": (int, 65536),
        "duplicate_cache_mb": (int, 32),
        # While the database cannot be read, subscribers are authorized from
        # the last good view for this many seconds past its 30 s TTL; 0: never.
        "stale_view_s": (int, 3600),
        # Voice NAS (aaa.voice): a call's Start with no Stop for this long is
        # closed as a failed call of 0 s; the caller check's answer is kept
        # this many seconds (a payment lifts a bar within it).
        "voice_call_timeout_s": (int, 14400),
        "voice_check_ttl_s": (int, 5),
        # Prometheus metrics on this TCP port of radius.host, summed over the
        # workers; 0: none.
        "metrics_port": (int, 0),
        # Server processes sharing the ports (SO_REUSEPORT, aaa.workers);
        # 0: one per CPU on PostgreSQL, one on SQLite.
        "workers": (int, 0),
    },
    "cabinet": {
        "host": (str, "127.0.0.1"),
        "port": (int, 8080),
        "secret_key": (str, ""),
        "default_locale": (str, "ru"),
        "secure_cookies": (bool, False),
        # Links in mails (password reset) start with this, e.g.
        # "https://my.isp.example". Empty: no reset mail is sent (a link
        # built from the request's Host header could point anywhere);
        # `abonent demo` uses its own address.
        "public_url": (str, ""),
        # How many reverse proxies (nginx, a load balancer) stand in front
        # and append to X-Forwarded-For / set X-Forwarded-Proto; the client
        # address (and so every attempt limit) is taken from them. 0: the
        # cabinet faces clients directly and ignores those headers.
        "trusted_proxies": (int, 0),
        "reset_token_minutes": (int, 30),
        # Where the login, reset and voucher attempt counters live. memory://
        # counts per process: right for `abonent serve cabinet` (one process);
        # with several gunicorn workers or nodes use redis://host:6379/0 so
        # that each limit holds across all of them.
        "rate_limit_storage": (str, "memory://"),
    },
    "collector": {
        "host": (str, "127.0.0.1"),
        "port": (int, 2055),
        # TOML file with [classes] name = ["prefix", ...]; empty: all "internet".
        "classes": (str, ""),
        # Collector processes sharing the port (SO_REUSEPORT); 0: one per
        # CPU on PostgreSQL, one on SQLite.
        "workers": (int, 0),
        # Exporters allowed to send flows: addresses or prefixes; empty: any.
        # Datagrams from others are dropped and counted
        # (drops_exporter_not_allowed). Env: comma-separated.
        "exporters": (list, []),
        # How often the sums go to the database (seconds). The cost of a
        # flush grows with the subscribers active in it, not with the flow
        # rate; what a kill -9 can lose is at most this long of traffic.
        "flush_seconds": (float, 15.0),
        # On SIGTERM: how long the last flush may take before what is left
        # goes to the local spool (applied by the next start).
        "stop_seconds": (float, 3.0),
        # Where unwritten sums go when the database falls behind or at
        # stop; empty: <data_dir>/collector/spool.
        "spool_dir": (str, ""),
        # Rollup rows kept in memory while the database refuses them;
        # beyond this the oldest flushes are spooled to disk.
        "max_pending_rows": (int, 4_000_000),
        # Sampling rate forced per exporter (address or prefix -> N, for
        # 1 in N packets), replacing what the exporter reports; the most
        # specific prefix wins. Env: "192.0.2.1=100,198.51.100.0/24=1000".
        "sampling": (dict, {}),
        # A flow is spread over the 5-minute intervals it spans; one
        # claiming to last longer than this is spread over its last this
        # many seconds (a clock error must not make rows without bound).
        "max_flow_seconds": (int, 86400),
        # Collectors that take over each other's exporters (anycast, or an
        # exporter with a backup destination that re-sends its last
        # datagrams at the move): the datagrams of an exporter this
        # collector has not heard from for this long are held this long
        # before they are counted, so that the replay sets of the collector
        # that had the exporter (flushed within its flush_seconds, learnt
        # here every 2 s) are known by then and a re-sent packet is
        # skipped. flush_seconds + 3 is enough when the collectors share
        # flush_seconds. 0: off (counted at once).
        "failover_hold_seconds": (float, 0.0),
    },
    "coa": {
        # RFC 5080 retransmission of one CoA/Disconnect exchange: the first
        # wait (IRT), the longest wait (MRT) and the whole exchange (MRD), s.
        "timeout": (float, 2.0),
        "max_timeout": (float, 16.0),
        "max_duration": (float, 30.0),
        # After a timeout or a NAK the enforcer tries again, the wait
        # doubling from backoff_initial up to backoff_max seconds, for as
        # long as the session is open and still differs from its profile.
        "backoff_initial": (float, 5.0),
        "backoff_max": (float, 300.0),
        # Exchanges in flight per NAS: a silent NAS holds only its own lane.
        "lane_size": (int, 16),
        # A NAK saying the NAS cannot change the session (Unsupported
        # Attribute/Service, Administratively Prohibited ...) is followed by
        # a Disconnect-Request, so the next login gets the right profile.
        "disconnect_fallback": (bool, True),
        # Every open session is compared with its profile this often, s.
        "sweep_interval": (float, 60.0),
        # Prometheus metrics of the enforcer on this port; 0: none.
        "metrics_port": (int, 0),
    },
    # The balance ladder: what a suspension for debt does to the network.
    "policy": {
        # block: no session (Access-Reject, Disconnect); redirect: the
        # captive portal (vendor attributes), so the subscriber can pay.
        "suspend_mode": (str, "block"),
        # Speed in the captive portal, kbit/s; 0: the tariff's
        # negative-balance speed, else 1024.
        "redirect_rate_kbps": (int, 0),
        # The portal's address, for vendors that take a URL (Huawei).
        "redirect_url": (str, ""),
    },
    "traffic": {
        # Hours of traffic charging looked at again on every run: NetFlow
        # exported late within them is billed as an adjustment.
        "late_hours": (int, 48),
    },
    # Data lifecycle (aaa.archive, issue 19). Days count from a row's end
    # (a session's stop, a lease's end, a job's finish, a notice's creation);
    # 0: keep for ever.
    "archive": {
        # Closed sessions move to sessions_archive after this many days and
        # are deleted from it after sessions_keep_days.
        "sessions_hot_days": (int, 90),
        "sessions_keep_days": (int, 1095),
        # Closed IP leases likewise; never less than the collector's late
        # window (refused at load), or late flows would find no owner.
        "leases_hot_days": (int, 30),
        "leases_keep_days": (int, 1095),
        # Finished CoA/Disconnect jobs and their attempts are deleted.
        "coa_days": (int, 90),
        # Sent, delivered and failed notifications (with their attempts and
        # SMS parts) are deleted.
        "notifications_days": (int, 180),
        # Rows moved or deleted per transaction: bounds how long a batch
        # holds its row locks.
        "batch_rows": (int, 5000),
        # A run stops after this long and the next one goes on.
        "run_seconds": (int, 1800),
        # How often the scheduler runs the job.
        "interval_minutes": (int, 360),
    },
    "traffic_tiers": {
        # collector.tiers: a day's 5-minute rollups are summed into hourly
        # rows this many days after it (past the late-data window; every
        # reader but the day graph then reads hours), and its 5-minute rows
        # kept for the day graph until five_minute_days; hourly rows this
        # many months, then into the operator's days; daily rows this many
        # years (0: for ever).
        "five_minute_days": (int, 35),
        "hourly_after_days": (int, 3),
        "hourly_months": (int, 13),
        "daily_years": (int, 0),
        # PostgreSQL: daily partitions of the 5-minute tier made this many
        # days ahead.
        "partitions_ahead_days": (int, 7),
    },
    # Promised payment (обещанный платёж): the operator's limits.
    "promised": {
        "max_amount": (str, "500.00"),
        "term_days": (int, 5),
        "once_per_days": (int, 30),
        # Allowed only when the balance is below this.
        "allowed_below": (str, "100.00"),
        "fee": (str, "0.00"),
    },
    "freeze": {
        "min_days": (int, 7),
        "max_days": (int, 90),
        # Charged per frozen day instead of the tariff's fee ("0.00": none).
        "fee_per_day": (str, "0.00"),
    },
    "notify": {
        # Warn when the money left lasts fewer days than this.
        "days_left": (int, 3),
        # The language of notices to accounts that chose none (ru or en).
        "default_language": (str, "ru"),
        # SMS and Telegram wait out these hours in the operator's time zone
        # ("HH:MM-HH:MM", may wrap midnight; empty: none); e-mail and urgent
        # notices (a suspension, an urgent broadcast) go at any hour.
        "quiet_hours": (str, "22:00-09:00"),
        "max_attempts": (int, 5),
        # A failed try is retried after base x 2^(tries-1) seconds (capped at an hour).
        "retry_seconds": (int, 60),
        # How often the scheduler's delivery job runs.
        "deliver_seconds": (int, 30),
    },
    # SMS over SMPP 3.4 to the operator's SMSC (off: SMS are not sent).
    "sms": {
        "enabled": (bool, False),
        "host": (str, "127.0.0.1"),
        "port": (int, 2775),
        "system_id": (str, ""),
        "password": (str, ""),
        "system_type": (str, ""),
        # The sender name or number subscribers see.
        "source_addr": (str, "abonent"),
        # submit_sm a second at most (the SMSC's contract rate).
        "rate": (float, 50.0),
        # Seconds to wait for submit_sm_resp; after that the message is
        # "unknown" and never resent blindly (docs/notifications.md).
        "submit_timeout": (float, 10.0),
    },
    # Telegram through the Bot API (off: Telegram notices are not sent).
    "telegram": {
        "enabled": (bool, False),
        "token": (str, ""),
        # The bot's @username without the @: the cabinet's t.me link.
        "bot_username": (str, ""),
        # The Bot API's address up to the token; empty: Telegram's own.
        "base_url": (str, ""),
        # How long a linking code in the cabinet stays good.
        "link_minutes": (int, 30),
    },
    # Online top-ups, vouchers and the documents in the cabinet.
    "payments": {
        # The built-in test provider (a fake bank page at /testpay); off in
        # production. Its callbacks are signed with HMAC-SHA256 under the
        # secret; empty: derived from the cabinet's secret key.
        "testpay_enabled": (bool, False),
        "testpay_secret": (str, ""),
        "min_topup": (str, "10.00"),
        "max_topup": (str, "100000.00"),
        # Wrong voucher codes, as Flask-Limiter limits.
        "voucher_limits_account": (str, "5 per minute;20 per hour"),
        "voucher_limits_address": (str, "30 per minute;200 per hour"),
        # The seller on invoices and acts.
        "seller": (str, "abonent ISP"),
        # A payment nobody paid within this many minutes is marked expired
        # (the provider may still confirm it later: it is then credited).
        "pending_expiry_minutes": (int, 60),
    },
    # Online acquiring through YooKassa (rating/yookassa.py); on when the
    # shop id and the secret key are set.
    "yookassa": {
        "shop_id": (str, ""),
        # Never logged; better given as ABONENT_YOOKASSA_SECRET_KEY.
        "secret_key": (str, ""),
        # Empty: https://api.yookassa.ru/v3 (tests point it at a local fake).
        "api_url": (str, ""),
        # Where the provider sends the subscriber back: the cabinet's
        # /topup/back page as the browser reaches it; empty: built from
        # the request that started the payment.
        "return_url": (str, ""),
        # The receipt's VAT code (54-FZ): 1 no VAT, 2 0%, 3 10%, 4 20% ...
        "vat_code": (int, 1),
        # Notifications are accepted from these networks only (empty: from
        # any address; each is checked with the API anyway).
        "webhook_networks": (list, ["77.75.153.0/25", "77.75.156.11/32",
                                    "77.75.156.35/32", "77.75.154.128/25",
                                    "185.71.76.0/27", "185.71.77.0/27",
                                    "2a02:5180:0:1509::/64", "2a02:5180:0:2655::/64",
                                    "2a02:5180:0:1533::/64", "2a02:5180:0:2669::/64"]),
        # Autopayment: the amount and "days left below" a subscriber starts
        # from when turning it on in the cabinet.
        "autopay_amount": (str, "500.00"),
        "autopay_days": (int, 3),
        # Paid or expired payments are polled for this many days.
        "poll_days": (int, 7),
    },
    # The operator's look in the cabinet (config.settings.check_branding).
    "branding": {
        # The name in the top bar and the window title; empty: "Subscriber cabinet".
        "name": (str, ""),
        # A local image file (.svg, .png, .jpg, .webp), absolute or under
        # data_dir; the cabinet serves it itself at /brand/logo. Never a URL:
        # a page must not make a request to anyone else.
        "logo": (str, ""),
        # Links and buttons (#rrggbb, at least 4.5:1 against white); empty: ours.
        "accent_color": (str, ""),
        # The top bar's background (#rrggbb); its text is dark or white,
        # whichever reads better.
        "header_color": (str, ""),
        # One line at the foot of every page: the support phone, e-mail, hours.
        "contact": (str, ""),
    },
    # Bank transfers (rating.bank_statement): our settlement account
    # (расчётный счёт, 20 digits); a statement's incoming lines are those
    # paid to it. Empty: `abonent payment statement import` needs --our-account.
    "bank": {
        "account": (str, ""),
    },
    # Telephony (issue 17, rating.telephony): how a dialled number becomes
    # E.164 digits. "8 495 123-45-67" -> 74951234567; "810 44 20..." ->
    # 4420...; a 7-digit number -> country + local_area + it.
    "telephony": {
        "country_code": (str, "7"),
        # Dialled before a national number (8 in Russia, 0 in most of Europe).
        "national_prefix": (str, "8"),
        # Digits of a national number without the country code.
        "national_length": (int, 10),
        # Dialled before an international number ("00" is always accepted).
        "international_prefix": (str, "810"),
        # The area code a short local number is in, and its length.
        "local_area": (str, "495"),
        "local_length": (int, 7),
        # A new phone number's plan when `abonent phone add` names none.
        "default_plan": (str, ""),
    },
    "smtp": {
        "host": (str, "127.0.0.1"),
        "port": (int, 25),
        "sender": (str, "billing@localhost"),
    },
}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Mapping[str, Any]]
    source: str

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    @property
    def data_dir(self) -> Path:
        return Path(self.values[""]["data_dir"])

    @property
    def database_url(self) -> str:
        url = self.values["database"]["url"]
        if url:
            return url
        return f"sqlite:///{(self.data_dir / 'abonent.sqlite3').resolve()}"

    def section(self, name: str) -> Mapping[str, Any]:
        return self.values[name]


def _coerce(where: str, expected: type, value: Any) -> Any:
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"setting {where} must be true or false, not {value!r}")
    if expected is int:
        if isinstance(value, bool):
            raise SettingsError(f"setting {where} must be an integer, not {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"setting {where} must be an integer, not {value!r}") from None
    if expected is list:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SettingsError(f"setting {where} must be a list of strings, not {value!r}")
        return list(value)
    if expected is dict:
        if isinstance(value, str):
            pairs = [item.strip() for item in value.split(",") if item.strip()]
            if not all("=" in pair for pair in pairs):
                raise SettingsError(
                    f"setting {where} must be key=value pairs separated by commas, not {value!r}")
            value = dict(pair.split("=", 1) for pair in pairs)
            value = {k.strip(): v.strip() for k, v in value.items()}
        if not isinstance(value, dict):
            raise SettingsError(f"setting {where} must be a table, not {value!r}")
        out = {}
        for key, item in value.items():
            if isinstance(item, bool):
                raise SettingsError(f"setting {where}.{key} must be an integer, not {item!r}")
            try:
                out[str(key)] = int(item)
            except (TypeError, ValueError):
                raise SettingsError(
                    f"setting {where}.{key} must be an integer, not {item!r}") from None
        return out
    if expected is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"setting {where} must be a number, not {value!r}") from None
    if not isinstance(value, str):
        raise SettingsError(f"setting {where} must be a string, not {value!r}")
    return value


def _env_names() -> dict[str, tuple[str, str]]:
    names = {}
    for section, keys in SCHEMA.items():
        for key in keys:
            name = "ABONENT_" + (f"{section}_{key}" if section else key).upper()
            names[name] = (section, key)
    return names


def _network(where: str, text: str):
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise SettingsError(f"setting {where}: {text!r} is not an IP address or prefix") from None


def _check_collector(section: dict) -> None:
    """Exporter addresses and prefixes parse; rates are 1 or more; a forced
    rate names an exporter the allow-list lets in."""
    allowed = [_network("collector.exporters", text) for text in section["exporters"]]
    for text, rate in section["sampling"].items():
        network = _network("collector.sampling", text)
        if rate < 1:
            raise SettingsError(f"setting collector.sampling.{text} must be 1 or more, not {rate}")
        if allowed and not any(network.version == a.version and network.subnet_of(a)
                               for a in allowed):
            raise SettingsError(f"setting collector.sampling names {text}, which "
                                f"collector.exporters does not allow")
    if not 1 <= section["flush_seconds"] <= 3600:
        raise SettingsError("setting collector.flush_seconds must be 1..3600, "
                            f"not {section['flush_seconds']:g}")
    if not 0.1 <= section["stop_seconds"] <= 60:
        raise SettingsError("setting collector.stop_seconds must be 0.1..60, "
                            f"not {section['stop_seconds']:g}")
    if section["max_pending_rows"] < 10_000:
        raise SettingsError("setting collector.max_pending_rows must be 10000 or more, "
                            f"not {section['max_pending_rows']}")
    if not 0 <= section["failover_hold_seconds"] <= 600:
        raise SettingsError("setting collector.failover_hold_seconds must be 0..600, "
                            f"not {section['failover_hold_seconds']:g}")
    seconds = section["max_flow_seconds"]
    if not 0 < seconds <= 2**31:
        raise SettingsError(
            f"setting collector.max_flow_seconds must be 1..{2**31}, not {seconds}")


LOGO_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg", ".webp": "image/webp"}
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_BRAND_NAME = 60
MAX_CONTACT = 200


def luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _check_branding(section: dict) -> None:
    """Refused at load with the key named: a URL or an odd file for the
    logo, a colour that is no #rrggbb or an accent too pale to read."""
    for key, limit in (("name", MAX_BRAND_NAME), ("contact", MAX_CONTACT)):
        text = section[key]
        if len(text) > limit or not text.isprintable():
            raise SettingsError(f"setting branding.{key} must be one line of at most {limit} "
                                f"characters")
    logo = section["logo"]
    if logo:
        if "://" in logo or logo.startswith("//") or logo.lower().startswith(("data:", "www.")):
            raise SettingsError(f"setting branding.logo must be a local file (the cabinet "
                                f"serves it), not the address {logo!r}")
        if Path(logo).suffix.lower() not in LOGO_TYPES:
            raise SettingsError(f"setting branding.logo must be a "
                                f"{', '.join(sorted(LOGO_TYPES))} file, not {logo!r}")
    for key in ("accent_color", "header_color"):
        if section[key] and not _COLOR.match(section[key]):
            raise SettingsError(f"setting branding.{key} must be a colour like #0a66c2, "
                                f"not {section[key]!r}")
    accent = section["accent_color"]
    if accent and contrast(accent, "#ffffff") < 4.5:
        raise SettingsError(f"setting branding.accent_color {accent} is too pale: white "
                            f"text on it and it on white need a contrast of 4.5:1, it has "
                            f"{contrast(accent, '#ffffff'):.1f}:1")


# How far back the collector loads leases (collector.server.LEASE_WINDOW,
# checked equal by a test): flows exported this late still find the
# address's owner, so lease retention must not cut inside it.
COLLECTOR_LEASE_WINDOW_HOURS = 7 * 24


def _check_archive(archive: dict, traffic: dict) -> None:
    """Retention that would cut into data still needed is refused at load."""
    for key, value in archive.items():
        if value < 0:
            raise SettingsError(f"setting archive.{key} must be 0 or more, not {value}")
    for key in ("batch_rows", "run_seconds", "interval_minutes"):
        if archive[key] < 1:
            raise SettingsError(f"setting archive.{key} must be 1 or more, not {archive[key]}")
    if archive["batch_rows"] > 50_000:
        raise SettingsError(f"setting archive.batch_rows must be at most 50000 (a batch is one "
                            f"transaction holding its row locks), not {archive['batch_rows']}")
    for kind in ("sessions", "leases"):
        hot, keep = archive[f"{kind}_hot_days"], archive[f"{kind}_keep_days"]
        if keep and (not hot or keep < hot):
            raise SettingsError(f"setting archive.{kind}_keep_days ({keep}) must not be less than "
                                f"archive.{kind}_hot_days ({hot or 'never'}): rows would be "
                                f"deleted before they are archived")
    window_hours = max(COLLECTOR_LEASE_WINDOW_HOURS, traffic["late_hours"])
    for key in ("leases_hot_days", "leases_keep_days"):
        days = archive[key]
        if days and days * 24 < window_hours:
            raise SettingsError(
                f"setting archive.{key} ({days}) cuts into the late-data window: the collector "
                f"attributes flows up to {window_hours} hours old by the lease history "
                f"(traffic.late_hours, the collector's lease window); use "
                f"{-(-window_hours // 24)} days or more")
    hot = archive["sessions_hot_days"]
    if hot and (archive["coa_days"] == 0 or archive["coa_days"] > hot):
        raise SettingsError(
            f"setting archive.coa_days ({archive['coa_days'] or 'never'}) must be 1.."
            f"{hot} (archive.sessions_hot_days): a CoA job keeps its session in the hot "
            f"sessions table until the job is deleted")


def _check_enforcement(coa: dict, policy: dict) -> None:
    """The enforcer's timers and the ladder's mode, refused at load with the
    key named (every command reads them: RADIUS, cabinet, scheduler …)."""
    if policy["suspend_mode"] not in ("block", "redirect"):
        raise SettingsError(f"setting policy.suspend_mode must be block or redirect, "
                            f"not {policy['suspend_mode']!r}")
    if policy["redirect_rate_kbps"] < 0:
        raise SettingsError("setting policy.redirect_rate_kbps must be 0 or more")
    for key in ("timeout", "max_timeout", "max_duration", "backoff_initial", "backoff_max",
                "sweep_interval"):
        if not coa[key] > 0:
            raise SettingsError(f"setting coa.{key} must be more than 0 seconds, not {coa[key]}")
    if coa["backoff_max"] < coa["backoff_initial"]:
        raise SettingsError("setting coa.backoff_max must not be less than coa.backoff_initial")
    if coa["lane_size"] < 1:
        raise SettingsError(f"setting coa.lane_size must be 1 or more, not {coa['lane_size']}")
    if not 0 <= coa["metrics_port"] <= 65535:
        raise SettingsError("setting coa.metrics_port must be a TCP port (0: no metrics)")


# ABONENT_* names that are not settings but are read elsewhere: the config
# file, the CLI's actor, gunicorn's bind/workers (contrib/gunicorn.conf.py)
# and the test suite's switches.
OTHER_ENV = {"ABONENT_CONFIG", "ABONENT_ACTOR", "ABONENT_STRICT", "ABONENT_FUZZ_SECONDS",
             "ABONENT_CABINET_BIND", "ABONENT_CABINET_WORKERS", "ABONENT_CABINET_THREADS",
             "ABONENT_CABINET_LOGLEVEL"}
OTHER_ENV_PREFIXES = ("ABONENT_TEST_",)

PORTS = (("radius", "auth_port"), ("radius", "acct_port"), ("radius", "metrics_port"),
         ("cabinet", "port"), ("collector", "port"), ("coa", "metrics_port"), ("smtp", "port"))
# Whole numbers that must not be negative (0 is "off" or "derived" for most).
NON_NEGATIVE = (("radius", "interim_interval"), ("radius", "stale_after_intervals"),
                ("radius", "session_timeout"), ("radius", "workers"),
                ("radius", "duplicate_window"), ("radius", "stale_view_s"),
                ("radius", "voice_check_ttl_s"),
                ("collector", "workers"), ("cabinet", "trusted_proxies"),
                ("traffic", "late_hours"), ("traffic_tiers", "daily_years"),
                ("notify", "days_left"), ("promised", "term_days"),
                ("promised", "once_per_days"), ("freeze", "min_days"), ("freeze", "max_days"),
                ("telephony", "local_length"))
POSITIVE = (("radius", "batch_ms"), ("radius", "batch_max"), ("radius", "duplicate_cache_entries"),
            ("radius", "voice_call_timeout_s"),
            ("radius", "duplicate_cache_mb"), ("cabinet", "reset_token_minutes"),
            ("payments", "pending_expiry_minutes"), ("yookassa", "autopay_days"),
            ("yookassa", "poll_days"), ("telephony", "national_length"),
            ("traffic_tiers", "five_minute_days"), ("traffic_tiers", "hourly_after_days"),
            ("traffic_tiers", "hourly_months"),
            ("traffic_tiers", "partitions_ahead_days"))
AMOUNTS = (("promised", "max_amount"), ("promised", "allowed_below"), ("promised", "fee"),
           ("freeze", "fee_per_day"), ("payments", "min_topup"), ("payments", "max_topup"),
           ("yookassa", "autopay_amount"))


def _check_ranges(values: dict) -> None:
    """Numbers that make no sense are refused at load with the key named:
    a port of 70000, a negative interval, an amount that is no amount."""
    from decimal import Decimal
    for section, key in PORTS:
        port = values[section][key]
        low = 0 if key == "metrics_port" else 1
        if not low <= port <= 65535:
            raise SettingsError(f"setting {section}.{key} must be a port {low}..65535, not {port}")
    for section, key in NON_NEGATIVE:
        if values[section][key] < 0:
            raise SettingsError(f"setting {section}.{key} must be 0 or more, "
                                f"not {values[section][key]}")
    for section, key in POSITIVE:
        if values[section][key] < 1:
            raise SettingsError(f"setting {section}.{key} must be 1 or more, "
                                f"not {values[section][key]}")
    for section, key in AMOUNTS:
        text = values[section][key]
        if not re.match(r"^\d{1,10}(\.\d{1,2})?$", text.strip()) or Decimal(text) > 10 ** 9:
            raise SettingsError(f"setting {section}.{key} must be an amount like 100.00, "
                                f"not {text!r}")
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(values[""]["timezone"])
    except (KeyError, ValueError, OSError, ImportError):
        raise SettingsError(f"setting timezone must be a time zone like Europe/Moscow, "
                            f"not {values['']['timezone']!r}") from None


def load_settings(path: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (``path`` or ``$ABONENT_CONFIG``), then env overrides."""
    environ = os.environ if environ is None else environ
    values = {section: {key: default.copy() if isinstance(default, (list, dict)) else default
                        for key, (_, default) in keys.items()}
              for section, keys in SCHEMA.items()}
    path = path or environ.get("ABONENT_CONFIG")
    source = "defaults"
    if path:
        try:
            with open(path, "rb") as handle:
                document = tomllib.load(handle)
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"config file {path} is not valid TOML: {error}") from None
        source = str(path)
        for name, value in document.items():
            if isinstance(value, dict):
                if name not in SCHEMA or name == "":
                    raise SettingsError(f"unknown section [{name}] in {path}")
                for key, item in value.items():
                    if key not in SCHEMA[name]:
                        raise SettingsError(f"unknown setting {name}.{key} in {path}")
                    values[name][key] = _coerce(f"{name}.{key}", SCHEMA[name][key][0], item)
            else:
                if name not in SCHEMA[""]:
                    raise SettingsError(f"unknown setting {name} in {path}")
                values[""][name] = _coerce(name, SCHEMA[""][name][0], value)
    known = _env_names()
    for env_name in sorted(environ):
        if (env_name.startswith("ABONENT_") and env_name not in known
                and env_name not in OTHER_ENV and not env_name.startswith(OTHER_ENV_PREFIXES)):
            raise SettingsError(f"unknown environment variable {env_name}; settings are "
                                f"ABONENT_<SECTION>_<KEY>, e.g. ABONENT_DATABASE_URL")
    for env_name, (section, key) in known.items():
        if env_name in environ:
            values[section][key] = _coerce(env_name, SCHEMA[section][key][0], environ[env_name])
    _check_ranges(values)
    _check_collector(values["collector"])
    _check_enforcement(values["coa"], values["policy"])
    _check_archive(values["archive"], values["traffic"])
    _check_branding(values["branding"])
    url = values["database"]["url"]
    if url and not url.startswith(("sqlite", "postgresql")):
        raise SettingsError(
            f"setting database.url must be a sqlite:// or postgresql+psycopg:// URL, not {url!r}")
    return Settings(values=values, source=source)
