"""Parsing of image references, with Fn's rules (``parse_image``)."""

from __future__ import annotations

from typing import NamedTuple

from drivers.errors import InvalidInputError

DEFAULT_TAG = "latest"
DEFAULT_NAMESPACE = "library"


class ImageRef(NamedTuple):
    registry: str
    """Registry host[:port]; "" for Docker Hub."""
    repo: str
    """Repository path, with ``library/`` added to single-part Hub names."""
    tag: str
    """Tag, or the digest (``sha256:...``) when the reference carries one."""


def _is_registry(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def parse_image(ref: str) -> ImageRef:
    """Split an image reference into (registry, repo, tag) the way Fn does.

    - No slash: a Docker Hub official image, so ``library/`` is prefixed.
    - The first path part is a registry when it contains ``.`` or ``:`` or is ``localhost``.
    - The tag defaults to ``latest``; a ``@digest`` is kept (and wins over a tag).

    Raises InvalidInputError for references Docker would refuse (empty parts, whitespace,
    upper case in the repository).
    """
    if not ref or ref != ref.strip() or any(c.isspace() for c in ref):
        raise InvalidInputError(f"invalid image reference {ref!r}: empty or has whitespace")
    name, digest = ref, ""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        algorithm, _, encoded = digest.partition(":")
        if not algorithm or not encoded:
            raise InvalidInputError(f"invalid image reference {ref!r}: bad digest")
    registry = ""
    parts = name.split("/")
    if len(parts) > 1 and _is_registry(parts[0]):
        registry, parts = parts[0], parts[1:]
    tag = DEFAULT_TAG
    last = parts[-1]
    if ":" in last:
        last, tag = last.rsplit(":", 1)
        parts[-1] = last
        if not tag:
            raise InvalidInputError(f"invalid image reference {ref!r}: empty tag")
    # A registry "host:port" needs both sides: ":5000/app" and "host:/app" have an empty part.
    if any(not p for p in parts) or registry.startswith(":") or registry.endswith(":"):
        raise InvalidInputError(f"invalid image reference {ref!r}: empty path component")
    repo = "/".join(parts)
    if repo != repo.lower():
        raise InvalidInputError(
            f"invalid image reference {ref!r}: repository name must be lowercase"
        )
    if not registry and len(parts) == 1:
        repo = f"{DEFAULT_NAMESPACE}/{repo}"
    return ImageRef(registry, repo, digest or tag)
