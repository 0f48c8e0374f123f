"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written as Python data, one operation per Flask endpoint (``OPERATIONS``),
so a test can hold the description and the app's url_map against each
other: every ``/api/v1`` route must be described here, with its path and
method, and nothing else may be. A blueprint that adds an API route adds
its operation here. ``document(app)`` describes the operations whose
endpoint the app has.
"""

from __future__ import annotations

import copy

from flask import Flask

VERSION = "1.0.0"
ACCOUNT_PATH = "/api/v1/accounts/{account_id}"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$",
         "description": "An amount in roubles as a decimal string with two places, "
                        "never a JSON number.", "examples": ["500.00"]}
TIME = {"type": "string", "format": "date-time",
        "description": "ISO 8601 in UTC, e.g. 2026-11-23T12:00:00Z"}


def _nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "properties": properties,
              "required": list(properties) if required is None else required}
    schema.update(extra)
    return schema


SCHEMAS = {
    "Error": _object({"error": {"type": "string", "description": "One sentence in English."}},
                     additionalProperties=False),
    "Money": MONEY,
    "Time": TIME,
    "Me": _object({
        "login": {"type": "string"},
        "role": {"type": "string", "enum": ["owner", "accountant", "viewer"],
                 "description": "What this caller may do: the token's scope, never more "
                                "than its user's role."},
        "account_id": {"type": "integer"},
        "token": _nullable(_object({"prefix": {"type": "string"}})),
    }),
    "Speed": _object({
        # rating.profile.desired_profile's name: the ladder's verdict, or
        # the kind of the speed option stacked on "normal".
        "profile": {"type": "string", "enum": ["normal", "turbo", "throttled", "suspended",
                                               "frozen", "closed", "blocked", "no-tariff"]},
        "rate_down_kbps": {"type": "integer"}, "rate_up_kbps": {"type": "integer"},
        "until": _nullable(_ref("Time")),
    }),
    "Tariff": _object({
        "name": {"type": "string"}, "fee": _ref("Money"),
        "fee_period": {"type": "string", "enum": ["daily", "monthly"]},
        "rate_down_kbps": {"type": "integer"}, "rate_up_kbps": {"type": "integer"},
        "negative_rate_kbps": {"type": "integer"},
    }),
    "Account": _object({
        "id": {"type": "integer"}, "number": {"type": "string"}, "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["person", "company"]},
        "state": {"type": "string", "enum": ["active", "frozen", "closed", "blocked"]},
        "profile": {"type": "string"}, "balance": _ref("Money"),
        "credit_limit": _ref("Money"), "tariff": _nullable(_ref("Tariff")),
        "speed": _nullable(_ref("Speed")),
        "runway": _nullable(_ref("Runway")),
    }),
    # How long the money lasts at the account's fees (rating.runout): null
    # for an account that is not active or has no tariff.
    "Runway": _object({
        "runs_out_on": {"type": ["string", "null"], "format": "date",
                        "description": "The day full service ends if nothing is paid."},
        "days_left": {"type": ["integer", "null"]},
        "needed": _ref("Money"),
        "monthly_cost": _ref("Money"),
        "no_fees": {"type": "boolean"},
        "next": {"type": "array", "items": _object({
            "day": {"type": "string", "format": "date"}, "profile": {"type": "string"}})},
    }),
    "NetworkSession": _object({
        "started_at": _ref("Time"), "stopped_at": _nullable(_ref("Time")),
        "framed_ip": {"type": ["string", "null"]},
        "octets_down": {"type": "integer", "description": "Sent to the subscriber."},
        "octets_up": {"type": "integer", "description": "Sent by the subscriber."},
        "terminate_cause": {"type": ["string", "null"]},
    }),
    "Sessions": _object({
        "month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
        "start": _ref("Time"), "end": _ref("Time"),
        "total_down": {"type": "integer"}, "total_up": {"type": "integer"},
        "sessions": {"type": "array", "items": _ref("NetworkSession")},
    }),
    "Entry": _object({
        "id": {"type": "integer"}, "created_at": _ref("Time"),
        "kind": {"type": "string", "enum": ["payment", "fee", "traffic", "option", "promised",
                                            "refund", "correction"]},
        "amount": _ref("Money"), "balance_after": _ref("Money"),
        "memo": {"type": ["string", "null"]},
    }),
    "Statement": _object({
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "start": _ref("Time"), "end": _ref("Time"),
        "opening": _ref("Money"), "closing": _ref("Money"),
        "credits": _ref("Money"), "debits": _ref("Money"),
        "entries": {"type": "array", "items": _ref("Entry"),
                    "description": "opening + the amounts = closing"},
    }),
    "Promise": _object({
        "amount": _ref("Money"), "granted_at": _ref("Time"), "due_at": _ref("Time"),
        "status": {"type": "string", "enum": ["open", "repaid", "expired"]},
    }),
    "PromisedStatus": _object({
        "available": {"type": "boolean"},
        "reason": {"type": ["string", "null"], "description": "Why not, when not available."},
        "max_amount": _ref("Money"), "term_days": {"type": "integer"}, "fee": _ref("Money"),
        "balance": _ref("Money"), "recent": {"type": "array", "items": _ref("Promise")},
    }),
    "PromisedRequest": _object({"amount": {
        "oneOf": [_ref("Money"), {"type": "integer"}],
        "description": "A decimal string (preferred) or a whole number."}},
        additionalProperties=False),
    "PromisedResult": {"allOf": [_ref("Promise"), _object({
        "balance": _ref("Money"),
        "created": {"type": "boolean",
                    "description": "false: today's promise existed, nothing more credited."},
    })]},
    "TurboRequest": _object({"request_id": {
        "type": "string", "minLength": 8, "maxLength": 64,
        "description": "New for each purchase; a retry with the same one buys once."}}),
    "TurboResult": _object({
        "option_id": {"type": "integer"}, "ends_at": _ref("Time"),
        "created": {"type": "boolean",
                    "description": "false: this request_id had bought it already."},
        "balance": _ref("Money"), "speed": _nullable(_ref("Speed")),
    }),
    "Contacts": _object({
        "email": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]},
        "phone_landline": {"type": ["string", "null"]},
    }),
    "ContactsUpdate": _object({
        "email": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]},
        "phone_landline": {"type": ["string", "null"]},
    }, required=[], additionalProperties=False,
        description="A field left out keeps its value; null or an empty string clears it."),
    "ContactsResult": {"allOf": [_ref("Contacts"), _object({
        "changed": {"type": "array", "items": {"type": "string"}}})]},
    "ServiceRequest": _object({
        "id": {"type": "integer"}, "topic": {"type": "string"}, "status": {"type": "string"},
        "text": {"type": "string"}, "answer": {"type": ["string", "null"]},
        "created_at": _ref("Time"), "updated_at": _ref("Time"),
        "messages": {"type": "array", "items": _ref("RequestMessage")},
    }),
    # One entry of a request's thread after its text: a message, a status
    # change (the status the request moved to), or both.
    "RequestMessage": _object({
        "by": {"type": "string", "enum": ["subscriber", "operator"]},
        "text": {"type": ["string", "null"]}, "status": {"type": ["string", "null"]},
        "created_at": _ref("Time"),
    }),
}

RESPONSES = {
    "E400": _json(_ref("Error"), "Bad input; nothing changed. Also a cookie-authenticated "
                                 "change without its X-CSRFToken header."),
    "E401": {**_json(_ref("Error"), "No login session and no valid bearer token."),
             "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                              "description": "For a refused bearer token."}}},
    "E403": _json(_ref("Error"), "The caller's role (or token scope) may only read."),
    "E404": _json(_ref("Error"), "No such account for this caller: another subscriber's "
                                 "account answers the same as one that does not exist."),
    "E429": {**_json(_ref("Error"), "Too many requests with this token."),
             "headers": {"Retry-After": {"schema": {"type": "integer"},
                                         "description": "Seconds to wait."}}},
}

PARAMETERS = {
    "account_id": {"name": "account_id", "in": "path", "required": True,
                   "schema": {"type": "integer"},
                   "description": "The caller's own account (see GET /api/v1/me)."},
}

ACCOUNT_PARAMETERS = [{"$ref": "#/components/parameters/account_id"}]
READ_ERRORS = _errors(401, 404, 429)
CHANGE_ERRORS = _errors(400, 401, 403, 404, 429)


def _body(schema_name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


# endpoint -> (method, path, operation)
OPERATIONS: dict[str, tuple[str, str, dict]] = {
    "api.openapi": ("get", "/api/v1/openapi.json", {
        "operationId": "openapi", "summary": "This description", "security": [],
        "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }),
    "api.me": ("get", "/api/v1/me", {
        "operationId": "me", "summary": "Who the caller is and which account is theirs",
        "responses": {"200": _json(_ref("Me"), "The caller."), **_errors(401, 429)},
    }),
    "api.account": ("get", ACCOUNT_PATH, {
        "operationId": "getAccount", "summary": "Overview: balance, tariff, speed now",
        "parameters": ACCOUNT_PARAMETERS,
        "responses": {"200": _json(_ref("Account"), "The account."), **READ_ERRORS},
    }),
    "api.sessions": ("get", ACCOUNT_PATH + "/sessions", {
        "operationId": "getSessions", "summary": "Network sessions of one month",
        "parameters": ACCOUNT_PARAMETERS + [{
            "name": "month", "in": "query", "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
            "description": "YYYY-MM in the operator's time zone; the current month if left out."}],
        "responses": {"200": _json(_ref("Sessions"), "Sessions that overlap the month."),
                      **_errors(400), **READ_ERRORS},
    }),
    "api.payments": ("get", ACCOUNT_PATH + "/payments", {
        "operationId": "getPayments", "summary": "Money flow (statement) over a period",
        "parameters": ACCOUNT_PARAMETERS + [
            {"name": "from", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date"},
             "description": "First local day; the 1st of this month if left out."},
            {"name": "to", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date"},
             "description": "Last local day, inclusive; today if left out. At most 400 days."}],
        "responses": {"200": _json(_ref("Statement"), "The statement."), **_errors(400),
                      **READ_ERRORS},
    }),
    "api.promised_status": ("get", ACCOUNT_PATH + "/promised", {
        "operationId": "getPromised", "summary": "Whether a promised payment can be taken now",
        "parameters": ACCOUNT_PARAMETERS,
        "responses": {"200": _json(_ref("PromisedStatus"), "Rules and recent promises."),
                      **READ_ERRORS},
    }),
    "api.take_promised": ("post", ACCOUNT_PATH + "/promised", {
        "operationId": "takePromised", "summary": "Take a promised payment",
        "description": "Once a day at most: a repeat the same day credits nothing more "
                       "and answers 200 with created=false.",
        "parameters": ACCOUNT_PARAMETERS, "requestBody": _body("PromisedRequest"),
        "responses": {"201": _json(_ref("PromisedResult"), "Credited."),
                      "200": _json(_ref("PromisedResult"), "Already taken today."),
                      **CHANGE_ERRORS},
    }),
    "api.buy_turbo": ("post", ACCOUNT_PATH + "/turbo", {
        "operationId": "buyTurbo", "summary": "Buy a turbo (faster speed for a time)",
        "description": "A change of the service: an owner's (or an owner's token); an "
                       "accountant or a viewer gets 403.",
        "parameters": ACCOUNT_PARAMETERS, "requestBody": _body("TurboRequest"),
        "responses": {"201": _json(_ref("TurboResult"), "Bought."),
                      "200": _json(_ref("TurboResult"), "This request_id bought it already."),
                      **CHANGE_ERRORS},
    }),
    "api.contacts": ("get", ACCOUNT_PATH + "/contacts", {
        "operationId": "getContacts", "summary": "The account's contacts",
        "parameters": ACCOUNT_PARAMETERS,
        "responses": {"200": _json(_ref("Contacts"), "The contacts."), **READ_ERRORS},
    }),
    "api.put_contacts": ("put", ACCOUNT_PATH + "/contacts", {
        "operationId": "putContacts", "summary": "Change the account's contacts",
        "parameters": ACCOUNT_PARAMETERS, "requestBody": _body("ContactsUpdate"),
        "responses": {"200": _json(_ref("ContactsResult"), "Saved."), **CHANGE_ERRORS},
    }),
    "selfservice.api_requests": ("get", ACCOUNT_PATH + "/requests", {
        "operationId": "getRequests", "summary": "The account's service requests",
        "parameters": ACCOUNT_PARAMETERS,
        "responses": {"200": _json({"type": "array", "items": _ref("ServiceRequest")},
                                   "Newest first."), **READ_ERRORS},
    }),
}

DESCRIPTION = """\
The subscriber cabinet's JSON API. Authenticate with a personal API token,
made on the cabinet's "API tokens" page, in the header
`Authorization: Bearer <token>`; or, from a logged-in browser, with the
session cookie, and then every change also needs the page's CSRF token in
an `X-CSRFToken` header.

Errors are `{"error": "..."}`. Money is a decimal string with two places;
times are ISO 8601 in UTC. A token of a viewer (or a read-only token) may
read and gets 403 on every change. Requests with a token are rate-limited
per token (429 with Retry-After).
"""


def document(app: Flask | None = None) -> dict:
    """The description, of the operations the app has (all of them without an app)."""
    paths: dict[str, dict] = {}
    for endpoint, (method, path, operation) in OPERATIONS.items():
        if app is not None and endpoint not in app.view_functions:
            continue
        paths.setdefault(path, {})[method] = copy.deepcopy(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "abonent subscriber cabinet API", "version": VERSION,
                 "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A personal API token (abt_…)."},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "abonent_session",
                           "description": "The cabinet's login session; changes also need "
                                          "the X-CSRFToken header."},
            },
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": copy.deepcopy(RESPONSES),
            "parameters": copy.deepcopy(PARAMETERS),
        },
    }
