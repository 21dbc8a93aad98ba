"""A LangGraph graph that drafts, pauses for a human's approval and publishes, its
checkpoints kept in a sessionstore store. Run it twice to see the thread survive:

    python examples/review_agent.py file://./threads
    python examples/review_agent.py file://./threads --resume yes

Any sessionstore URL works (memory://, sqlite://..., redis://..., postgresql://...).
"""

from __future__ import annotations

import argparse
import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from sessionstore_langgraph import SessionStoreSaver


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def draft(state: State) -> dict[str, Any]:
    return {"log": ["drafted the release notes"]}


def review(state: State) -> dict[str, Any]:
    answer = interrupt("publish the release notes?")
    return {"log": [f"reviewer said {answer!r}"]}


def publish(state: State) -> dict[str, Any]:
    return {"log": ["published"]}


def build(saver: SessionStoreSaver) -> Any:
    builder = StateGraph(State)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=saver)


async def main(url: str, resume: str | None) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "release-42"}}
    async with SessionStoreSaver.from_url(url) as saver:
        graph = build(saver)
        if resume is None:
            result = await graph.ainvoke({"log": []}, config)
            print("paused:", result["__interrupt__"][0].value)
        else:
            result = await graph.ainvoke(Command(resume=resume), config)
            print("log:", result["log"])
            steps = [s.metadata["step"] async for s in graph.aget_state_history(config)]
            print("checkpoints:", len(steps))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="file://./threads")
    parser.add_argument("--resume", help="the reviewer's answer (resumes the paused thread)")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.resume))
