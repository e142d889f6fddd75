from __future__ import annotations

from rest_framework.test import APIClient


def test_the_schema_and_docs_need_a_signed_in_user(anon_api: APIClient) -> None:
    assert anon_api.get("/api/schema/").status_code == 401
    assert anon_api.get("/api/docs/").status_code == 401


def test_the_docs_page_serves_swagger_ui_from_loupe_itself_not_a_cdn(api: APIClient) -> None:
    response = api.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in page
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page
    assert api.get("/api/schema/").status_code == 200


def _query_parameters(api: APIClient, path: str) -> set[str]:
    schema = api.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"][path]["get"]
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}


def test_the_schema_names_the_query_parameters_each_endpoint_reads(api: APIClient) -> None:
    assert _query_parameters(api, "/api/v1/evaluations/{id}/double-check/") == {
        "limit",
        "offset",
        "status",
        "kind",
    }
    assert _query_parameters(api, "/api/v1/images/{id}/history/") == set()
    assert {"cursor", "page_size", "model"} <= _query_parameters(api, "/api/v1/evaluations/")
    assert {"cursor", "page_size", "status", "label_class"} <= _query_parameters(
        api, "/api/v1/images/"
    )
