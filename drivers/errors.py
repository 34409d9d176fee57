"""The root of the project's one error tree and the driver's part of it.

Every error the driver layer or the agent raises on purpose is an ``FnAgentError``. Each class
carries the HTTP status and the message a caller sees, so the server needs one exception handler
and the CLI one ``except``. ``drivers`` never imports ``fnagent``, so the root and the driver's
errors are defined here; ``fnagent/errors.py`` re-exports them beside the rest of the tree and
draws the whole tree in its docstring, with each class's status.

``PoolEmpty`` is not an error a caller sees: it tells the driver to fall back to other networking.
"""

from __future__ import annotations


class FnAgentError(Exception):
    """Root of the tree: ``status`` is the HTTP status, ``message`` the caller-facing text."""

    status: int = 500
    default_message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def document(self) -> dict[str, str]:
        """The JSON body a caller gets: ``{"message": ...}``; a subclass may add fields."""
        return {"message": self.message}


class InvalidInputError(FnAgentError):
    status = 400
    default_message = "invalid input"


class MemoryNeverFitsError(InvalidInputError):
    default_message = "the function's memory can never fit on this host"


class ImageError(FnAgentError):
    """A problem getting the function's image."""


class ImageNotFoundError(ImageError):
    status = 404
    default_message = "pull access denied or image not found"


class RegistryAuthError(ImageError):
    # Fn answers 404 for both "denied" and "not found": a caller must not learn which
    # private images exist.
    status = 404
    default_message = "pull access denied: the registry refused the credentials"


class RegistryUnreachableError(ImageError):
    status = 502
    default_message = "the image registry cannot be reached"


class PullTimeoutError(ImageError):
    status = 504
    default_message = "timed out pulling the image"


class DockerUnavailableError(FnAgentError):
    status = 503
    default_message = "the Docker daemon does not answer"


class DockerAPIError(FnAgentError):
    status = 500
    default_message = "the Docker daemon refused the request"


class ContainerGoneError(FnAgentError):
    status = 502
    default_message = "the function's container is gone"


class FunctionExitError(FnAgentError):
    status = 502
    default_message = "the function's container exited with an error"


class OutOfMemoryError(FnAgentError):
    status = 502
    default_message = "the function ran out of memory"


class FunctionTimeoutError(FnAgentError):
    status = 504
    default_message = "Timed out"


class ServerBusyError(FnAgentError):
    status = 503
    default_message = "Timed out - server too busy"


class NetworkSetupError(FnAgentError):
    default_message = "the function network could not be set up"


class SecretFilesError(FnAgentError):
    """A container's secret files (drivers/docker/secretfiles.py) cannot be made."""

    status = 500
    default_message = "cannot make the function's secret files"


class OutputPipesError(FnAgentError):
    """A container's output pipes (drivers/docker/pipes.py) cannot be made."""

    status = 500
    default_message = "cannot make the function's output pipes"


class ClosedError(FnAgentError):
    status = 500
    default_message = "used after aclose()"


class PoolEmpty(Exception):
    """No free prefork slot right now; the caller falls back to other networking."""
