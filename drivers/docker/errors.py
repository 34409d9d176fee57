"""Translation of docker-py and requests errors into the project's error tree.

Only this package imports docker-py; everything it raises crosses into the rest of the code
through ``map_docker_errors``, so callers catch ``FnAgentError`` subclasses and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from drivers.errors import (
    ContainerGoneError,
    DockerAPIError,
    DockerUnavailableError,
    FnAgentError,
    ImageNotFoundError,
    InvalidInputError,
)


def api_error_text(exc: docker.errors.APIError) -> str:
    """The daemon's own explanation, without docker-py's URL decoration."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc).strip()


def translate(exc: Exception, what: str) -> FnAgentError:
    """The project error for ``exc``, raised while doing ``what`` (e.g. "create container")."""
    if isinstance(exc, FnAgentError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageNotFoundError(f"{what}: {api_error_text(exc)}")
    if isinstance(exc, docker.errors.NotFound):
        return ContainerGoneError(f"{what}: {api_error_text(exc)}")
    if isinstance(exc, docker.errors.APIError):
        if exc.status_code == 400:
            return InvalidInputError(f"{what}: {api_error_text(exc)}")
        return DockerAPIError(f"{what}: {api_error_text(exc)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return DockerUnavailableError(f"{what}: the Docker daemon did not answer in time")
    if isinstance(exc, docker.errors.DockerException) and isinstance(
        exc.__cause__, requests.exceptions.ConnectionError
    ):
        exc = exc.__cause__  # docker-py's version probe wraps the connection error
    if isinstance(exc, requests.exceptions.ConnectionError):
        return DockerUnavailableError(
            f"{what}: cannot connect to the Docker daemon ({_os_reason(exc)}); is it running?"
        )
    if isinstance(exc, docker.errors.DockerException):
        # docker-py's own start-up failures (no socket, bad DOCKER_HOST, version probe).
        return DockerUnavailableError(f"{what}: {exc}")
    if isinstance(exc, requests.exceptions.RequestException):
        return DockerAPIError(f"{what}: {exc}")
    raise TypeError(f"no translation for {type(exc).__name__}") from exc


def _os_reason(exc: BaseException) -> str:
    """The system error under requests' and urllib3's wrappers ("Connection refused"), or the
    whole text when there is none."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        seen.extend(arg for arg in current.args if isinstance(arg, BaseException))
        if current.__cause__ is not None:
            seen.append(current.__cause__)
    return str(exc)


# The exception classes ``translate`` handles; a unit test proves each one maps.
MAPPED: tuple[type[Exception], ...] = (
    docker.errors.ImageNotFound,
    docker.errors.NotFound,
    docker.errors.APIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    docker.errors.DockerException,
    requests.exceptions.RequestException,
)


@contextmanager
def map_docker_errors(what: str) -> Iterator[None]:
    """Re-raise docker-py / requests errors as ``FnAgentError`` (``raise ... from``)."""
    try:
        yield
    except MAPPED as exc:
        raise translate(exc, what) from exc
