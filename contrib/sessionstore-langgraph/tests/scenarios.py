"""Real LangGraph graphs run step by step on a checkpointer, recording what a user sees.

Each scenario returns a transcript (values, next nodes, interrupts, history lengths)
that carries no ids or timestamps, so the same scenario on ``InMemorySaver`` and on
``SessionStoreSaver`` must give the same transcript.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

__all__ = ["delta_scenario", "review_scenario", "sync_scenario"]


class ReviewState(TypedDict):
    log: Annotated[list[str], operator.add]
    approved: str


def _draft(state: ReviewState) -> dict[str, Any]:
    return {"log": [f"draft-{len(state['log'])}"]}


def _review(state: ReviewState) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "seen": len(state["log"])})
    return {"log": [f"review:{answer}"], "approved": str(answer)}


def _publish(state: ReviewState) -> dict[str, Any]:
    return {"log": [f"publish:{state['approved']}"]}


def review_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    builder = StateGraph(ReviewState)
    builder.add_node("draft", _draft)
    builder.add_node("review", _review)
    builder.add_node("publish", _publish)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=saver)


def _plain(result: Any) -> Any:
    """An invoke result without interrupt ids (they are random per run)."""
    if isinstance(result, dict) and "__interrupt__" in result:
        return {**result, "__interrupt__": [i.value for i in result["__interrupt__"]]}
    return result


def _snap(state: Any) -> dict[str, Any]:
    return {
        "values": state.values,
        "next": list(state.next),
        "interrupts": [i.value for task in state.tasks for i in task.interrupts],
    }


async def review_scenario(saver: BaseCheckpointSaver[Any], thread: str) -> list[Any]:
    """Interrupt and resume, an ``update_state`` fork from an earlier checkpoint, and a
    replay from a past checkpoint (time travel), all on one thread."""
    graph = review_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    out: list[Any] = []
    out.append(_plain(await graph.ainvoke({"log": ["start"], "approved": ""}, config)))
    out.append(_snap(await graph.aget_state(config)))  # paused at review
    out.append(_plain(await graph.ainvoke(Command(resume="yes"), config)))
    out.append(_snap(await graph.aget_state(config)))
    history = [s async for s in graph.aget_state_history(config)]
    out.append([(_snap(s)["values"], s.metadata["step"], s.metadata["source"]) for s in history])
    # fork: go back to the checkpoint paused before review, change the log there
    paused = next(s for s in history if list(s.next) == ["review"])
    fork = await graph.aupdate_state(paused.config, {"log": ["edited"]})
    out.append(_snap(await graph.aget_state(fork)))
    out.append(_plain(await graph.ainvoke(Command(resume="after-fork"), fork)))
    out.append(_snap(await graph.aget_state(config)))
    # time travel: replay from the checkpoint before draft ran
    before_draft = next(s for s in history if list(s.next) == ["draft"])
    out.append(_plain(await graph.ainvoke(None, before_draft.config)))
    out.append(_snap(await graph.aget_state(config)))
    out.append(_plain(await graph.ainvoke(Command(resume="third"), config)))
    history = [s async for s in graph.aget_state_history(config)]
    out.append(len(history))
    out.append([s.metadata["source"] for s in history])
    limited = [s async for s in graph.aget_state_history(config, limit=3)]
    out.append([_snap(s)["values"] for s in limited])
    filtered = [s async for s in graph.aget_state_history(config, filter={"source": "update"})]
    out.append([_snap(s)["values"] for s in filtered])
    return out


def sync_scenario(saver: BaseCheckpointSaver[Any], thread: str) -> list[Any]:
    """The same flow through the sync twins (``invoke``, ``get_state``, ...)."""
    graph = review_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    out: list[Any] = []
    out.append(_plain(graph.invoke({"log": ["start"], "approved": ""}, config)))
    out.append(_snap(graph.get_state(config)))
    out.append(_plain(graph.invoke(Command(resume="yes"), config)))
    history = list(graph.get_state_history(config))
    out.append([(_snap(s)["values"], s.metadata["step"]) for s in history])
    paused = next(s for s in history if list(s.next) == ["review"])
    fork = graph.update_state(paused.config, {"log": ["edited"]})
    out.append(_plain(graph.invoke(Command(resume="sync-fork"), fork)))
    out.append(_snap(graph.get_state(config)))
    return out


def _concat(state: Sequence[str], writes: Sequence[Sequence[str]]) -> list[str]:
    out = list(state)
    for write in writes:
        out.extend(write)
    return out


class DeltaState(TypedDict):
    messages: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=3)]
    turns: int


def _reply(state: DeltaState) -> dict[str, Any]:
    return {"messages": [f"reply-{state['turns']}"], "turns": state["turns"] + 1}


def delta_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    builder = StateGraph(DeltaState)
    builder.add_node("reply", _reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


async def delta_scenario(saver: BaseCheckpointSaver[Any], thread: str, turns: int = 8) -> list[Any]:
    """A chat whose message list is a ``DeltaChannel`` (a snapshot every 3 updates):
    state rebuilt from the delta history after each turn, after a fork and after
    time travel."""
    graph = delta_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    out: list[Any] = []
    for turn in range(turns):
        out.append(
            _plain(await graph.ainvoke({"messages": [f"user-{turn}"], "turns": turn}, config))
        )
    state = await graph.aget_state(config)
    out.append(state.values)
    history = [s async for s in graph.aget_state_history(config)]
    middle = history[len(history) // 2]
    out.append(middle.values)
    fork = await graph.aupdate_state(middle.config, {"messages": ["forked"]})
    out.append((await graph.aget_state(fork)).values)
    out.append(_plain(await graph.ainvoke({"messages": ["after-fork"], "turns": 100}, fork)))
    out.append(_plain(await graph.ainvoke(None, history[-3].config)))
    out.append((await graph.aget_state(config)).values)
    return out
