"""The operator's look: name, logo, colours and a contact line (settings
``[branding]``, checked by config.settings), in every page's layout.

Everything is served by the cabinet itself — the logo at /brand/logo, the
colours as /brand.css (the CSP allows no inline style) — so a page makes
no request to anyone else. Both are worked out once per process.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, abort, current_app

from config.settings import LOGO_TYPES, contrast

log = logging.getLogger(__name__)

DARK_TEXT, LIGHT_TEXT = "#1d2327", "#ffffff"
CACHE_SECONDS = 3600
MAX_LOGO_BYTES = 512 * 1024


@dataclass(frozen=True)
class Brand:
    name: str
    contact: str
    logo: Path | None
    logo_bytes: bytes
    css: str
    version: str  # changes with the colours and the logo: a cache buster

    @property
    def has_css(self) -> bool:
        return bool(self.css)


def _css(accent: str, header: str) -> str:
    rules = []
    if accent:
        rules.append(f":root {{ --accent: {accent}; }}")
    if header:
        text = max((DARK_TEXT, LIGHT_TEXT), key=lambda color: contrast(header, color))
        rules.append(f".topbar {{ background: {header}; }}\n"
                     f".topbar .brand, .topbar button.link {{ color: {text}; }}")
    return "\n".join(rules) + ("\n" if rules else "")


def load(settings) -> Brand:
    section = settings.section("branding")
    logo = None
    if section["logo"]:
        path = Path(section["logo"])
        if not path.is_absolute():
            path = settings.data_dir / path
        if path.is_file() and path.stat().st_size <= MAX_LOGO_BYTES:
            logo = path.resolve()
        else:
            # Not fatal: the cabinet must start; the name stands alone.
            log.warning("branding.logo_unusable path=%s (missing, or over %d bytes)", path,
                        MAX_LOGO_BYTES)
    css = _css(section["accent_color"], section["header_color"])
    # Read once: served from memory, a logo costs no file handle per request.
    logo_bytes = logo.read_bytes() if logo is not None else b""
    digest = hashlib.sha256(css.encode() + logo_bytes)
    return Brand(section["name"], section["contact"], logo, logo_bytes, css,
                 digest.hexdigest()[:12])


def init_app(app: Flask) -> None:
    brand = load(app.extensions["abonent"].settings)
    app.extensions["abonent_brand"] = brand
    app.jinja_env.globals["brand"] = brand

    @app.route("/brand.css")
    def brand_css():
        if not brand.css:
            abort(404)
        return Response(brand.css, mimetype="text/css",
                        headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"})

    @app.route("/brand/logo")
    def brand_logo():
        if brand.logo is None:
            abort(404)
        response = Response(brand.logo_bytes, mimetype=LOGO_TYPES[brand.logo.suffix.lower()],
                            headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"})
        if brand.logo.suffix.lower() == ".svg":
            # An SVG can carry script: shown as an image only, never run.
            response.headers["Content-Security-Policy"] = ("default-src 'none'; "
                                                           "style-src 'unsafe-inline'")
        return response


def current() -> Brand:
    return current_app.extensions["abonent_brand"]
