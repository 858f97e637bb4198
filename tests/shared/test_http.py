import io
import json
import logging
from typing import Any

import flask
import pytest
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from shared.http import (
    HttpError,
    Router,
    client_info,
    error_response,
    json_response,
    presented_credential,
    read_json,
)

ALLOWED_ORIGIN = "https://console.example"
MAX_BYTES = 1024


# presented_credential


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer k1"}, "k1"),
        ({"Authorization": "bearer k1"}, "k1"),
        ({"Authorization": "BEARER k1"}, "k1"),
        ({"Authorization": "Bearer    k1"}, "k1"),
        ({"Authorization": "Bearer\tk1"}, "k1"),
        ({"Authorization": "  Bearer k1  "}, "k1"),
        ({"authorization": "Bearer k1"}, "k1"),
        ({"X-API-Key": "k2"}, "k2"),
        ({"x-api-key": "k2"}, "k2"),
        ({"X-Api-Key": "  k2\t"}, "k2"),
        ({"Authorization": "Bearer k1", "X-API-Key": "k2"}, "k1"),
        ({"Authorization": ""}, ""),
        ({"Authorization": "Bearer"}, ""),
        ({"Authorization": "Bearer k1 k2"}, ""),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, ""),
        ({"Authorization": "Token k1"}, ""),
        ({"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": "k2"}, "k2"),
        ({"X-API-Key": ""}, ""),
        ({}, None),
        ({"Cookie": "k1"}, None),
    ],
)
def test_presented_credential(headers: dict[str, str], expected: str | None) -> None:
    assert presented_credential(Headers(headers)) == expected


@pytest.mark.parametrize(
    "headers",
    [{"authorization": "bearer k1"}, {"x-api-key": "k1"}],
)
def test_presented_credential_plain_mapping(headers: dict[str, str]) -> None:
    assert presented_credential(headers) == "k1"


def test_presented_credential_keeps_key_case() -> None:
    assert presented_credential(Headers({"X-API-Key": "AbC"})) == "AbC"


# read_json


def _request(
    data: bytes | str = b"", content_type: str | None = "application/json"
) -> flask.Request:
    builder = EnvironBuilder(method="POST", data=data, content_type=content_type)
    return flask.Request(builder.get_environ())


def _streamed_request(data: bytes) -> flask.Request:
    """A request without Content-Length, as a chunked upload arrives."""
    environ = EnvironBuilder(
        method="POST", content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["wsgi.input_terminated"] = True
    return flask.Request(environ)


def test_read_json_object() -> None:
    assert read_json(_request(b'{"name": "ci"}'), MAX_BYTES) == {"name": "ci"}


def test_read_json_empty_body_is_empty_object() -> None:
    assert read_json(_request(b""), MAX_BYTES) == {}


def test_read_json_whitespace_body_is_empty_object() -> None:
    assert read_json(_request(b"  \n", content_type=None), MAX_BYTES) == {}


def test_read_json_content_type_with_charset() -> None:
    request = _request(b"{}", content_type="application/json; charset=utf-8")

    assert read_json(request, MAX_BYTES) == {}


def test_read_json_at_limit_accepted() -> None:
    body = json.dumps({"name": "x" * (MAX_BYTES - 12)}).encode()
    assert len(body) == MAX_BYTES

    assert read_json(_request(body), MAX_BYTES)["name"] == "x" * (MAX_BYTES - 12)


def test_read_json_over_content_length_limit() -> None:
    with pytest.raises(HttpError) as excinfo:
        read_json(_request(b"{" + b" " * MAX_BYTES + b"}"), MAX_BYTES)

    assert excinfo.value.status == 413
    assert str(MAX_BYTES) in excinfo.value.message


def test_read_json_over_streamed_limit() -> None:
    request = _streamed_request(b"{" + b" " * MAX_BYTES * 4 + b"}")

    with pytest.raises(HttpError) as excinfo:
        read_json(request, MAX_BYTES)

    assert excinfo.value.status == 413


def test_read_json_streamed_within_limit() -> None:
    assert read_json(_streamed_request(b'{"a": 1}'), MAX_BYTES) == {"a": 1}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None]
)
def test_read_json_wrong_content_type(content_type: str | None) -> None:
    with pytest.raises(HttpError) as excinfo:
        read_json(_request(b'{"a": 1}', content_type=content_type), MAX_BYTES)

    assert excinfo.value.status == 415
    assert "Content-Type: application/json" in excinfo.value.message


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_read_json_non_object(body: bytes) -> None:
    with pytest.raises(HttpError) as excinfo:
        read_json(_request(body), MAX_BYTES)

    assert excinfo.value.status == 400
    assert excinfo.value.message == "the body must be a JSON object"


@pytest.mark.parametrize(
    "body", [b"{", b"{'a': 1}", b"\xff\xfe{}", b'{"a": secret-value}']
)
def test_read_json_invalid(body: bytes) -> None:
    with pytest.raises(HttpError) as excinfo:
        read_json(_request(body), MAX_BYTES)

    assert excinfo.value.status == 400
    assert excinfo.value.message == "the body is not valid JSON"


# Responses


def test_json_response_security_headers() -> None:
    response = json_response({"ok": True})

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.mimetype == "application/json"


def test_error_response_body() -> None:
    response = error_response(HttpError(400, "invalid_field", "name is too long"))

    assert response.status_code == 400
    assert response.get_json() == {
        "error": {"code": "invalid_field", "message": "name is too long"}
    }


def test_error_response_401_challenges() -> None:
    response = error_response(HttpError(401, "unauthenticated", "send a key"))

    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_client_info_last_forwarded_hop() -> None:
    builder = EnvironBuilder(
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "User-Agent": "cli/1"}
    )

    ip, agent = client_info(flask.Request(builder.get_environ()))

    assert ip == "203.0.113.7"
    assert agent == "cli/1"


def test_client_info_skips_trusted_proxies() -> None:
    builder = EnvironBuilder(
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 10.0.0.1"}
    )

    ip, _ = client_info(flask.Request(builder.get_environ()), trusted_proxies=2)

    assert ip == "203.0.113.7"


@pytest.mark.parametrize("trusted_proxies", [0, 3])
def test_client_info_falls_back_to_peer(trusted_proxies: int) -> None:
    builder = EnvironBuilder(
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )

    ip, _ = client_info(flask.Request(builder.get_environ()), trusted_proxies)

    assert ip == "127.0.0.1"


def test_client_info_truncates() -> None:
    builder = EnvironBuilder(
        headers={"X-Forwarded-For": "1" * 100, "User-Agent": "a" * 1000}
    )

    ip, agent = client_info(flask.Request(builder.get_environ()))

    assert ip is not None and len(ip) == 64
    assert agent is not None and len(agent) == 512


# Router


def _get_item(request: flask.Request, item_id: str) -> flask.Response:
    return json_response({"item_id": item_id})


def _list_items(request: flask.Request) -> flask.Response:
    return json_response({"items": []})


def _create_item(request: flask.Request) -> flask.Response:
    return json_response(read_json(request, MAX_BYTES), 201)


def _crash(request: flask.Request) -> flask.Response:
    raise RuntimeError("database password is hunter2")


def _teapot(request: flask.Request) -> flask.Response:
    raise HttpError(418, "teapot", "short and stout")


@pytest.fixture
def client() -> Any:
    router = Router([ALLOWED_ORIGIN])
    router.add("GET", "/items", _list_items)
    router.add("POST", "/items", _create_item)
    router.add("GET", "/items/{item_id}", _get_item)
    router.add("GET", "/crash", _crash)
    router.add("GET", "/teapot", _teapot)
    app = flask.Flask(__name__)
    methods = ["GET", "POST", "DELETE", "OPTIONS", "PUT"]

    # Mounted like functions-framework mounts an HTTP function.
    def dispatch(path: str) -> flask.Response:
        return router.dispatch(flask.request)

    app.add_url_rule("/", defaults={"path": ""}, view_func=dispatch, methods=methods)
    app.add_url_rule("/<path:path>", view_func=dispatch, methods=methods)
    return app.test_client()


def test_router_calls_handler(client: Any) -> None:
    assert client.get("/items").get_json() == {"items": []}


def test_router_trailing_slash(client: Any) -> None:
    assert client.get("/items/").status_code == 200


def test_router_passes_path_parameter(client: Any) -> None:
    assert client.get("/items/key_123").get_json() == {"item_id": "key_123"}


def test_router_picks_method(client: Any) -> None:
    response = client.post("/items", json={"name": "x"})

    assert response.status_code == 201


@pytest.mark.parametrize("path", ["/missing", "/items/a.b", "/items/a/b", "/"])
def test_router_unknown_path_404(client: Any, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert response.headers["Cache-Control"] == "no-store"


def test_router_wrong_method_405(client: Any) -> None:
    response = client.delete("/items")

    assert response.status_code == 405
    assert response.get_json()["error"]["message"] == "use one of: GET, POST"


def test_router_handler_http_error(client: Any) -> None:
    response = client.get("/teapot")

    assert response.status_code == 418
    assert response.get_json()["error"]["code"] == "teapot"


def test_router_exception_becomes_500(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shared.http"):
        response = client.get("/crash")

    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal", "message": "internal error; retry later"}
    }
    assert b"hunter2" not in response.get_data()
    assert len(caplog.records) == 1
    assert "hunter2" not in caplog.records[0].getMessage()


def test_preflight_allowed_origin(client: Any) -> None:
    response = client.options(
        "/items",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": ALLOWED_ORIGIN + ".evil.example"},
        {"Origin": "null"},
        {},
    ],
    ids=["other", "suffix", "null", "none"],
)
def test_preflight_denied_origin(client: Any, headers: dict[str, str]) -> None:
    response = client.options("/items", headers=headers)

    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origin_gets_acao(client: Any) -> None:
    response = client.get("/items", headers={"Origin": ALLOWED_ORIGIN})

    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_allowed_origin_gets_acao_on_error(client: Any) -> None:
    response = client.get("/missing", headers={"Origin": ALLOWED_ORIGIN})

    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_other_origin_gets_no_acao(client: Any) -> None:
    response = client.get("/items", headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_gets_no_acao(client: Any) -> None:
    assert "Access-Control-Allow-Origin" not in client.get("/items").headers
