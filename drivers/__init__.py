"""Container drivers: the interfaces the agent uses, and their implementations apart.

``drivers`` never imports ``fnagent``. ``drivers.docker`` is the only place docker-py is used.
"""

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
