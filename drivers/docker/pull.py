"""Making sure a function's image is present: pull policy, registry auth, merged pulls.

Concurrent ensures of one image share a single pull; its outcome (success or error) reaches every
waiter. Pull failures, which the daemon reports inside the progress stream, are sorted into the
error tree by their text: not found, access denied, registry unreachable; our own deadline gives
a timeout.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import docker.errors

from drivers.docker.client import DockerClient
from drivers.docker.config import PullPolicy
from drivers.errors import (
    DockerUnavailableError,
    FnAgentError,
    ImageError,
    ImageNotFoundError,
    InvalidInputError,
    PullTimeoutError,
    RegistryAuthError,
    RegistryUnreachableError,
)
from drivers.images import parse_image

logger = logging.getLogger(__name__)

PullProgress = Callable[[dict[str, Any]], None]
"""Receives each JSON progress message of a pull (status, id, progressDetail...)."""

_NOT_FOUND = ("not found", "manifest unknown", "does not exist", "no such image")
_DENIED = ("unauthorized", "denied", "authentication required", "incorrect username")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "tls:",
    "x509",
    "server gave http response",
    "network is unreachable",
    "timeout exceeded",
    "connection reset",
    "eof",
)


def classify_pull_error(image: str, text: str) -> ImageError:
    """The error for a daemon's pull failure message ``text``."""
    lowered = text.lower()
    # "denied" is checked first: Docker Hub says "pull access denied ... may require login"
    # for both a private and a missing repository, which Fn answers as access denied.
    if any(word in lowered for word in _DENIED):
        if "pull access denied" in lowered:
            return ImageNotFoundError(f"pull access denied for {image}: {text}")
        return RegistryAuthError(f"pull access denied for {image}: {text}")
    if any(word in lowered for word in _NOT_FOUND):
        return ImageNotFoundError(f"image {image} not found: {text}")
    if any(word in lowered for word in _UNREACHABLE):
        return RegistryUnreachableError(f"cannot reach the registry of {image}: {text}")
    return RegistryUnreachableError(f"pulling {image} failed: {text}")


def auth_for(registry: str, docker_auth: str | None) -> dict[str, str] | None:
    """Credentials for ``registry`` from FN_DOCKER_AUTH (a docker config.json document, or its
    legacy map of registry -> {auth|username,password}); None lets docker-py use the docker
    config file. Raises InvalidInputError when the document is not valid JSON."""
    if not docker_auth:
        return None
    try:
        document = json.loads(docker_auth)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"FN_DOCKER_AUTH is not valid JSON: {exc}") from exc
    entries = document.get("auths", document) if isinstance(document, dict) else {}
    host = registry or "docker.io"
    for key, entry in entries.items():
        name = key.split("://", 1)[-1].split("/", 1)[0]
        if name not in (host, "index.docker.io" if host == "docker.io" else host):
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            decoded = base64.b64decode(entry["auth"]).decode("utf-8", "replace")
            username, _, password = decoded.partition(":")
        else:
            username, password = entry.get("username", ""), entry.get("password", "")
        return {"username": username, "password": password, "serveraddress": key}
    return None


class ImagePuller:
    """Ensures images by policy, merging concurrent pulls of the same reference."""

    def __init__(
        self,
        client: DockerClient,
        *,
        policy: PullPolicy,
        timeout_s: float,
        docker_auth: str | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._timeout_s = timeout_s
        self._docker_auth = docker_auth
        self._inflight: dict[str, _Flight] = {}
        self.pulls = 0
        """How many pulls were really sent to the daemon (merged ones count once)."""

    def __repr__(self) -> str:
        return f"<ImagePuller policy={self._policy} in_flight={len(self._inflight)}>"

    @property
    def policy(self) -> PullPolicy:
        """The default policy of ``ensure``."""
        return self._policy

    async def ensure(
        self,
        image: str,
        *,
        policy: PullPolicy | None = None,
        progress: PullProgress | None = None,
    ) -> None:
        """Make ``image`` present locally according to ``policy`` (default: the puller's)."""
        policy = policy or self._policy
        ref = parse_image(image)
        if policy is not PullPolicy.ALWAYS and await self._present(image):
            return
        if policy is PullPolicy.NEVER:
            raise ImageNotFoundError(
                f"image {image} is not present locally and the pull policy is never"
            )
        flight = self._inflight.get(image)
        if flight is None:
            flight = self._inflight[image] = _Flight()
            try:
                await self._pull(image, ref.registry, progress)
            except BaseException as exc:
                flight.error = (
                    exc
                    if isinstance(exc, FnAgentError)
                    else ImageError(f"pulling {image} was interrupted")
                )
                raise
            finally:
                del self._inflight[image]
                flight.done.set()
        else:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error

    async def _present(self, image: str) -> bool:
        api = await self._client.api()

        def inspect() -> bool:
            try:
                api.inspect_image(image)
            except docker.errors.ImageNotFound:
                return False
            return True

        return await self._client.call_sync(f"inspect image {image}", inspect)

    async def _pull(self, image: str, registry: str, progress: PullProgress | None) -> None:
        api = await self._client.api()
        auth = auth_for(registry, self._docker_auth)
        self.pulls += 1
        logger.info("pulling image", extra={"image": image})

        def pull() -> None:
            stream: Iterator[dict[str, Any]] = api.pull(
                image, stream=True, decode=True, auth_config=auth
            )
            for message in stream:
                if "error" in message:
                    raise classify_pull_error(image, str(message["error"]))
                if progress is not None:
                    progress(message)

        try:
            with anyio.fail_after(self._timeout_s):
                await self._client.call_sync(f"pull {image}", pull)
        except TimeoutError as exc:
            raise PullTimeoutError(
                f"timed out pulling {image} after {self._timeout_s:g} s"
            ) from exc
        except (ImageError, InvalidInputError, DockerUnavailableError):
            raise
        except FnAgentError as exc:
            # The daemon refuses a pull it cannot even start (bad registry, auth) with an HTTP
            # error rather than in the stream; sort it the same way.
            raise classify_pull_error(image, exc.message) from exc


class _Flight:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
