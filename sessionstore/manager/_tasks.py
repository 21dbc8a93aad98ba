"""Supervised background loops (auto-persist, cleanup, backups) on the store's clock.

Each loop sleeps its interval on the store's clock, then runs its job. A job that raises
is logged and recorded, and the loop is restarted after ``restart_delay`` (also on the
store's clock); :meth:`Supervisor.ensure_running` also restarts a loop whose task ended
for any other reason. ``stop()`` cancels every loop and waits for it to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from ..clock import Clock

__all__ = ["Supervisor", "TaskStatus"]

log = logging.getLogger("sessionstore.manager")

Job = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class TaskStatus:
    """What ``health_check()`` reports about one background loop."""

    name: str
    interval: float
    running: bool
    runs: int
    failures: int
    consecutive_failures: int
    restarts: int
    last_run_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class _Loop:
    def __init__(self, name: str, interval: float, job: Job) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self.task: asyncio.Task[None] | None = None
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.restarts = 0
        self.last_run_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    def status(self) -> TaskStatus:
        return TaskStatus(
            self.name,
            self.interval,
            self.task is not None and not self.task.done(),
            self.runs,
            self.failures,
            self.consecutive_failures,
            self.restarts,
            self.last_run_at,
            self.last_error,
            self.last_error_at,
        )


class Supervisor:
    """Runs named loops and keeps them alive until :meth:`stop`."""

    def __init__(self, clock: Clock, *, restart_delay: float) -> None:
        self._clock = clock
        self._restart_delay = restart_delay
        self._loops: dict[str, _Loop] = {}
        self._stopping = False

    def start(self, name: str, interval: float, job: Job) -> None:
        """Run ``job`` every ``interval`` seconds of the clock until stopped."""
        loop = self._loops[name] = _Loop(name, interval, job)
        self._spawn(loop)

    def _spawn(self, loop: _Loop) -> None:
        loop.task = asyncio.get_running_loop().create_task(
            self._run(loop), name=f"sessionstore-manager-{loop.name}"
        )

    async def _run(self, loop: _Loop) -> None:
        while not self._stopping:
            try:
                while True:
                    await self._clock.sleep(loop.interval)
                    await loop.job()
                    loop.runs += 1
                    loop.consecutive_failures = 0
                    loop.last_run_at = self._clock.now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                loop.failures += 1
                loop.consecutive_failures += 1
                loop.last_error = f"{type(exc).__name__}: {exc}"
                loop.last_error_at = self._clock.now()
                log.exception(
                    "background task %r crashed; restarting in %s s", loop.name, self._restart_delay
                )
            loop.restarts += 1
            await self._clock.sleep(self._restart_delay)

    def ensure_running(self) -> list[str]:
        """Restart loops whose task ended unexpectedly; returns their names."""
        restarted: list[str] = []
        if self._stopping:
            return restarted
        for loop in self._loops.values():
            if loop.task is None or loop.task.done():
                if loop.task is not None and not loop.task.cancelled():
                    exc = loop.task.exception()
                    if exc is not None:
                        loop.last_error = f"{type(exc).__name__}: {exc}"
                        loop.last_error_at = self._clock.now()
                loop.restarts += 1
                restarted.append(loop.name)
                log.warning("background task %r was not running; restarted", loop.name)
                self._spawn(loop)
        return restarted

    def statuses(self) -> list[TaskStatus]:
        """One status per loop, in start order."""
        return [loop.status() for loop in self._loops.values()]

    async def stop(self) -> None:
        """Cancel every loop and wait until each has finished. Idempotent."""
        self._stopping = True
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # stop() itself was cancelled
            except Exception:
                log.exception("background task ended with an error during shutdown")
