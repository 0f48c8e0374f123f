"""A WSGI app for the gunicorn worker test: sleeps ?ms=N, answers its pid."""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    milliseconds = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
    time.sleep(milliseconds / 1000)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
