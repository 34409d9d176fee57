"""The project's one error tree: every error fnagent raises on purpose, drawn and defined here.

Each class carries the HTTP status and the message a caller sees, so the server needs one
exception handler and the command line one ``except``. The driver layer cannot import
``fnagent``, so the root and the driver's errors are defined in ``drivers/errors.py`` and
re-exported here; every other error is defined here. Modules of ``fnagent`` import errors from
this module only::

    FnAgentError (500)
    ├── InvalidInputError (400)             bad flag, setting, image reference, body or field
    │   ├── MemoryNeverFitsError (400)      asks for more memory than the host can ever give
    │   └── InstanceInUseError (400)        another server holds this store or this address
    ├── UnauthorizedError (401)             the request lacks the token this route needs
    ├── NotFoundError (404)                 no app, fn or trigger with that id or name
    ├── FnDeletedError (404)                the fn was deleted while its call waited
    ├── MethodNotAllowedError (405)         a method the route does not take
    ├── ConflictError (409)                 a unique name or trigger source is taken
    ├── RequestTooLargeError (413)          a request body over its bound
    ├── TooManyRequestsError (429)          the fn's max-concurrency held a call to its deadline
    ├── StorageError (500)                  the database failed (disk full, I/O error, corrupt)
    │   └── StoreUnavailableError (503)     the database does not answer (down, unreachable)
    ├── SocketDirError (500)                a container's socket dir cannot be made
    ├── SecretKeyError (500)                the secrets key is missing, unreadable or wrong
    ├── SecretFilesError (500)              a container's secret files cannot be made
    ├── OutputPipesError (500)              a container's output pipes cannot be made
    ├── NetworkSetupError (500)             the function network or its host rule cannot be made
    ├── ImageError
    │   ├── ImageNotFoundError (404)        no such image or tag, or pull access denied
    │   ├── RegistryAuthError (401 -> 404)  the registry refused our credentials
    │   ├── RegistryUnreachableError (502)  DNS / connection / TLS failure talking to a registry
    │   └── PullTimeoutError (504)          a pull did not finish in time
    ├── DockerUnavailableError (503)        the Docker daemon does not answer
    ├── DockerAPIError (500)                any other refusal of the Docker Engine API
    ├── ContainerGoneError (502)            the container vanished or died under us
    │   └── StartFailedError (502)          it exited before it listened (+ its stderr)
    ├── FunctionExitError (502)             the function's process exited non-zero
    ├── OutOfMemoryError (502)              the function was killed for exceeding its memory
    ├── FunctionFailedError (502)           the function answered 502
    ├── InvalidResponseError (502)          the function's answer broke the contract
    ├── ResponseTooLargeError (502)         the function's body passed FN_MAX_RESPONSE_SIZE
    ├── ReceiveError (502)                  the connection to the function broke mid-call
    ├── FunctionTimeoutError (504)          the call's timeout passed
    │   └── StartTimeoutError (504)         the container did not listen in time (+ stderr)
    ├── ServerBusyError (503)               no capacity within the call's deadline
    └── ClosedError (500)                   use of a cookie, pool, driver or store after close

An error's JSON body is ``document()``: ``{"message": ...}``, and for the two start-up
failures also ``"stderr"``, the container's last stderr lines (at most 20 lines, 4 KiB).

``PoolEmpty`` is not an error a caller sees: it tells the driver to fall back to other networking.

The command line turns a failure into one line on stderr and an exit status: ``EXIT_AGENT_FAILURE``
(125, fnagent itself failed, as with ``docker run``) or ``EXIT_CANCELLED`` (130, interrupted).
"""

from __future__ import annotations

from drivers.errors import (
    ClosedError,
    ContainerGoneError,
    DockerAPIError,
    DockerUnavailableError,
    FnAgentError,
    FunctionExitError,
    FunctionTimeoutError,
    ImageError,
    ImageNotFoundError,
    InvalidInputError,
    MemoryNeverFitsError,
    NetworkSetupError,
    OutOfMemoryError,
    OutputPipesError,
    PoolEmpty,
    PullTimeoutError,
    RegistryAuthError,
    RegistryUnreachableError,
    SecretFilesError,
    ServerBusyError,
)

__all__ = [
    "EXIT_AGENT_FAILURE",
    "EXIT_CANCELLED",
    "ClosedError",
    "ConflictError",
    "ContainerGoneError",
    "DockerAPIError",
    "DockerUnavailableError",
    "FnAgentError",
    "FnDeletedError",
    "FunctionExitError",
    "FunctionFailedError",
    "FunctionTimeoutError",
    "ImageError",
    "ImageNotFoundError",
    "InstanceInUseError",
    "InvalidInputError",
    "InvalidResponseError",
    "MemoryNeverFitsError",
    "MethodNotAllowedError",
    "NetworkSetupError",
    "NotFoundError",
    "OutOfMemoryError",
    "OutputPipesError",
    "PoolEmpty",
    "PullTimeoutError",
    "ReceiveError",
    "RegistryAuthError",
    "RegistryUnreachableError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "ServerBusyError",
    "SecretFilesError",
    "SecretKeyError",
    "SocketDirError",
    "StartFailedError",
    "StartTimeoutError",
    "StorageError",
    "StoreUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "first_error",
]

EXIT_HTTP_ERROR = 1
EXIT_TIMEOUT = 124
EXIT_AGENT_FAILURE = 125
EXIT_CANCELLED = 130


def first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, which task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


# --- the server and its store ---


class InstanceInUseError(InvalidInputError):
    """Another server holds this store or this address."""

    default_message = "another fnagent serve holds this store or address"


class UnauthorizedError(FnAgentError):
    status = 401
    default_message = "Invalid authentication credentials"


class NotFoundError(FnAgentError):
    # Messages are Fn's where Fn has one ("App not found", ...): see fnagent/store/models.py.
    status = 404
    default_message = "not found"


class MethodNotAllowedError(FnAgentError):
    """``allowed`` is what the route takes (the answer's ``Allow`` header)."""

    status = 405
    default_message = "Method not allowed"

    def __init__(self, message: str | None = None, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ConflictError(FnAgentError):
    """A unique name or trigger source is taken; an app rename (Fn's 409)."""

    status = 409
    default_message = "already exists"


class RequestTooLargeError(FnAgentError):
    status = 413
    default_message = "Request body too large"


class StorageError(FnAgentError):
    """Raised ``from`` the database's error, after the transaction was rolled back."""

    status = 500
    default_message = "storage failure"


class StoreUnavailableError(StorageError):
    """The database cannot be reached or did not answer in time; nothing was written (or,
    when the connection broke during a commit, the write may have landed: a retry of a create
    then answers 409)."""

    status = 503
    default_message = "the database is unavailable"


# --- the agent: what a call to a function can end in ---


class FnDeletedError(FnAgentError):
    status = 404
    default_message = "the function was deleted while the call waited for a container"


class FunctionFailedError(FnAgentError):
    status = 502
    default_message = "function failed"


class InvalidResponseError(FnAgentError):
    status = 502
    default_message = "invalid function response"


class ResponseTooLargeError(FnAgentError):
    status = 502
    default_message = "function response body too large"


class ReceiveError(FnAgentError):
    status = 502
    default_message = "error receiving function response"


class TooManyRequestsError(FnAgentError):
    """The fn's ``fnagent.io/max-concurrency`` held the call until its deadline (Fn's message
    for a 429). ``retry_after_s`` is the answer's Retry-After: when a retry may find room."""

    status = 429
    default_message = "Too many requests submitted"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StartTimeoutError(FunctionTimeoutError):
    """The container did not listen in time; ``stderr``: its last stderr lines."""

    default_message = (
        "Container initialization timed out, please ensure you are using the latest fdk and "
        "check the logs"
    )

    def __init__(self, message: str | None = None, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr

    def document(self) -> dict[str, str]:
        return {"message": self.message, "stderr": self.stderr}


class StartFailedError(ContainerGoneError):
    """The container exited before it listened; ``stderr``: its last stderr lines."""

    default_message = "Container failed to initialize"

    def __init__(self, message: str | None = None, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr

    def document(self) -> dict[str, str]:
        return {"message": self.message, "stderr": self.stderr}


# --- the agent's host resources ---


class SocketDirError(FnAgentError):
    """A container's socket dir (fnagent/sockdir.py) cannot be made."""

    status = 500
    default_message = "cannot make the function's socket dir"


class SecretKeyError(FnAgentError):
    """The secrets key file (fnagent/secretbox.py) is missing, unreadable or not the key the
    stored secrets were sealed with; never carries a value."""

    status = 500
    default_message = "the secrets key cannot be used"
