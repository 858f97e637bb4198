"""A function that returns one fixed JSON body for every request.

It is the HTTP floor for the verification benchmark: functions-framework,
gunicorn and Flask on the same port setup, with no work behind them. The body
has the shape and about the size of a successful ``GET /verify`` response.
"""

from __future__ import annotations

import json

import flask
import functions_framework

_BODY = json.dumps(
    {
        "valid": True,
        "tenant_id": "tenant_0000",
        "api_key_id": "key_00000000000000000000000000000000",
        "user_id": None,
        "scopes": ["admin", "api"],
    }
)


@functions_framework.http
def constant(request: flask.Request) -> flask.Response:
    return flask.Response(_BODY, mimetype="application/json")
