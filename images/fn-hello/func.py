"""fn-hello: answers ``Hello, <name>!`` through Fn's Python FDK (http-stream format).

The name is the request body's ``{"name": ...}`` when the body is a JSON object, the body
itself when it is a JSON string or plain text, and ``World`` when that leaves nothing.
"""

import io
import json

from fdk import context, response


def name_of(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text or "World"
    if isinstance(parsed, dict):
        return str(parsed.get("name") or "World")
    if isinstance(parsed, str):
        return parsed or "World"
    return text or "World"


def handler(ctx: context.InvokeContext, data: io.BytesIO = None) -> response.Response:
    body = data.getvalue() if data is not None else b""
    return response.Response(
        ctx,
        response_data=f"Hello, {name_of(body)}!",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
