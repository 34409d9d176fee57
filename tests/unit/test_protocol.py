"""Fn's http-stream contract written once: ``serve`` (the agent) and ``fnagent run`` give a
container the same environment and send it the same headers, in one Fn-Deadline format."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import IOFS_MOUNT
from drivers.docker.config import DockerConfig
from fnagent.agent import protocol
from fnagent.agent.oneoff import Format, RunRequest, run_environment, run_headers
from fnagent.models import Call, CallRequest, Fn

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONTRACT = ("FN_FORMAT", "FN_LISTENER", "FN_MEMORY", "FN_TMPSIZE", "FN_TYPE")


def fn() -> Fn:
    return Fn(
        id="fn1",
        name="hello",
        app_id="app1",
        app_name="myapp",
        image="fn/hello",
        memory_mb=128,
        app_config={"A": "app", "B": "app"},
        config={"B": "fn", "FN_FORMAT": "cold"},
    )


def run_request() -> RunRequest:
    return RunRequest(
        image="fn/hello",
        format=Format.HTTP_STREAM,
        memory_bytes=128 * protocol.MIB,
        env={"B": "fn"},
        headers={"X-In": "1", "Fn-Deadline": "forged"},
    )


def test_the_deadline_is_rfc3339_with_milliseconds_in_utc() -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert protocol.deadline_header(1.5, now) == "2024-05-06T07:08:10.623Z"
    assert RFC3339_MS_UTC.match(protocol.deadline_header(30))


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.floats(0, 3600),
)
def test_the_deadline_is_the_datetime_arithmetics_to_the_millisecond(
    now: datetime, remaining_s: float
) -> None:
    """Made from Unix time for speed: the same text as datetime's arithmetic gives, but for
    float rounding at a millisecond's edge (within 1 ms)."""
    expected = (now + timedelta(seconds=remaining_s)).isoformat(timespec="milliseconds")
    made = protocol.deadline_header(remaining_s, now)
    assert made.endswith("Z") and RFC3339_MS_UTC.match(made)
    gap = datetime.fromisoformat(made[:-1] + "+00:00") - datetime.fromisoformat(expected)
    assert abs(gap) <= timedelta(milliseconds=1)


def test_serve_and_run_give_the_container_the_same_contract_env() -> None:
    served = protocol.fn_environment(fn(), protocol.listener_address(IOFS_MOUNT))
    ran = run_environment(run_request(), IOFS_MOUNT)
    assert {k: served[k] for k in CONTRACT} == {k: ran[k] for k in CONTRACT}
    assert served["FN_LISTENER"] == "unix:/tmp/iofs/lsnr.sock"
    assert served["FN_FORMAT"] == "http-stream"  # config never overrides the contract
    assert served["B"] == ran["B"] == "fn" and served["A"] == "app"
    assert (served["FN_FN_ID"], served["FN_APP_NAME"]) == ("fn1", "myapp")


def test_the_socket_mount_is_one_setting() -> None:
    assert DockerConfig(instance_id="t").iofs_mount == IOFS_MOUNT


def test_serve_and_run_send_the_same_headers() -> None:
    call = Call(
        fn=fn(),
        id="call1",
        request=CallRequest(
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("X-In", "1"),
                ("fn-deadline", "forged"),
            ]
        ),
    )
    served = protocol.request_headers(call)
    ran = run_headers(run_request(), "call1", remaining_s=30)
    for headers in (served, ran):
        names = [name for name, _ in headers]
        assert names == ["Content-Type", "X-In", "Fn-Call-Id", "Fn-Deadline"]
        values = dict(headers)
        assert values["Fn-Call-Id"] == "call1"
        assert RFC3339_MS_UTC.match(values["Fn-Deadline"]), values["Fn-Deadline"]


def test_the_container_status_picks_the_status_table_error() -> None:
    assert protocol.status_error(200) is None
    assert [protocol.status_error(s).status for s in (502, 504, 500, 201)] == [  # type: ignore[union-attr]
        502,
        504,
        502,
        502,
    ]


def test_a_hot_container_is_told_to_frame_its_calls_output() -> None:
    forged = Fn(
        id="fn1",
        name="hello",
        app_id="app1",
        app_name="myapp",
        image="fn/hello",
        config={"FN_LOGFRAME_NAME": "mine", "FN_LOGFRAME_HDR": "X-Mine"},
    )
    served = protocol.fn_environment(forged, protocol.listener_address(IOFS_MOUNT))
    assert served["FN_LOGFRAME_NAME"] == "fnagent_call_id", "config never overrides the frame"
    assert served["FN_LOGFRAME_HDR"] == "Fn-Call-Id"
    call = Call(fn=forged, id="call1", request=CallRequest(headers=[("Fn-Call-Id", "forged")]))
    sent = protocol.request_headers(call)
    assert [v for k, v in sent if k == served["FN_LOGFRAME_HDR"]] == ["call1"]
