"""The OpenAPI document covers the management API and all three serving families, and is valid."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def test_schema_is_valid_openapi_and_covers_every_family(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = json.loads(response.content)
    validate(document)
    paths = document["paths"]
    for path in ("/api/2.0/gateway/routes/", "/api/2.0/gateway/routes/{name}", "/api/2.0/endpoints/",
                 "/api/2.0/endpoints/{name}", "/gateway/{name}/invocations", "/endpoints/{name}/invocations",
                 "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health"):
        assert path in paths, path
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionBody"}
    assert "temperature" in document["components"]["schemas"]["ChatCompletionBody"]["properties"]
    assert set(chat["responses"]) >= {"200", "400", "401", "403", "404", "502", "504"}
    assert document["components"]["securitySchemes"]["gatewayKey"]["scheme"] == "bearer"


def test_swagger_ui_renders_without_a_cdn(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower()
