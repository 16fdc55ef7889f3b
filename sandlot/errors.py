"""Sandlot's error codes and the exception classes that carry them.

One table, shared by the server (which turns an exception into an HTTP answer) and
the SDK (which turns an HTTP answer back into the same exception), so a code can never
mean one thing on the wire and another in Python.

    SandlotError                      base: code, message, retryable, details, status
    ├── AuthenticationError           UNAUTHENTICATED      401
    ├── PermissionDeniedError         FORBIDDEN            403
    ├── InvalidConfigError            INVALID_CONFIG       400
    ├── RequestTooLargeError          REQUEST_TOO_LARGE    413
    ├── NotFoundError
    │   ├── SandboxNotFoundError      SANDBOX_NOT_FOUND    404
    │   ├── TemplateNotFoundError     TEMPLATE_NOT_FOUND   404
    │   ├── FileNotFoundInSandboxError FILE_NOT_FOUND      404
    │   ├── ProcessNotFoundError      PROCESS_NOT_FOUND    404
    │   ├── SnapshotNotFoundError     SNAPSHOT_NOT_FOUND   404
    │   ├── BuildNotFoundError        BUILD_NOT_FOUND      404
    │   ├── KeyNotFoundError          KEY_NOT_FOUND        404
    │   ├── SshKeyNotFoundError       SSH_KEY_NOT_FOUND    404
    │   ├── VolumeNotFoundError       VOLUME_NOT_FOUND     404
    │   └── PortNotExposedError       PORT_NOT_EXPOSED     404
    ├── FileExistsInSandboxError      FILE_EXISTS          409
    ├── FileOperationError            FILE_OPERATION_FAILED 400
    ├── InvalidStateError             INVALID_STATE        409
    ├── BuildFailedError              BUILD_FAILED         422
    ├── RateLimitedError              RATE_LIMITED         429 (retryable)
    ├── ResourceExhaustedError        RESOURCE_EXHAUSTED   503 (retryable)
    ├── SandboxUnavailableError       SANDBOX_UNAVAILABLE  503 (retryable)
    ├── StoreUnavailableError         STORE_UNAVAILABLE    503 (retryable)
    ├── ConnectFailedError            CONNECT_FAILED       502
    ├── CommandTimeoutError           SANDBOX_TIMEOUT      504
    └── InternalError                 INTERNAL             500 (retryable)
"""

from __future__ import annotations

from typing import Any, ClassVar


class SandlotError(Exception):
    """Base of every error Sandlot reports; `code` is the stable contract."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.retryable = self.default_retryable if retryable is None else retryable

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class AuthenticationError(SandlotError):
    code = "UNAUTHENTICATED"
    status = 401


class PermissionDeniedError(SandlotError):
    code = "FORBIDDEN"
    status = 403


class InvalidConfigError(SandlotError):
    code = "INVALID_CONFIG"
    status = 400


class RequestTooLargeError(SandlotError):
    """A request body past what its route takes (uploads are streamed and exempt)."""

    code = "REQUEST_TOO_LARGE"
    status = 413


class NotFoundError(SandlotError):
    status = 404


class SandboxNotFoundError(NotFoundError):
    code = "SANDBOX_NOT_FOUND"


class TemplateNotFoundError(NotFoundError):
    code = "TEMPLATE_NOT_FOUND"


class FileNotFoundInSandboxError(NotFoundError):
    code = "FILE_NOT_FOUND"


class SnapshotNotFoundError(NotFoundError):
    code = "SNAPSHOT_NOT_FOUND"


class BuildNotFoundError(NotFoundError):
    code = "BUILD_NOT_FOUND"


class KeyNotFoundError(NotFoundError):
    code = "KEY_NOT_FOUND"


class SshKeyNotFoundError(NotFoundError):
    code = "SSH_KEY_NOT_FOUND"


class VolumeNotFoundError(NotFoundError):
    code = "VOLUME_NOT_FOUND"


class PortNotExposedError(NotFoundError):
    """The port is neither exposed nor one of the sandbox's automatic preview ports."""

    code = "PORT_NOT_EXPOSED"


class ProcessNotFoundError(NotFoundError):
    """No background process with that id runs in the sandbox, or it exited long ago."""

    code = "PROCESS_NOT_FOUND"


class FileExistsInSandboxError(SandlotError):
    code = "FILE_EXISTS"
    status = 409


class FileOperationError(SandlotError):
    """A file operation the sandbox refused: not a directory, is a directory, ambiguous edit."""

    code = "FILE_OPERATION_FAILED"
    status = 400


class InvalidStateError(SandlotError):
    code = "INVALID_STATE"
    status = 409


class BuildFailedError(SandlotError):
    """A template build or import ended in failure; the message is its error, and the
    build's log says more."""

    code = "BUILD_FAILED"
    status = 422


class RateLimitedError(SandlotError):
    code = "RATE_LIMITED"
    status = 429
    default_retryable = True


class ResourceExhaustedError(SandlotError):
    code = "RESOURCE_EXHAUSTED"
    status = 503
    default_retryable = True


class SandboxUnavailableError(SandlotError):
    """The sandbox exists but its agent does not answer (starting, crashed, or killed)."""

    code = "SANDBOX_UNAVAILABLE"
    status = 503
    default_retryable = True


class ConnectFailedError(SandlotError):
    """A TCP connection inside the sandbox was refused or could not be made."""

    code = "CONNECT_FAILED"
    status = 502


class CommandTimeoutError(SandlotError):
    """A command ran past its timeout and was killed; the output it made so far is kept."""

    code = "SANDBOX_TIMEOUT"
    status = 504

    @property
    def stdout(self) -> str:
        return str(self.details.get("stdout", ""))

    @property
    def stderr(self) -> str:
        return str(self.details.get("stderr", ""))


class StoreUnavailableError(SandlotError):
    """The server's database refused a change: locked by another writer, read-only, or
    on a full disk. It clears when the store can be written again."""

    code = "STORE_UNAVAILABLE"
    status = 503
    default_retryable = True


class InternalError(SandlotError):
    code = "INTERNAL"
    status = 500
    default_retryable = True


def _with_codes(cls: type[SandlotError]) -> list[type[SandlotError]]:
    """Every class below `cls` that names a code of its own: a new error class is
    known to the SDK the moment it is written."""
    found = []
    for sub in cls.__subclasses__():
        if "code" in vars(sub):
            found.append(sub)
        found.extend(_with_codes(sub))
    return found


ERRORS_BY_CODE: dict[str, type[SandlotError]] = {cls.code: cls for cls in _with_codes(SandlotError)}


def error_from_payload(payload: dict[str, Any]) -> SandlotError:
    """Rebuild the exception a server answer describes; unknown codes become the base class."""
    code = str(payload.get("code", "INTERNAL"))
    cls = ERRORS_BY_CODE.get(code, SandlotError)
    err = cls(
        str(payload.get("message", "")),
        details=payload.get("details") or {},
        retryable=bool(payload.get("retryable", False)),
    )
    if cls is SandlotError:
        err.code = code  # type: ignore[misc]
    return err
