"""The OpenAPI 3.0 document of what ``fnagent serve`` implements (served at /openapi.json).

It follows Fn's v2 API spec (the Swagger 2.0 document ``swagger_v2.yml`` of the fnproject/fn
repository) for apps, fns and triggers, and adds what is ours: invoke, triggers' gateway
(``/t/{app_name}/{trigger_source}``, every method), scale, a fn's call records and logs,
following a fn's logs, an app's secrets (write-only: no answer schema has a value), stats, ping,
version, health, metrics, this document and the page at /ui.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_ANNOTATIONS = {"type": "object", "additionalProperties": {}}
_STAMPS = {
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
}
_SHAPE = {"type": "string", "enum": ["GENERIC_X86", "GENERIC_ARM", "GENERIC_X86_ARM"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Invalid input",
        401: "Token missing or wrong",
        404: "Not found",
        409: "Already exists, or in use",
        413: "Body too large",
        429: "The fn's max-concurrency held the call until its deadline",
        500: "Server failure",
        502: "Function failed",
        503: "Server too busy",
        504: "Timed out",
    }
    return {str(code): _json(_ERROR, words[code]) for code in codes}


def _entity(kind: str, path_param: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{kind}"}
    param = [{"name": path_param, "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "get": {
            "operationId": f"Get{kind}",
            "parameters": param,
            "responses": {"200": _json(ref, kind), **_errors(401, 404)},
        },
        "put": {
            "operationId": f"Update{kind}",
            "parameters": param,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
            "responses": {"200": _json(ref, kind), **_errors(400, 401, 404, 409)},
        },
        "delete": {
            "operationId": f"Delete{kind}",
            "parameters": param,
            "responses": {"204": {"description": "Deleted"}, **_errors(401, 404)},
        },
    }


def _collection(kind: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{kind}"}
    page = [
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer"}},
        {"name": "name", "in": "query", "schema": {"type": "string"}},
    ]
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref}, "next_cursor": {"type": "string"}},
    }
    return {
        "get": {
            "operationId": f"List{kind}s",
            "parameters": page + filters,
            "responses": {"200": _json(listing, f"{kind}s"), **_errors(400, 401)},
        },
        "post": {
            "operationId": f"Create{kind}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
            "responses": {"200": _json(ref, kind), **_errors(400, 401, 404, 409)},
        },
    }


_TIMESTAMP_OR_NULL = {"type": "string", "format": "date-time", "nullable": True}
_MS_OR_NULL = {"type": "number", "nullable": True}
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "fn_id",
        "app_id",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "http_status",
        "error",
        "start",
        "detached",
        "attempts",
        "timings",
    ],
    "properties": {
        "id": {"type": "string"},
        "fn_id": {"type": "string"},
        "app_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "success", "error", "timeout", "cancelled"],
        },
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _TIMESTAMP_OR_NULL,
        "completed_at": _TIMESTAMP_OR_NULL,
        "http_status": {"type": "integer", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "start": {"type": "string", "enum": ["cold", "thawed", "hot"], "nullable": True},
        "detached": {"type": "boolean"},
        "attempts": {"type": "integer"},
        "timings": {
            "type": "object",
            "required": ["queued_ms", "start_ms", "exec_ms"],
            "properties": {
                "queued_ms": _MS_OR_NULL,
                "start_ms": _MS_OR_NULL,
                "exec_ms": _MS_OR_NULL,
            },
        },
    },
}


def _calls_paths(fn_id: list[dict[str, Any]]) -> dict[str, Any]:
    """``/v2/fns/{fn_id}/calls``, one call, and its log."""
    ref = {"$ref": "#/components/schemas/Call"}
    call_id = [
        *fn_id,
        {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    unix_s = {"type": "integer", "minimum": 0}
    filters = [
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer"}},
        {"name": "status", "in": "query", "schema": CALL_SCHEMA["properties"]["status"]},
        {"name": "from_time", "in": "query", "schema": unix_s},
        {"name": "to_time", "in": "query", "schema": unix_s},
    ]
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref}, "next_cursor": {"type": "string"}},
    }
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/v2/fns/{fn_id}/calls": {
            "get": {
                "operationId": "ListCalls",
                "parameters": fn_id + filters,
                "responses": {
                    "200": _json(listing, "Calls, newest first"),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/v2/fns/{fn_id}/calls/{call_id}": {
            "get": {
                "operationId": "GetCall",
                "parameters": call_id,
                "responses": {"200": _json(ref, "Call"), **_errors(401, 404)},
            }
        },
        "/v2/fns/{fn_id}/calls/{call_id}/log": {
            "get": {
                "operationId": "GetCallLog",
                "parameters": call_id,
                "responses": {
                    "200": {"description": "The call's stdout and stderr", "content": text},
                    **_errors(401, 404),
                },
            }
        },
    }


def _secrets() -> dict[str, dict[str, Any]]:
    """``/v2/apps/{app_id}/secrets`` and ``.../{name}``: values go in, never come out."""
    app_id = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}}
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    }
    secret = {"$ref": "#/components/schemas/Secret"}
    value = {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "string", "minLength": 1, "writeOnly": True}},
    }
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": secret},
            "next_cursor": {"type": "string"},
        },
    }
    page = [
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer"}},
    ]
    return {
        "/v2/apps/{app_id}/secrets": {
            "get": {
                "operationId": "ListSecrets",
                "parameters": [app_id, *page],
                "responses": {"200": _json(listing, "Names and times"), **_errors(400, 401, 404)},
            }
        },
        "/v2/apps/{app_id}/secrets/{name}": {
            "put": {
                "operationId": "PutSecret",
                "parameters": [app_id, name],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": value}},
                },
                "responses": {"200": _json(secret, "Secret"), **_errors(400, 401, 404)},
            },
            "delete": {
                "operationId": "DeleteSecret",
                "parameters": [app_id, name],
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 409)},
            },
        },
    }


def document() -> dict[str, Any]:
    app_id = {"name": "app_id", "in": "query", "required": True, "schema": {"type": "string"}}
    fn_id_query = {"name": "fn_id", "in": "query", "schema": {"type": "string"}}
    fn_id = [{"name": "fn_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    scale = {
        "type": "object",
        "properties": {
            "running": {"type": "integer", "readOnly": True},
            "frozen": {"type": "integer", "readOnly": True},
            "starting": {"type": "integer", "readOnly": True},
            "min_hot": {"type": "integer", "minimum": 0},
            "keepalive": {
                "type": "array",
                "readOnly": True,
                "description": "The keep-alive of each version of the fn the agent holds",
                "items": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "string"},
                        "serving": {
                            "type": "boolean",
                            "description": "The fn's calls go to this version",
                        },
                        "policy": {"type": "string", "enum": ["adaptive", "fixed"]},
                        "learned": {
                            "type": "boolean",
                            "description": "The latest plan came from the idle-time histogram",
                        },
                        "representative": {
                            "type": "boolean",
                            "description": "The histogram decides the next plan",
                        },
                        "idle_samples": {"type": "integer"},
                        "keepalive_s": {
                            "type": "number",
                            "description": "How long the latest plan keeps a container idle"
                            " (the fn's idle_timeout before any call ended)",
                        },
                        "unload_in_s": {
                            "type": "number",
                            "description": "When that plan removes it, from now (negative:"
                            " past); absent before any call ended",
                        },
                        "unload_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "prewarm": {
                "type": "object",
                "readOnly": True,
                "description": "The next planned pre-warm; absent when none",
                "properties": {
                    "version": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                    "in_s": {"type": "number"},
                    "keep_s": {
                        "type": "number",
                        "description": "How long the pre-warmed container is kept unless a"
                        " call takes it",
                    },
                },
            },
        },
    }
    counts = {
        "type": "object",
        "properties": {k: {"type": "integer"} for k in ("running", "frozen", "starting")},
    }
    stats = {
        "type": "object",
        "properties": {
            "time": {"type": "number", "description": "Unix seconds"},
            "containers": counts,
            "pool": {"type": "object", "additionalProperties": {"type": "integer"}},
            "fns": {"type": "object", "additionalProperties": counts},
            "calls": {"type": "integer"},
            "starts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "durations": {
                "type": "array",
                "description": "[upper bound in seconds or '+Inf', calls at or under it]",
                "items": {"type": "array"},
            },
            "invoke_requires_token": {"type": "boolean"},
        },
    }
    any_body = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    trigger_params = [
        {"name": "app_name", "in": "path", "required": True, "schema": {"type": "string"}},
        # The rest of the path, slashes included (the trigger's source without its first '/').
        {"name": "trigger_source", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    function_answer = {
        "200": {"description": "The function's answer (its Fn-Http-Status sets the status)"},
        "202": {
            "description": "Fn-Invoke-Type: detached: the call is queued (Fn-Call-Id, no body)"
        },
        **_errors(400, 401, 404, 413, 429, 502, 503, 504),
    }
    # Fn-Callback-Url (an http or https URL the result is POSTed to, detached calls only) is
    # described, not listed: a fuzzer would make the server POST to whatever it generates.
    invoke_type = {
        "name": "Fn-Invoke-Type",
        "in": "header",
        "required": False,
        "description": "sync (the default) or detached: answer 202 once the call is queued; "
        "with detached, an Fn-Callback-Url header gets the result POSTed when the call ends",
        "schema": {"type": "string", "enum": ["sync", "detached"]},
    }
    trigger_call = {
        method: {
            "operationId": f"Trigger{method.capitalize()}",
            "parameters": [*trigger_params, invoke_type],
            **({"requestBody": any_body} if method in ("post", "put", "patch") else {}),
            "responses": function_answer,
        }
        for method in ("get", "head", "post", "put", "patch", "delete", "options")
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fnagent",
            "version": "2.0.0",
            "description": "Fn's v2 API as served by fnagent, plus invoke and scale.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "stderr": {
                            "type": "string",
                            "description": "A container that failed to start: its last "
                            "stderr lines (at most 20 lines, 4 KiB)",
                        },
                    },
                },
                "App": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "readOnly": True},
                        "name": {"type": "string"},
                        "config": _STRING_MAP,
                        "annotations": _ANNOTATIONS,
                        "syslog_url": {
                            "type": "string",
                            "nullable": True,
                            "description": "Where the app's function output goes, as RFC 5424 "
                            "syslog: tcp://, udp:// or tls:// host[:port], comma-separated "
                            "(at most 8); an empty string removes it",
                            "example": "tcp://logs.example.com:514",
                        },
                        "shape": _SHAPE,
                        **_STAMPS,
                    },
                },
                "Fn": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "readOnly": True},
                        "name": {"type": "string"},
                        "app_id": {"type": "string"},
                        "image": {"type": "string"},
                        "memory": {"type": "integer"},
                        "timeout": {"type": "integer"},
                        "idle_timeout": {"type": "integer"},
                        "config": _STRING_MAP,
                        "annotations": _ANNOTATIONS,
                        "shape": _SHAPE,
                        **_STAMPS,
                    },
                },
                "Call": CALL_SCHEMA,
                "Secret": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, **_STAMPS},
                },
                "Trigger": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "readOnly": True},
                        "name": {"type": "string"},
                        "type": {"type": "string"},
                        "source": {"type": "string"},
                        "fn_id": {"type": "string"},
                        "app_id": {"type": "string"},
                        "annotations": _ANNOTATIONS,
                        **_STAMPS,
                    },
                },
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/": {
                "get": {
                    "operationId": "Ping",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Pong")},
                }
            },
            "/version": {
                "get": {
                    "operationId": "Version",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Version")},
                }
            },
            "/health": {
                "get": {
                    "operationId": "Health",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}, "The Docker daemon answers"),
                        "503": _json({"type": "object"}, "The Docker daemon is down"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "Metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "OpenAPI",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "This document")},
                }
            },
            "/v2/apps": _collection("App", []),
            "/v2/apps/{app_id}": _entity("App", "app_id"),
            **_secrets(),
            "/v2/fns": _collection("Fn", [app_id]),
            "/v2/fns/{fn_id}": _entity("Fn", "fn_id"),
            "/v2/fns/{fn_id}/scale": {
                "get": {
                    "operationId": "GetScale",
                    "parameters": fn_id,
                    "responses": {"200": _json(scale, "Containers"), **_errors(401, 404)},
                },
                "put": {
                    "operationId": "SetScale",
                    "parameters": fn_id,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": scale}},
                    },
                    "responses": {"200": _json(scale, "Containers"), **_errors(400, 401, 404)},
                },
            },
            "/v2/stats": {
                "get": {
                    "operationId": "GetStats",
                    "responses": {"200": _json(stats, "What the server is doing"), **_errors(401)},
                }
            },
            "/ui": {
                "get": {
                    "operationId": "Dashboard",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The page (a login form until it has the token)",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            **_calls_paths(fn_id),
            "/v2/fns/{fn_id}/logs": {
                "get": {
                    "operationId": "FollowLogs",
                    "description": (
                        "The fn's log lines as they come, as server-sent events: `event: line` "
                        'with `{"call_id", "stream", "line", "container"}` (call_id null: '
                        'between calls); `event: dropped` with `{"dropped": n}` where a slow '
                        "reader lost lines. Ends when the client goes away."
                    ),
                    "parameters": [
                        *fn_id,
                        {
                            "name": "follow",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": ["true"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Server-sent events, without end",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/v2/triggers": _collection("Trigger", [app_id, fn_id_query]),
            "/v2/triggers/{trigger_id}": _entity("Trigger", "trigger_id"),
            "/invoke/{fn_id}": {
                "post": {
                    "operationId": "Invoke",
                    "parameters": [*fn_id, invoke_type],
                    "requestBody": any_body,
                    "responses": function_answer,
                }
            },
            "/t/{app_name}/{trigger_source}": trigger_call,
            "/v2/run": {
                "post": {
                    "operationId": "Run",
                    "description": (
                        "`fnagent run` handed to this server: a one-off container on its "
                        "driver. Both bodies are frame streams (fnagent/client/runframes.py): "
                        "the run as JSON, then stdin; stdout, stderr, then the result."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The run's output frames and its result frame",
                            "content": {
                                "application/x-fnagent-run": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
        },
    }
