"""deploy/nginx.conf: its rendering for given agents and port (scripts/cluster.py), and the
settings that must agree with the agents' own bounds."""

from __future__ import annotations

import inspect
import re

import pytest
import uvicorn

from fnagent.bounds import MAX_TIMEOUT_S
from fnagent.config import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_REQUEST_BYTES
from scripts.cluster import TEMPLATE, render_nginx_conf

CONF = TEMPLATE.read_text()
# uvicorn's idle keep-alive timeout, which `fnagent serve` keeps (fnagent/server/serve.py).
AGENT_KEEPALIVE_S = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default


def setting(name: str) -> str:
    (value,) = re.findall(rf"^\s*{name}\s+([^;]*);", CONF, re.MULTILINE)
    return str(value)


def seconds(text: str) -> int:
    assert text.endswith("s"), text
    return int(text[:-1])


def test_rendering_lists_the_agents_once_and_listens_where_asked() -> None:
    agents = ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"]
    rendered = render_nginx_conf(CONF, agents, "127.0.0.1:9000")
    servers = re.findall(r"^\s*server (\S+) max_fails=3 fail_timeout=10s;$", rendered, re.M)
    assert servers == agents
    assert re.findall(r"^\s*listen\s+([^;]*);", rendered, re.M) == ["127.0.0.1:9000"]
    assert "10.0.0.1" not in rendered
    # Everything else is the template's, line for line.
    kept = [line for line in CONF.splitlines() if "10.0.0.1" not in line and "listen" not in line]
    assert [line for line in rendered.splitlines() if line in kept] == kept


def test_rendering_refuses_a_template_of_another_shape_or_no_agents() -> None:
    with pytest.raises(ValueError, match="no agents"):
        render_nginx_conf(CONF, [], "127.0.0.1:9000")
    with pytest.raises(ValueError, match="upstream fnagent"):
        render_nginx_conf(CONF.replace("listen 8080;", "listen 80;"), ["a:1"], "127.0.0.1:9000")
    with pytest.raises(ValueError, match="upstream fnagent"):
        render_nginx_conf(CONF.replace("upstream fnagent", "upstream other"), ["a:1"], "x:1")


def test_calls_are_hashed_on_the_fn_and_on_the_trigger_and_retried_only_before_an_agent() -> None:
    assert setting("hash") == "$fnagent_key consistent"
    assert '"~^/invoke/([^/]+)/?$"              "fn:$1"' in CONF
    assert '"~^/t/(.+)$"                        "t:$1"' in CONF
    assert setting("proxy_next_upstream").split() == ["error", "timeout", "http_503"]
    assert "non_idempotent;" not in CONF  # a POST that reached an agent is never resent


def test_bounds_and_timeouts_agree_with_the_agents() -> None:
    assert setting("client_max_body_size") == f"{DEFAULT_MAX_REQUEST_BYTES // 2**20}m"
    count, size = setting("large_client_header_buffers").split()
    assert int(size.rstrip("k")) * 1024 >= DEFAULT_MAX_HEADER_BYTES
    # A call may run for Fn's longest timeout: the proxy waits longer.
    assert seconds(setting("proxy_read_timeout")) > MAX_TIMEOUT_S
    assert seconds(setting("proxy_send_timeout")) > MAX_TIMEOUT_S
    # Idle upstream connections close before the agent closes them.
    assert seconds(setting("keepalive_timeout")) < AGENT_KEEPALIVE_S
    assert (setting("proxy_http_version"), setting("proxy_set_header Connection")) == ("1.1", '""')
    assert setting("proxy_request_buffering") == setting("proxy_buffering") == "off"
