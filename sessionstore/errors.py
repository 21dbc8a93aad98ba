"""The exception hierarchy.

Every error the library raises on purpose is a :class:`SessionStoreError`. Errors that are
about the caller's input also subclass ``ValueError`` so that generic handlers keep
working. Messages never contain secrets (passwords in URLs are redacted before they get
here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "BlockingCallError",
    "ConfigurationError",
    "DriverNotFoundError",
    "EventKeyConflictError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidSessionIdError",
    "OutcomeUnknownError",
    "QuotaExceededError",
    "SerializationError",
    "SessionConflictError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionStoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "TransactionError",
    "UnsupportedFormatError",
    "UnsupportedOperationError",
]


class SessionStoreError(Exception):
    """Base class of every error raised by sessionstore and its drivers."""


class InvalidArgumentError(SessionStoreError, ValueError):
    """An argument is out of range or malformed (a bad ``limit``, ``ttl``, ``sort_by``...).

    Raised before any I/O; nothing is written.
    """


class InvalidSessionIdError(InvalidArgumentError):
    """A session id (or group / checkpoint id) does not match the allowed pattern."""

    def __init__(self, value: object, reason: str = "") -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        text = f"invalid session id {shown}"
        if reason:
            text += f": {reason}"
        text += " (allowed: [A-Za-z0-9][A-Za-z0-9._-]{0,127}, no '..')"
        super().__init__(text)
        self.value = value


class InvalidCursorError(InvalidArgumentError):
    """A pagination cursor was tampered with, is malformed, or belongs to another query."""


class SessionNotFoundError(SessionStoreError, KeyError):
    """The session does not exist (or has expired by the store's clock)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"session {self.session_id!r} not found"


class SessionExistsError(SessionStoreError):
    """A session with this id already exists."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class SessionConflictError(SessionStoreError):
    """Optimistic locking failed: the stored version is not the expected one.

    Nothing was written. ``actual`` is ``0`` when the session does not exist (any more).
    """

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"version conflict on session {session_id!r}: expected version {expected}, "
            f"stored version is {actual}"
        )
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class EventKeyConflictError(SessionStoreError):
    """An appended event's ``key`` is already stored (or given twice in one call) with
    other content (another ``type`` or ``data``). Nothing of the call was written."""

    def __init__(self, session_id: str, key: str) -> None:
        super().__init__(
            f"event key {key!r} of session {session_id!r} is already stored with other content"
        )
        self.session_id = session_id
        self.key = key


class UnsupportedOperationError(SessionStoreError):
    """The store's driver does not support this operation (a capability it does not
    declare, e.g. ``Capabilities.event_log``). Nothing was written."""


class TransactionError(SessionStoreError):
    """A batch cannot be applied atomically by this driver (nothing was written)."""


class SerializationError(SessionStoreError, ValueError):
    """A value is not JSON-native, or nests deeper than the encoder allows.

    ``path`` names the offending location, e.g. ``data.steps[3].when``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class QuotaExceededError(SessionStoreError):
    """A payload or a count is over a configured limit (nothing was written).

    ``option`` names the option that raises the limit (``max_session_bytes``,
    ``max_event_bytes`` -- store options, in the URL or as keywords -- or the manager's
    ``max_sessions``); the message ends with it, so the reader knows what to change.
    """

    def __init__(self, message: str, *, option: str | None = None, where: str = "store") -> None:
        if option:
            message = f"{message} (raise it with the {where} option {option!r})"
        super().__init__(message)
        self.option = option


class IntegrityError(SessionStoreError):
    """A stored record is corrupt: bad checksum, torn write, undecodable bytes.

    ``record`` names the record (a session id, a file, a key), never its content.
    """

    def __init__(self, message: str, record: str = "") -> None:
        super().__init__(f"{record}: {message}" if record else message)
        self.record = record


class UnsupportedFormatError(IntegrityError):
    """A record was written by a newer format version than this library understands."""


class StoreUnavailableError(SessionStoreError):
    """The backend cannot be reached or failed with an I/O error (after retries)."""


class OutcomeUnknownError(StoreUnavailableError):
    """A write was sent but its outcome is unknown and it could not be safely retried.

    The caller must re-read the session before deciding what to do.
    """


class ConfigurationError(SessionStoreError, ValueError):
    """A store URL or option is invalid: unknown option, wrong type, bad value."""


class DriverNotFoundError(ConfigurationError):
    """No installed driver handles the URL's scheme (or it could not be imported)."""

    def __init__(
        self,
        scheme: str,
        installed: Iterable[str],
        *,
        extra: str | None = None,
        reason: str | None = None,
        broken: Sequence[str] = (),
    ) -> None:
        names = ", ".join(sorted(installed)) or "none"
        text = f"no driver for scheme {scheme!r} (installed drivers: {names})"
        if reason:
            text = f"driver for scheme {scheme!r} could not be loaded: {reason}"
        if extra:
            text += f"; install it with: pip install 'sessionstore[{extra}]'"
        if broken:
            text += f"; broken plugins: {', '.join(broken)}"
        super().__init__(text)
        self.scheme = scheme
        self.installed = sorted(installed)
        self.extra = extra
        self.reason = reason


class StoreNotFoundError(ConfigurationError):
    """No store exists where an *existing* store was asked for, and nothing was created.

    Raised when a store is opened "existing only" (the ``file://`` driver's
    ``create=false``) and its location is missing or holds something that is not a store
    of that driver (an ordinary folder). The read-only ``sessionstore`` commands open stores
    this way (exit code 8).
    """


class BlockingCallError(SessionStoreError, RuntimeError):
    """A blocking call of the sync facade (:mod:`sessionstore.sync`) was made from a thread
    that runs an event loop.

    Blocking there would stall that loop (and deadlock, when the facade's own loop is the
    one calling). Use the async store in async code; in sync code the facade is fine.
    """
