"""WSGI entry point for gunicorn: ``gunicorn 'cabinet.wsgi:app'``.

Settings come from ``$ABONENT_CONFIG`` and ``ABONENT_*`` variables.
"""

from config.context import open_context
from cabinet.app import create_app

app = create_app(open_context())
