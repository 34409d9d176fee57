"""The Docker driver, on docker-py. The only package that imports ``docker``."""

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
