"""Leases: one worker drives a session at a time.

A lease lives in the session's bookkeeping (``_manager.lease``) and is taken, renewed and
released with compare-and-set writes, so two workers can never both believe they hold
it. Its ``token`` is the session version written by the claim: the version is the
fencing token. A lease holder's writes carry the version it last saw; a takeover is a
write, so every later write of the old holder is refused (:class:`LeaseLostError`).

The planning functions here are pure (no I/O): the manager runs them inside its CAS loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidArgumentError
from ..model import Session, SessionUpdate
from ._bookkeeping import MANAGER_KEY, Book, format_time, parse_time
from ._errors import LeaseHeldError, LeaseLostError

__all__ = ["Lease", "check_fence", "plan_claim", "plan_release", "plan_renew", "read_lease"]

_MAX_OWNER = 256


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a session by ``owner`` until ``expires_at`` (by the store's clock).

    ``token`` is the session version written by the claim (the fencing token): a lease
    taken over by someone else gets a new token.
    """

    session_id: str
    owner: str
    token: int
    acquired_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        """True when the lease has run out at ``now`` (it may then be taken over)."""
        return self.expires_at <= now

    def remaining(self, now: datetime) -> float:
        """Seconds left at ``now`` (0 when expired)."""
        return max(0.0, (self.expires_at - now).total_seconds())


def check_owner(owner: object) -> str:
    """An owner is a non-empty str of at most 256 characters."""
    if not isinstance(owner, str) or not owner or len(owner) > _MAX_OWNER:
        raise InvalidArgumentError(f"lease owner must be a non-empty str (<= {_MAX_OWNER} chars)")
    return owner


def read_lease(session: Session) -> Lease | None:
    """The lease recorded on ``session`` (expired or not), or ``None``."""
    rec = Book.of(session).lease
    if rec is None:
        return None
    owner, token = rec.get("owner"), rec.get("token")
    acquired, expires = parse_time(rec.get("acquired_at")), parse_time(rec.get("expires_at"))
    if not isinstance(owner, str) or not isinstance(token, int) or expires is None:
        return None
    return Lease(session.id, owner, token, acquired or expires, expires)


def _with_lease(session: Session, lease: dict[str, Any] | None) -> SessionUpdate:
    book = Book.of(session).with_changes({"lease": lease})
    return SessionUpdate(merge_metadata={MANAGER_KEY: book})


def plan_claim(
    session: Session, owner: str, ttl: timedelta, now: datetime
) -> tuple[SessionUpdate, Lease]:
    """Take the lease (free, expired, or already ours: a new token every time)."""
    held = read_lease(session)
    if held is not None and held.owner != owner and not held.is_expired(now):
        raise LeaseHeldError(
            f"session {session.id!r} is leased by {held.owner!r} until "
            f"{format_time(held.expires_at)}",
            session.id,
            held.owner,
        )
    lease = Lease(session.id, owner, session.version + 1, now, now + ttl)
    record = {
        "owner": owner,
        "token": lease.token,
        "acquired_at": format_time(now),
        "expires_at": format_time(lease.expires_at),
    }
    return _with_lease(session, record), lease


def _require_ours(session: Session, lease: Lease) -> Lease:
    held = read_lease(session)
    if held is None or held.owner != lease.owner or held.token != lease.token:
        holder = held.owner if held is not None else None
        raise LeaseLostError(
            f"lease of {lease.owner!r} on session {session.id!r} (token {lease.token}) was "
            + (f"taken over by {holder!r}" if holder else "released"),
            session.id,
            holder,
        )
    return held


def plan_renew(
    session: Session, lease: Lease, ttl: timedelta, now: datetime
) -> tuple[SessionUpdate, Lease]:
    """Extend our lease (even if it ran out, as long as nobody took it over)."""
    held = _require_ours(session, lease)
    renewed = Lease(session.id, lease.owner, lease.token, held.acquired_at, now + ttl)
    rec = dict(Book.of(session).lease or {})
    rec["expires_at"] = format_time(renewed.expires_at)
    return _with_lease(session, rec), renewed


def plan_release(session: Session, lease: Lease) -> SessionUpdate | None:
    """Drop our lease; ``None`` when it is no longer ours (nothing to write)."""
    try:
        _require_ours(session, lease)
    except LeaseLostError:
        return None
    return _with_lease(session, None)


def check_fence(session: Session, lease: Lease | None, now: datetime) -> None:
    """May a writer holding ``lease`` (or none) write on top of ``session``?"""
    if lease is not None:
        _require_ours(session, lease)
        return
    held = read_lease(session)
    if held is not None and not held.is_expired(now):
        raise LeaseHeldError(
            f"session {session.id!r} is leased by {held.owner!r}: claim it before writing",
            session.id,
            held.owner,
        )
