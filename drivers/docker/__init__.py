"""The Docker driver, on docker-py. The only package that imports ``docker``.

The names below load on first use (PEP 562), so importing ``drivers.docker.config`` (the
settings and create options, which the agent's configuration reads) does not load docker-py
and requests (~150 ms); ``DockerDriver`` and the client do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.docker.client import DockerClient
    from drivers.docker.config import (
        INSTANCE_LABEL,
        MANAGED_LABEL,
        TASK_LABEL,
        DockerConfig,
        PullPolicy,
        container_options,
    )
    from drivers.docker.cookie import DockerCookie, DockerWaitResult
    from drivers.docker.driver import DockerDriver
    from drivers.docker.pull import ImagePuller
    from drivers.docker.reaper import OrphanReaper

_WHERE = {
    "DockerClient": "client",
    "INSTANCE_LABEL": "config",
    "MANAGED_LABEL": "config",
    "TASK_LABEL": "config",
    "DockerConfig": "config",
    "PullPolicy": "config",
    "container_options": "config",
    "DockerCookie": "cookie",
    "DockerWaitResult": "cookie",
    "DockerDriver": "driver",
    "ImagePuller": "pull",
    "OrphanReaper": "reaper",
}

__all__ = [
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "TASK_LABEL",
    "DockerClient",
    "DockerConfig",
    "DockerCookie",
    "DockerDriver",
    "DockerWaitResult",
    "ImagePuller",
    "OrphanReaper",
    "PullPolicy",
    "container_options",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
