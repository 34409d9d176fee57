"""Driver conformance: cases every ``Driver`` must pass, the fake and the Docker driver alike.

Each case is a plain ``async def case_*(driver, images)`` listed in ``CASES`` (this module is not
a test module, so pytest collects nothing here). A case uses only the ``drivers.base`` interface
and busybox commands (``cat [FILE]``, ``true``, ``false``, ``sleep``, ``env``), running them in
the image ``images.busybox``.

Runner contract (``tests/unit/test_conformance_fake.py``, and the Docker runner in
``tests/system``): enter the driver (``async with driver``), await the case, then, before the
driver is closed, assert that the driver has no container left. Every case closes all its
cookies, so that check is what proves ``aclose`` removes the container, including after a
cancelled wait.

Container options are edited as the Engine API create body the Docker driver builds
(``container_options["Env"]`` is a list of ``NAME=value``); the fake driver uses the same shape.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from drivers.base import ContainerTask, Cookie, Driver, RunResult, RunStatus, TaskLogger
from fnagent.errors import ClosedError, FunctionTimeoutError, InvalidInputError

CONFORMANCE_LABEL = "fnagent.test.conformance"
# Upper bound for any single wait in a case, so a broken driver fails the case instead of
# hanging until the test runner's timeout.
WAIT_LIMIT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class Images:
    """The images the cases run; the Docker runner uses the locally built ``fnagent/busybox``."""

    busybox: str


Case = Callable[[Driver, Images], Awaitable[None]]


@dataclass
class _Output:
    stdout: io.BytesIO
    stderr: io.BytesIO


def _task(images: Images, command: list[str], **fields: Any) -> tuple[ContainerTask, _Output]:
    out = _Output(io.BytesIO(), io.BytesIO())
    task = ContainerTask(
        id=f"conformance-{uuid.uuid4().hex[:12]}",
        image=images.busybox,
        command=command,
        logger=TaskLogger(stdout=out.stdout, stderr=out.stderr),
        labels={CONFORMANCE_LABEL: "1"},
        **fields,
    )
    return task, out


async def _prepared(driver: Driver, task: ContainerTask) -> Cookie:
    cookie = await driver.create_cookie(task)
    try:
        await driver.prepare_cookie(cookie)
    except BaseException:
        with anyio.move_on_after(WAIT_LIMIT_S, shield=True):
            await cookie.aclose()
        raise
    return cookie


async def _run_to_end(driver: Driver, task: ContainerTask) -> RunResult:
    async with await _prepared(driver, task) as cookie:
        waiter = await cookie.run()
        with anyio.fail_after(WAIT_LIMIT_S):
            return await waiter.wait()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def case_stdin_round_trip(driver: Driver, images: Images) -> None:
    """``cat`` copies a few hundred KiB of stdin to stdout byte for byte."""
    payload = random.Random(0).randbytes(300 * 1024 + 7)  # not a multiple of any chunk size
    task, out = _task(images, ["cat"], input=_chunks(payload, 64 * 1024))
    result = await _run_to_end(driver, task)
    assert result.status is RunStatus.SUCCESS, result
    assert out.stdout.getvalue() == payload


async def case_exit_zero_is_success(driver: Driver, images: Images) -> None:
    task, _ = _task(images, ["true"])
    result = await _run_to_end(driver, task)
    assert result.status is RunStatus.SUCCESS, result
    assert result.ok
    assert result.exit_code == 0
    assert result.error is None


async def case_nonzero_exit_is_error(driver: Driver, images: Images) -> None:
    task, _ = _task(images, ["false"])
    result = await _run_to_end(driver, task)
    assert result.status is RunStatus.ERROR, result
    assert result.exit_code == 1
    assert result.error is not None
    assert "1" in result.error.message


async def case_timeout(driver: Driver, images: Images) -> None:
    """A task past its ``timeout_s`` ends as TIMEOUT within a second of the deadline."""
    timeout_s = 1.0
    task, _ = _task(images, ["sleep", "30"], timeout_s=timeout_s)
    async with await _prepared(driver, task) as cookie:
        waiter = await cookie.run()
        started = anyio.current_time()
        with anyio.fail_after(WAIT_LIMIT_S):
            result = await waiter.wait()
        elapsed = anyio.current_time() - started
    assert result.status is RunStatus.TIMEOUT, result
    assert isinstance(result.error, FunctionTimeoutError)
    assert timeout_s * 0.9 <= elapsed <= timeout_s + 1.0, elapsed


async def case_cancelled_wait(driver: Driver, images: Images) -> None:
    """Cancelling a wait propagates promptly; aclose then removes the container (runner checks)."""
    task, _ = _task(images, ["sleep", "30"])
    cookie = await _prepared(driver, task)
    try:
        waiter = await cookie.run()
        started = anyio.current_time()
        with anyio.move_on_after(0.5) as scope:
            await waiter.wait()
        assert scope.cancelled_caught, "wait() returned although sleep 30 was still running"
        assert anyio.current_time() - started < WAIT_LIMIT_S / 2
    finally:
        with anyio.move_on_after(WAIT_LIMIT_S, shield=True):
            await cookie.aclose()


async def case_freeze_unfreeze(driver: Driver, images: Images) -> None:
    task, _ = _task(images, ["sleep", "0.5"])
    async with await _prepared(driver, task) as cookie:
        waiter = await cookie.run()
        for _ in range(2):
            await cookie.freeze()
            await cookie.unfreeze()
        with anyio.fail_after(WAIT_LIMIT_S):
            result = await waiter.wait()
    assert result.status is RunStatus.SUCCESS, result


async def case_aclose_idempotent(driver: Driver, images: Images) -> None:
    """aclose twice is fine, and the task is closed exactly once, prepared or not."""
    closes: list[str] = []

    task, _ = _task(images, ["true"], on_close=lambda: closes.append("ran"))
    cookie = await _prepared(driver, task)
    waiter = await cookie.run()
    with anyio.fail_after(WAIT_LIMIT_S):
        await waiter.wait()
    await cookie.aclose()
    await cookie.aclose()

    unprepared_task, _ = _task(images, ["true"], on_close=lambda: closes.append("unprepared"))
    unprepared = await driver.create_cookie(unprepared_task)
    await unprepared.aclose()
    await unprepared.aclose()

    assert closes == ["ran", "unprepared"]


async def case_closed_error_after_aclose(driver: Driver, images: Images) -> None:
    task, _ = _task(images, ["true"])
    cookie = await _prepared(driver, task)
    await cookie.aclose()
    for call in (cookie.run, cookie.freeze, cookie.unfreeze):
        try:
            await call()
        except ClosedError:
            pass
        else:
            raise AssertionError(f"{call.__name__}() after aclose() did not raise ClosedError")
    try:
        await driver.prepare_cookie(cookie)
    except ClosedError:
        pass
    else:
        raise AssertionError("prepare_cookie() after aclose() did not raise ClosedError")


async def case_container_options_edit(driver: Driver, images: Images) -> None:
    """Options edited between create and prepare reach the container, as a custom driver's
    edits from ``task.extensions`` would."""
    task, out = _task(images, ["env"], extensions={"FNAGENT_GREETING": "hello there"})
    cookie = await driver.create_cookie(task)
    try:
        env = cookie.container_options.setdefault("Env", [])
        env.extend(f"{name}={value}" for name, value in task.extensions.items())
        await driver.prepare_cookie(cookie)
        waiter = await cookie.run()
        with anyio.fail_after(WAIT_LIMIT_S):
            result = await waiter.wait()
    finally:
        with anyio.move_on_after(WAIT_LIMIT_S, shield=True):
            await cookie.aclose()
    assert result.status is RunStatus.SUCCESS, (result, out.stderr.getvalue())
    assert b"FNAGENT_GREETING=hello there\n" in out.stdout.getvalue()


SECRET_VALUE = b"s3cr3t value \xe2\x9c\x93\n"


async def case_secret_files(driver: Driver, images: Images) -> None:
    """A task's secrets are files at /run/secrets/<name> its user reads; they are not in its
    environment nor in the create options, and another container does not have them."""
    secrets = {"token": SECRET_VALUE, "other.key": b"x"}
    task, out = _task(images, ["cat", "/run/secrets/token"], secrets=secrets)
    cookie = await _prepared(driver, task)
    try:
        options = json.dumps(cookie.container_options, default=str)
        assert "s3cr3t" not in options and "s3cr3t" not in repr(task)
        waiter = await cookie.run()
        with anyio.fail_after(WAIT_LIMIT_S):
            result = await waiter.wait()
    finally:
        with anyio.move_on_after(WAIT_LIMIT_S, shield=True):
            await cookie.aclose()
    assert result.status is RunStatus.SUCCESS, (result, out.stderr.getvalue())
    assert out.stdout.getvalue() == SECRET_VALUE

    env_task, env_out = _task(images, ["env"], secrets=secrets)
    assert (await _run_to_end(driver, env_task)).ok
    assert b"s3cr3t" not in env_out.stdout.getvalue()

    other, other_out = _task(images, ["cat", "/run/secrets/token"])
    result = await _run_to_end(driver, other)
    assert result.status is RunStatus.ERROR, result
    assert other_out.stdout.getvalue() == b""


async def case_secret_names_that_are_not_file_names_are_refused(
    driver: Driver, images: Images
) -> None:
    for name in ("../escape", "a/b", ".", "..", ""):
        task, _ = _task(images, ["true"], secrets={name: b"x"})
        try:
            cookie = await driver.create_cookie(task)
        except InvalidInputError:
            continue
        await cookie.aclose()
        raise AssertionError(f"secret name {name!r} was accepted")


CASES: list[Case] = [
    case_stdin_round_trip,
    case_exit_zero_is_success,
    case_nonzero_exit_is_error,
    case_timeout,
    case_cancelled_wait,
    case_freeze_unfreeze,
    case_aclose_idempotent,
    case_closed_error_after_aclose,
    case_container_options_edit,
    case_secret_files,
    case_secret_names_that_are_not_file_names_are_refused,
]
