"""/api/v1/openapi.json is a valid OpenAPI 3.1 document and describes
exactly the /api/v1 routes the app has."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import pytest

from cabinet.openapi import OPERATIONS, document
from tests.integration.cabinet_helpers import app, cabinet_ctx, client  # noqa: F401 (fixtures)

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _openapi_path(rule: str) -> str:
    """Flask's /accounts/<int:account_id> is OpenAPI's /accounts/{account_id}."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _routes(app) -> set[tuple[str, str, str]]:
    return {(_openapi_path(rule.rule), method.lower(), rule.endpoint)
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
            for method in rule.methods - IGNORED_METHODS}


def _described(spec) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}


def test_the_served_document_is_valid_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    spec = response.json
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}


def test_every_api_route_is_described_and_nothing_else(app):
    spec = document(app)
    routes = _routes(app)
    assert len(routes) >= 10
    undescribed = {(path, method) for path, method, _endpoint in routes} - _described(spec)
    assert not undescribed, f"add these to cabinet/openapi.py OPERATIONS: {sorted(undescribed)}"
    phantom = _described(spec) - {(path, method) for path, method, _endpoint in routes}
    assert not phantom, f"described but not routed: {sorted(phantom)}"
    # Each operation is filed under the endpoint that serves it.
    for path, method, endpoint in routes:
        assert OPERATIONS[endpoint][:2] == (method, path), endpoint


def test_every_operation_documents_its_parameters_and_errors(app):
    spec = document(app)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            declared = {p.get("name") or p["$ref"].rsplit("/", 1)[1]
                        for p in operation.get("parameters", [])}
            for name in re.findall(r"{([a-z_]+)}", path):
                assert name in declared, (path, method, name)
            if operation.get("security") == []:
                continue  # public
            assert "401" in operation["responses"], (path, method)
            if "{account_id}" in path:
                assert "404" in operation["responses"], (path, method)
            if method != "get":
                assert {"400", "403"} <= set(operation["responses"]), (path, method)
                assert operation["requestBody"]["content"]["application/json"]


def test_the_validator_can_fail():
    """A document that breaks the rules is refused: the check is real."""
    broken = document()
    broken["components"]["parameters"]["account_id"]["in"] = "body"
    with pytest.raises(OpenAPIValidationError):
        validate(broken)
