"""ManagerConfig: the manager's behaviour (never the store's location or options)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from ..errors import ConfigurationError

__all__ = ["ConflictPolicy", "ManagerConfig"]

ConflictPolicy: TypeAlias = Literal["raise", "reload_and_reapply"]
_POLICIES: Final = ("raise", "reload_and_reapply")
_MAX_SECONDS: Final = 100 * 365 * 86_400


def _seconds(name: str, value: object, *, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise ConfigurationError(f"ManagerConfig.{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"ManagerConfig.{name} must be seconds (int/float), not {value!r}")
    if not (math.isfinite(value) and 0 < value <= _MAX_SECONDS):
        raise ConfigurationError(f"ManagerConfig.{name} must be > 0 and finite, got {value!r}")


def _count(name: str, value: object, *, optional: bool = True, low: int = 1) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"ManagerConfig.{name} must be an int >= {low}, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class ManagerConfig:
    """How a :class:`SessionPersistenceManager` behaves. Every interval is in seconds of
    the store's clock (so a ``ManualClock`` drives them in tests).

    Persistence of managed sessions:

    * ``auto_persist`` - master switch; ``False``: only ``persist()``, lifecycle changes,
      ``close()`` and ``shutdown()`` write.
    * ``persist_on_interaction`` - ``add_interaction`` writes everything pending before it
      returns (one write, however many changes were pending).
    * ``persist_interval`` - a background task writes every dirty session this often
      (``None``: no interval). Bursts between two ticks coalesce into one write.
    * ``conflict_policy`` - what a write that meets a concurrent change does: ``"raise"``
      (:class:`ManagedSessionConflictError`, nothing written) or ``"reload_and_reapply"``
      (re-read, and re-apply the pending changes when they touch keys the other writer
      did not change; otherwise raise). Nothing is ever overwritten blindly.
    * ``reapply_attempts`` - how often ``reload_and_reapply`` retries under contention.

    Sessions: ``default_ttl`` (seconds, on create; ``None``: no expiry),
    ``sliding_expiration`` (every write of a managed session also sets ``expires_at = now
    + default_ttl``), ``max_sessions`` (quota of live sessions for creates through the
    manager), ``max_iterations`` (default iteration limit of new managed sessions),
    ``checkpoint_keep_last`` (prune older checkpoints), ``lease_ttl`` (default lease
    duration).

    Background work: ``cleanup_enabled`` / ``cleanup_interval`` (remove expired
    sessions), ``backup_interval`` / ``backup_dir`` / ``max_backups`` (scheduled backups
    and their retention, used by the backup feature), ``task_restart_delay`` (pause
    before a crashed background loop is restarted), ``health_timeout`` (real seconds a
    health probe of the store may take), ``page_size`` (rows per page of the manager's
    scans: stats, bulk operations).
    """

    auto_persist: bool = True
    persist_on_interaction: bool = True
    persist_interval: float | None = 5.0
    conflict_policy: ConflictPolicy = "raise"
    reapply_attempts: int = 5
    default_ttl: float | None = None
    sliding_expiration: bool = False
    max_sessions: int | None = None
    max_iterations: int | None = None
    checkpoint_keep_last: int | None = None
    lease_ttl: float = 30.0
    cleanup_enabled: bool = True
    cleanup_interval: float = 300.0
    backup_interval: float | None = None
    backup_dir: str | Path | None = None
    max_backups: int | None = None
    task_restart_delay: float = 1.0
    health_timeout: float = 5.0
    page_size: int = 500

    def __post_init__(self) -> None:
        for name in ("auto_persist", "persist_on_interaction", "sliding_expiration"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"ManagerConfig.{name} must be a bool")
        if not isinstance(self.cleanup_enabled, bool):
            raise ConfigurationError("ManagerConfig.cleanup_enabled must be a bool")
        if self.conflict_policy not in _POLICIES:
            raise ConfigurationError(
                f"ManagerConfig.conflict_policy must be one of {', '.join(_POLICIES)}, "
                f"not {self.conflict_policy!r}"
            )
        for name in ("persist_interval", "default_ttl", "backup_interval"):
            _seconds(name, getattr(self, name), optional=True)
        for name in ("lease_ttl", "cleanup_interval", "task_restart_delay", "health_timeout"):
            _seconds(name, getattr(self, name), optional=False)
        _count("reapply_attempts", self.reapply_attempts, optional=False)
        for name in ("max_sessions", "max_iterations", "checkpoint_keep_last", "max_backups"):
            _count(name, getattr(self, name))
        _count("page_size", self.page_size, optional=False)
        if self.page_size > 10_000:
            raise ConfigurationError("ManagerConfig.page_size must be at most 10,000")
        if self.sliding_expiration and self.default_ttl is None:
            raise ConfigurationError("ManagerConfig.sliding_expiration needs a default_ttl")
        if self.backup_dir is not None and not isinstance(self.backup_dir, str | Path):
            raise ConfigurationError("ManagerConfig.backup_dir must be a path (str or Path)")
        if self.backup_interval is not None and self.backup_dir is None:
            raise ConfigurationError("ManagerConfig.backup_interval needs a backup_dir")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ManagerConfig:
        """Build from a plain mapping (e.g. parsed TOML); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(f"unknown ManagerConfig option(s): {', '.join(unknown)}")
        return cls(**values)
