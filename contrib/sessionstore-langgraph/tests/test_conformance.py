"""LangGraph's own checkpointer conformance suite (``langgraph-checkpoint-conformance``),
in full, on every driver: every capability must be detected and pass, base and extended
(``delete_for_runs``, ``copy_thread``, ``prune``), and the delta-channel history tests of
LangGraph's unreleased suite (``delta_spec.py``) too."""

from __future__ import annotations

from collections.abc import AsyncIterator

from delta_spec import ALL_DELTA_CHANNEL_HISTORY_TESTS, run_delta_channel_history_tests
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from sessionstore_langgraph import SessionStoreSaver

from sessionstore import SessionStore


async def test_every_capability_of_the_conformance_suite_passes(
    adapter_store: SessionStore,
) -> None:
    @checkpointer_test(name=f"SessionStoreSaver[{type(adapter_store).__name__}]")
    async def saver() -> AsyncIterator[SessionStoreSaver]:
        with SessionStoreSaver(adapter_store) as s:
            yield s

    report = await validate(saver)
    failures = {name: r.failures for name, r in report.results.items() if not r.passed}
    assert not failures, failures
    assert {r for r, result in report.results.items() if result.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert sum(r.tests_passed for r in report.results.values()) >= 80


async def test_the_delta_channel_history_suite_passes(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    # how the unreleased suite detects the capability: the method is overridden
    overridden = SessionStoreSaver.aget_delta_channel_history
    assert overridden is not BaseCheckpointSaver.aget_delta_channel_history
    passed, failed, failures = await run_delta_channel_history_tests(saver)
    assert failed == 0, failures
    assert passed == len(ALL_DELTA_CHANNEL_HISTORY_TESTS) == 8
