"""Which language a page is in: the subscriber's choice, else the browser's."""

from __future__ import annotations

from flask import current_app, request, session

# code -> the language's own name, shown in the switch.
LOCALES = {"ru": "Русский", "en": "English"}


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LOCALES:
        return chosen
    best = request.accept_languages.best_match(list(LOCALES)) if request else None
    return best or current_app.config["BABEL_DEFAULT_LOCALE"]
