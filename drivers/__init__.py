"""Container drivers: the interfaces the agent uses, and their implementations apart.

``drivers`` never imports ``fnagent``. ``drivers.docker`` is the only place docker-py is used.

The names below load on first use, so that importing ``drivers.errors`` or ``drivers.images``
(the command line does, before it knows whether it runs anything itself) does not load the
interfaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.base import (
        DISCARD,
        ContainerTask,
        Cookie,
        Driver,
        LogSink,
        RunResult,
        RunStatus,
        TaskLogger,
        WaitResult,
        deliver,
    )
    from drivers.images import ImageRef, parse_image
    from drivers.stats import Stat, decimate

_HOMES = {
    "DISCARD": "base",
    "ContainerTask": "base",
    "Cookie": "base",
    "Driver": "base",
    "ImageRef": "images",
    "LogSink": "base",
    "RunResult": "base",
    "RunStatus": "base",
    "Stat": "stats",
    "TaskLogger": "base",
    "WaitResult": "base",
    "decimate": "stats",
    "deliver": "base",
    "parse_image": "images",
}

__all__ = [
    "DISCARD",
    "ContainerTask",
    "Cookie",
    "Driver",
    "ImageRef",
    "LogSink",
    "RunResult",
    "RunStatus",
    "Stat",
    "TaskLogger",
    "WaitResult",
    "decimate",
    "deliver",
    "parse_image",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from drivers import base, images, stats

    return getattr({"base": base, "images": images, "stats": stats}[home], name)
