"""Launch policy: when a version's queue launches containers, and how many.

Pure functions over a queue's numbers (waiters, starting, serving, call and launch times); the
agent asks them and then starts the launches. Nothing here awaits or touches a container.
"""

from __future__ import annotations

import math

from fnagent.agent.admission import Budget
from fnagent.models import MAX_CONCURRENCY_ANNOTATION

MIB = 1024 * 1024
# What a launch is assumed to cost before one was seen (a cold start with the bridge).
DEFAULT_LAUNCH_ESTIMATE_S = 0.5
# Launches the minimum hot count keeps under way at once: each one ready starts the next, so
# a large minimum is reached step by step, never by one loop, and lowering it cancels the
# launches not yet started.
MIN_HOT_LAUNCHES_AT_ONCE = 2
# Below this idle CPU share, waiting short calls launch no more containers (cpus_have_room).
LAUNCH_MIN_IDLE_CPU = 0.15


def launch_patience(
    *,
    patience_s: float,
    waiters: int,
    serving: int,
    call_time_s: float | None,
    launch_time_s: float | None,
) -> float:
    """How long a new waiter waits for a busy container before launching one (0 = now).

    Every container of the version is busy. Launching pays a cold start; waiting pays the
    queue ahead. When the queue is expected to take longer than a launch (slow calls), or
    nothing is known yet (no ready container, no finished call), launch at once, as Fn does.
    Otherwise (short calls) wait up to ``patience_s`` (FN_HOT_LAUNCH_PATIENCE_MSECS); only a
    call still waiting then launches, one launch at a time: fewer, busier containers share
    the CPUs better than one container per concurrent call.
    """
    if not serving or call_time_s is None or patience_s <= 0:
        return 0.0
    launch = launch_time_s or DEFAULT_LAUNCH_ESTIMATE_S
    expected_wait = call_time_s * waiters / serving
    return 0.0 if expected_wait >= launch else patience_s


def cpus_have_room(idle_share: float | None) -> bool:
    """Whether a short-call waiter whose patience ran out may launch one more container, given
    the host's idle CPU share lately (None: unknown).

    Not while the host's CPUs are (nearly) full: the wait then comes from the CPUs, not from
    too few containers, and another container adds contention, not throughput. Measured with
    the FDK hello at concurrency 16 on 2 cores: FDK CPU per call 0.31 ms with 2 containers,
    0.40 with 4, 0.53 with 8; 2,150 vs 1,490 calls/s."""
    return idle_share is None or idle_share >= LAUNCH_MIN_IDLE_CPU


def launches_for_waiters(
    *,
    waiters: int,
    starting: int,
    serving: int,
    draining: bool,
    call_time_s: float | None,
    launch_time_s: float | None,
    use_history: bool = True,
    cpus_full: bool = False,
    background: int = 0,
) -> int:
    """How many launches to start now for the waiters: as many as waiters outnumber starting
    containers (none for a draining queue).

    Of the waiters, ``background`` ones have no caller waiting (detached calls): together
    they count as one, so they start one launch at a time (the agent starts the next when one
    is ready). A burst of detached calls would otherwise start a launch each at the moment
    the server is busiest answering them: measured at concurrency 16 on 2 cores, 8 launches
    at once took the 202's p99 from 36-58 ms to 232-260 ms.

    Scaling from zero with the version's calls known to be short next to a launch
    (``use_history``), only as many start as can serve the waiters within one launch time:
    one container then answers them all sooner than many starting at once would (each
    launch costs CPU the others wait for), and the waiters' patience adds more.

    With containers serving while the host's CPUs are full (``cpus_full``: not
    cpus_have_room), one launch at a time: a launch per waiter would start a burst whose
    starts starve each other and every other fn's (seen under load: 14 at once, and a cold
    fn's lone start then took 29 s), while the serving containers free up for the waiters."""
    if draining:
        return 0
    if background:  # the background waiters count as one
        waiters = min(waiters, max(0, waiters - background) + 1)
    limit = waiters
    if use_history and not serving and call_time_s is not None:
        launch = launch_time_s or DEFAULT_LAUNCH_ESTIMATE_S
        limit = min(waiters, max(1, math.ceil(waiters * call_time_s / launch)))
    if serving and cpus_full:
        limit = min(limit, 1)
    return max(0, limit - starting)


def launches_towards_minimum(*, min_hot: int, launched: int, starting: int) -> int:
    """How many launches to start towards the minimum hot count: what is missing, with at
    most MIN_HOT_LAUNCHES_AT_ONCE under way (each one ready starts the next)."""
    missing = min_hot - launched - starting
    room = MIN_HOT_LAUNCHES_AT_ONCE - starting
    return max(0, min(missing, room))


def min_hot_bound(
    *,
    memory_mb: int,
    cpus_mcpus: int,
    budget: Budget,
    max_min_hot: int,
    max_concurrency: int | None = None,
) -> tuple[int, str]:
    """The largest minimum hot count a fn may have, and what sets it: ``max_min_hot``
    (FN_MAX_MIN_HOT), or fewer when that many of its containers could never fit the memory
    or CPU budget together, or when the fn allows fewer at once (``max_concurrency``, its
    ``fnagent.io/max-concurrency``)."""
    bound = max_min_hot
    why = f"FN_MAX_MIN_HOT={bound}"
    memory = memory_mb * MIB
    if memory and budget.memory_bytes // memory < bound:
        bound = budget.memory_bytes // memory
        why = (
            f"{memory_mb} MiB each within the {budget.memory_bytes // MIB} MiB memory "
            "budget for functions"
        )
    if cpus_mcpus and budget.cpu_mcpus // cpus_mcpus < bound:
        bound = budget.cpu_mcpus // cpus_mcpus
        why = (
            f"{cpus_mcpus} milli-CPUs each within the {budget.cpu_mcpus} milli-CPU "
            "budget for functions"
        )
    if max_concurrency is not None and max_concurrency < bound:
        bound = max_concurrency
        why = f"{MAX_CONCURRENCY_ANNOTATION}={max_concurrency}"
    return bound, why
