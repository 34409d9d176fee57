"""``GET /v2/stats`` (beyond Fn): what the server is doing now, in one answer, for a client that
polls it (the page at /ui does, each second): containers by state, in all and per fn, the
prefork pool, and the call counters since the server started."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fnagent.server.state import ServerState, check_token


async def stats(state: ServerState, request: Request) -> Response:
    """``{"time": unix seconds, "containers": {running, frozen, starting}, "pool": {free,
    in_use, starting} (empty without a pool), "fns": {fn_id: {running, frozen, starting,
    min_hot}} (fns with a container, a launch or a minimum only), "calls": n, "starts":
    {cold, thawed, hot}, "durations": [[bound_s, n], ...], "invoke_requires_token": bool}``.

    ``invoke_requires_token`` tells a client whether ``/invoke`` wants the token: when it
    does not, a client holding the management token must not send it, since a function gets
    every header an unchecked call carries."""
    check_token(state, request)
    gauges = state.metrics.state()
    fns = {
        fn_id: {**counts, "min_hot": state.agent.min_hot(fn_id)}
        for fn_id, counts in state.agent.containers_by_fn().items()
    }
    return JSONResponse(
        {
            "time": time.time(),
            "containers": gauges.get("containers", {"running": 0, "frozen": 0, "starting": 0}),
            "pool": gauges.get("pool", {}),
            "fns": fns,
            **state.metrics.totals(),
            "invoke_requires_token": bool(state.config.invoke_tokens()),
        }
    )
