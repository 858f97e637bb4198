"""Checks of real responses against an OpenAPI 3.1 document, for tests/docs.

``check`` finds the response a document gives for an operation and status
code and validates a response body against its JSON schema, resolving the
document's ``$ref`` pointers.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.wrappers import Response

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOC_URI = "urn:convergence:openapi"


def schema_validator(spec: dict[str, Any], pointer: str) -> Draft202012Validator:
    """Return a validator for the schema at ``pointer`` in the document."""
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def escape(token: str) -> str:
    """Escape one JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def documented_response(
    spec: dict[str, Any], method: str, template: str, status: int
) -> tuple[dict[str, Any], str]:
    """Return the response object documented for ``status`` and its JSON pointer."""
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} returned {status}"
    response = responses[str(status)]
    pointer = f"/paths/{escape(template)}/{method.lower()}/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        name = pointer.rsplit("/", 1)[-1]
        response = spec["components"]["responses"][name]
    return response, pointer


def check(spec: dict[str, Any], method: str, template: str, response: Response) -> Any:
    """Assert that ``response`` is documented and matches; return its JSON body."""
    documented, pointer = documented_response(
        spec, method, template, response.status_code
    )
    body = json.loads(response.get_data())
    validator = schema_validator(
        spec, f"{pointer}/content/{escape('application/json')}/schema"
    )
    errors = [error.message for error in validator.iter_errors(body)]
    assert errors == [], f"{method} {template} {response.status_code}"
    for header in documented.get("headers", {}):
        assert header in response.headers
    return body
