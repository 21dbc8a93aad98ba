"""ManagerConfig: typed, validated, behaviour only."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sessionstore import ConfigurationError, ManagerConfig


def test_defaults() -> None:
    config = ManagerConfig()
    assert config.auto_persist and config.persist_on_interaction
    assert config.persist_interval == 5.0 and config.conflict_policy == "raise"
    assert config.cleanup_enabled and config.backup_interval is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.auto_persist = False  # type: ignore[misc]


def test_backup_schedule_is_stored_and_validated(tmp_path: Path) -> None:
    config = ManagerConfig(backup_interval=3600, backup_dir=tmp_path, max_backups=7)
    assert config.backup_dir == tmp_path and config.max_backups == 7
    with pytest.raises(ConfigurationError, match="backup_dir"):
        ManagerConfig(backup_interval=3600)


@pytest.mark.parametrize(
    "changes",
    [
        {"conflict_policy": "overwrite"},
        {"persist_interval": 0},
        {"persist_interval": float("nan")},
        {"persist_interval": "5"},
        {"default_ttl": -1},
        {"lease_ttl": None},
        {"cleanup_interval": float("inf")},
        {"max_sessions": 0},
        {"max_iterations": True},
        {"max_backups": 1.5},
        {"reapply_attempts": 0},
        {"page_size": 20_000},
        {"auto_persist": "yes"},
        {"cleanup_enabled": 1},
        {"sliding_expiration": True},
        {"backup_dir": 42},
    ],
)
def test_bad_values_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ManagerConfig(**changes)


def test_from_mapping() -> None:
    config = ManagerConfig.from_mapping({"persist_interval": 1, "max_sessions": 10})
    assert config.persist_interval == 1 and config.max_sessions == 10
    with pytest.raises(ConfigurationError, match="store_url"):
        ManagerConfig.from_mapping({"store_url": "memory://"})
