"""The fake driver's own contract (drivers/fake.py); shared cases: test_conformance_fake.py."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from drivers.base import ContainerTask, RunResult, RunStatus, TaskLogger
from drivers.errors import (
    ClosedError,
    ContainerGoneError,
    DockerAPIError,
    FunctionTimeoutError,
    ImageNotFoundError,
    InvalidInputError,
    OutOfMemoryError,
)
from drivers.fake import FakeCookie, FakeDriver, FakeOOM, ProgramContext
from tests.helpers import poll

pytestmark = pytest.mark.anyio

BUSYBOX = "fnagent/busybox"
MIB = 1024 * 1024
_task_ids = itertools.count()


def make_task(command: list[str] | None = None, **fields: object) -> ContainerTask:
    fields.setdefault("id", f"task-{next(_task_ids)}")
    return ContainerTask(image=BUSYBOX, command=command, **fields)  # type: ignore[arg-type]


async def started(driver: FakeDriver, task: ContainerTask) -> FakeCookie:
    cookie = await driver.create_cookie(task)
    await driver.prepare_cookie(cookie)
    return cookie


class Flags:
    """What a test program reports back: how far it got and whether it was cancelled."""

    def __init__(self) -> None:
        self.steps = 0
        self.cancelled = False
        self.stop = False

    async def forever(self, ctx: ProgramContext) -> int:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return 0

    async def ticker(self, ctx: ProgramContext) -> int:
        while not self.stop:
            await ctx.checkpoint()
            self.steps += 1
        return 0


async def test_success_and_states() -> None:
    async with FakeDriver() as driver:
        cookie = await driver.create_cookie(make_task(["true"], labels={"app": "a"}))
        assert cookie.state is None and cookie.container_id is None
        await driver.prepare_cookie(cookie)
        assert cookie.state == "created"
        assert driver.containers[cookie.container_id or ""].labels == {"app": "a"}
        waiter = await cookie.run()
        assert cookie.state == "running"
        result = await waiter.wait()
        assert result.status is RunStatus.SUCCESS and result.exit_code == 0
        assert cookie.state == "exited"
        assert await waiter.wait() is result
        await cookie.aclose()
        assert cookie.state == "removed"


async def test_nonzero_exit_names_the_code() -> None:
    async def exit_3(ctx: ProgramContext) -> int:
        return 3

    async def exit_137(ctx: ProgramContext) -> int:
        return 137

    async with FakeDriver(programs={"three": exit_3, "killed": exit_137}) as driver:
        result = await (await (await started(driver, make_task(["three"]))).run()).wait()
        assert result.status is RunStatus.ERROR and result.exit_code == 3
        assert result.error is not None and "code 3" in result.error.message
        result = await (await (await started(driver, make_task(["killed"]))).run()).wait()
        assert result.error is not None and "signal 9" in result.error.message


async def test_timeout_cancels_the_program() -> None:
    flags = Flags()
    async with FakeDriver(programs={"forever": flags.forever}) as driver:
        cookie = await started(driver, make_task(["forever"], timeout_s=0.05))
        result = await (await cookie.run()).wait()
        assert result.status is RunStatus.TIMEOUT
        assert isinstance(result.error, FunctionTimeoutError)
        assert "Timed out" in result.error.message
        assert cookie.state == "exited"
        await poll(lambda: flags.cancelled, "the program cancelled")


async def test_cancelled_wait_cancels_the_program_and_propagates() -> None:
    flags = Flags()
    async with FakeDriver(programs={"forever": flags.forever}) as driver:
        cookie = await started(driver, make_task(["forever"]))
        waiter = await cookie.run()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await waiter.wait()
            pytest.fail("wait() swallowed the cancellation")
        assert scope.cancelled_caught
        assert cookie.container is not None and cookie.container.result is not None
        assert cookie.container.result.status is RunStatus.CANCELLED
        assert await waiter.wait() is cookie.container.result
        await poll(lambda: flags.cancelled, "the program cancelled")
        assert cookie.state == "exited"


async def test_oom_is_killed_with_the_limit_in_the_message() -> None:
    async def hog(ctx: ProgramContext) -> int:
        raise FakeOOM

    async with FakeDriver(programs={"hog": hog}) as driver:
        cookie = await started(driver, make_task(["hog"], memory_bytes=128 * MIB))
        result = await (await cookie.run()).wait()
        assert result.status is RunStatus.KILLED
        assert result.exit_code == 137
        assert isinstance(result.error, OutOfMemoryError)
        assert "out of memory" in result.error.message
        assert "128 MiB" in result.error.message


async def test_freeze_blocks_progress_until_unfreeze() -> None:
    flags = Flags()
    async with FakeDriver(programs={"tick": flags.ticker}) as driver:
        cookie = await started(driver, make_task(["tick"]))
        waiter = await cookie.run()
        await poll(lambda: flags.steps > 0, "the program stepping")
        await cookie.freeze()
        states = [cookie.state]
        frozen_at = flags.steps
        # Give the program many turns of the event loop: a frozen one takes none.
        for _ in range(200):
            await anyio.lowlevel.checkpoint()
        assert flags.steps == frozen_at
        await cookie.unfreeze()
        states.append(cookie.state)
        assert states == ["paused", "running"]
        await poll(lambda: flags.steps > frozen_at, "a step after the thaw")
        flags.stop = True
        assert (await waiter.wait()).ok


async def test_frozen_output_is_held_back() -> None:
    release = anyio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first "
        await release.wait()
        yield b"second"

    out = io.BytesIO()
    async with FakeDriver() as driver:
        task = make_task(["cat"], input=chunks(), logger=TaskLogger(stdout=out))
        cookie = await started(driver, task)
        waiter = await cookie.run()
        await poll(lambda: out.getvalue() == b"first ", "the first output")
        await cookie.freeze()
        release.set()
        for _ in range(200):
            await anyio.lowlevel.checkpoint()
        assert out.getvalue() == b"first "
        await cookie.unfreeze()
        assert (await waiter.wait()).ok
        assert out.getvalue() == b"first second"


async def test_freeze_and_unfreeze_in_the_wrong_state_raise_like_docker() -> None:
    flags = Flags()
    async with FakeDriver(programs={"forever": flags.forever}) as driver:
        cookie = await started(driver, make_task(["forever"]))
        with pytest.raises(DockerAPIError, match="not running"):
            await cookie.freeze()
        await cookie.run()
        with pytest.raises(DockerAPIError, match="not paused"):
            await cookie.unfreeze()
        await cookie.freeze()
        with pytest.raises(DockerAPIError, match="already paused"):
            await cookie.freeze()


async def test_aclose_is_idempotent_then_closed_error() -> None:
    closed: list[int] = []
    async with FakeDriver() as driver:
        cookie = await started(
            driver, make_task(["sleep", "30"], on_close=lambda: closed.append(1))
        )
        waiter = await cookie.run()
        await cookie.aclose()
        await cookie.aclose()
        assert closed == [1]
        assert cookie.state == "removed"
        assert driver.live() == []
        for call in (cookie.run, cookie.freeze, cookie.unfreeze, waiter.wait):
            with pytest.raises(ClosedError):
                await call()
        with pytest.raises(ClosedError):
            await driver.prepare_cookie(cookie)


async def test_aclose_while_waiting_ends_the_wait_with_container_gone() -> None:
    async with FakeDriver() as driver:
        cookie = await started(driver, make_task(["sleep", "30"]))
        waiter = await cookie.run()
        results: list[RunResult] = []

        async def wait() -> None:
            results.append(await waiter.wait())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.lowlevel.checkpoint()
            await cookie.aclose()
        assert results[0].status is RunStatus.ERROR
        assert isinstance(results[0].error, ContainerGoneError)


async def test_missing_image_raises_and_creates_nothing() -> None:
    async with FakeDriver(missing_images=["nosuch/image"]) as driver:
        cookie = await driver.create_cookie(ContainerTask(id="t", image="nosuch/image:latest"))
        with pytest.raises(ImageNotFoundError, match="nosuch/image"):
            await driver.prepare_cookie(cookie)
        assert driver.containers == {}
        assert cookie.state is None
        await cookie.aclose()


async def test_invalid_image_reference_is_invalid_input() -> None:
    async with FakeDriver() as driver:
        cookie = await driver.create_cookie(ContainerTask(id="t", image="Upper/Case"))
        with pytest.raises(InvalidInputError):
            await driver.prepare_cookie(cookie)


async def test_unknown_command_fails_at_start() -> None:
    async with FakeDriver() as driver:
        cookie = await started(driver, make_task(["nosuchcmd"]))
        with pytest.raises(InvalidInputError, match="executable file not found"):
            await cookie.run()
        assert cookie.state == "created"


async def test_image_program_runs_without_command() -> None:
    async def hello(ctx: ProgramContext) -> int:
        await ctx.stdout.write(b"hello from " + ctx.argv[0].encode())
        return 0

    out = io.BytesIO()
    async with FakeDriver(images={"fnagent/hello": hello}) as driver:
        task = ContainerTask(id="t", image="fnagent/hello:latest", logger=TaskLogger(stdout=out))
        assert (await (await (await started(driver, task)).run()).wait()).ok
        assert out.getvalue() == b"hello from fnagent/hello:latest"


async def test_options_are_fixed_at_prepare() -> None:
    out = io.BytesIO()
    async with FakeDriver() as driver:
        task = make_task(["printenv", "A"], env_vars={"A": "before"}, logger=TaskLogger(stdout=out))
        cookie = await started(driver, task)
        cookie.container_options["Env"].append("A=after")
        cookie.container_options["Cmd"] = ["false"]
        assert (await (await cookie.run()).wait()).ok
        assert out.getvalue() == b"before\n"


async def test_builtins_mirror_busybox() -> None:
    async def run(command: list[str], **fields: object) -> tuple[int | None, bytes, bytes]:
        out, err = io.BytesIO(), io.BytesIO()
        task = make_task(command, logger=TaskLogger(stdout=out, stderr=err), **fields)
        async with await started(driver, task) as cookie:
            result = await (await cookie.run()).wait()
        return result.exit_code, out.getvalue(), err.getvalue()

    async with FakeDriver() as driver:
        assert await run(["echo", "a", "b"]) == (0, b"a b\n", b"")
        assert await run(["/bin/echo"]) == (0, b"\n", b"")
        assert await run(["printenv", "X"], env_vars={"X": "1"}) == (0, b"1\n", b"")
        assert await run(["printenv", "X", "Y"], env_vars={"X": "1"}) == (1, b"1\n", b"")
        assert await run(["printenv"], env_vars={"X": "1"}) == (0, b"X=1\n", b"")
        assert await run(["sleep", "0.01"]) == (0, b"", b"")
        assert (await run(["sleep", "soon"]))[0] == 1
        assert await run(["cat"]) == (0, b"", b"")
        assert driver.live() == []


async def test_a_crashing_program_is_a_test_bug_and_reraises() -> None:
    async def broken(ctx: ProgramContext) -> int:
        raise ValueError("bug in the test program")

    async with FakeDriver(programs={"broken": broken}) as driver:
        cookie = await started(driver, make_task(["broken"]))
        with pytest.raises(ValueError, match="bug in the test program"):
            await (await cookie.run()).wait()


async def test_cancelled_slow_prepare_creates_nothing() -> None:
    async with FakeDriver(create_delay_s=10) as driver:
        cookie = await driver.create_cookie(make_task(["true"]))
        with anyio.move_on_after(0.01) as scope:
            await driver.prepare_cookie(cookie)
        assert scope.cancelled_caught
        assert driver.containers == {}
        await cookie.aclose()


async def test_driver_aclose_removes_everything_and_counts() -> None:
    driver = FakeDriver()
    async with driver:
        running = await started(driver, make_task(["sleep", "30"]))
        await running.run()
        await started(driver, make_task(["true"]))
        await driver.create_cookie(make_task(["true"]))
        done = await started(driver, make_task(["true"]))
        await done.aclose()
        assert repr(driver) == "<FakeDriver live=2 removed=1>"
    assert repr(driver) == "<FakeDriver live=0 removed=3>"
    assert running.state == "removed"
    await driver.aclose()
    with pytest.raises(ClosedError):
        await driver.create_cookie(make_task(["true"]))


async def test_run_needs_the_driver_entered() -> None:
    driver = FakeDriver()
    cookie = await started(driver, make_task(["true"]))
    with pytest.raises(RuntimeError, match="async context manager"):
        await cookie.run()
    await driver.aclose()
