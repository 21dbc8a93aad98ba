"""Errors raised by the manager (all :class:`~sessionstore.SessionStoreError`)."""

from __future__ import annotations

from ..errors import SessionConflictError, SessionStoreError, StoreUnavailableError

__all__ = [
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "LifecycleError",
    "ManagedSessionConflictError",
    "ManagerClosedError",
]


class LifecycleError(SessionStoreError):
    """A lifecycle transition that the session's status does not allow.

    For example ``resume()`` on a completed session, or ``complete()`` twice. Nothing is
    written.
    """


class ManagerClosedError(StoreUnavailableError):
    """The manager (or the managed session) is not open: initialise it, or it was shut down."""


class ManagedSessionConflictError(SessionConflictError):
    """A managed session's flush met a concurrent change it may not merge.

    Nothing was written; the session's pending changes are kept. ``keys`` names what both
    writers changed (``data.step``, ``metadata.user``, ``status``) - empty when the policy
    is ``"raise"`` (the policy refuses every concurrent change) or the session is gone.
    Resolve with ``await managed.reload()`` (drop the pending changes) or
    ``await managed.reload(keep_pending=True)`` (re-apply them on the new state).
    """

    def __init__(
        self, session_id: str, expected: int, actual: int, keys: tuple[str, ...] = ()
    ) -> None:
        super().__init__(session_id, expected, actual)
        self.keys = keys
        if keys:
            self.args = (f"{self.args[0]}; both writers changed {', '.join(keys)}",)


class LeaseError(SessionStoreError):
    """Base class of the lease errors."""

    def __init__(self, message: str, session_id: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.holder = holder


class LeaseHeldError(LeaseError):
    """Another owner holds a live lease on the session (claim refused, or a write refused
    because the writer holds no lease while someone else does). Nothing was written."""


class LeaseLostError(LeaseError):
    """The caller's lease was taken over (it expired and another owner claimed it) or was
    released: its writes are refused (fencing). Nothing was written."""
