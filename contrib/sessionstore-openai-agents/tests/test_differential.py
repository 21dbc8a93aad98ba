"""The adapter against the SDK's own ``SQLiteSession`` as the reference: the same random
sequence of ``add_items``, ``get_items`` (every limit shape, the settings' default
included), ``pop_item``, ``clear_session`` and whole-history replacements must give the
same results on every driver, through two adapter objects per session id (two
processes' views of one store). Seeded: a failure names its seed and step."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from agents import SQLiteSession, TResponseInputItem
from agents.memory import SessionSettings
from sessionstore_openai_agents import SessionStoreSession

from sessionstore import SessionStore

IDS = ("chat-1", "user 42/chat.2", "ü")
STEPS = 150


def _item(rng: random.Random, n: int) -> TResponseInputItem:
    """An item of the shapes responses carry: text, parts, tool calls, odd characters."""
    kind = rng.randrange(4)
    if kind == 0:
        item: dict[str, Any] = {"role": rng.choice(["user", "assistant"]), "content": f"m{n}"}
    elif kind == 1:
        item = {"role": "user", "content": [{"type": "input_text", "text": f"part {n} ✓ \u00e9"}]}
    elif kind == 2:
        item = {
            "type": "function_call",
            "call_id": f"call_{n}",
            "name": "lookup",
            "arguments": '{"q": "x\\ny", "n": 1.5}',
        }
    else:
        item = {"type": "function_call_output", "call_id": f"call_{n}", "output": "\0 \ud7ff 🙂"}
    return cast(TResponseInputItem, item)


@pytest.mark.parametrize("seed", [7, 8])
async def test_the_same_calls_give_what_sqlite_session_gives(
    adapter_store: SessionStore, seed: int
) -> None:
    rng = random.Random(seed)
    settings = SessionSettings(limit=3)
    reference = {sid: SQLiteSession(sid, session_settings=settings) for sid in IDS}
    ours = {
        sid: [SessionStoreSession(sid, adapter_store, session_settings=settings) for _ in "ab"]
        for sid in IDS
    }
    made = 0
    try:
        for step in range(STEPS):
            sid = rng.choice(IDS)
            theirs, mine = reference[sid], rng.choice(ours[sid])
            roll = rng.random()
            where = f"seed {seed}, step {step}, session {sid!r}"
            if roll < 0.4:
                items = [_item(rng, made + i) for i in range(rng.choice([0, 1, 1, 2, 5]))]
                made += len(items)
                await theirs.add_items(items)
                await mine.add_items(items)
            elif roll < 0.7:
                limit = rng.choice([None, None, 0, 1, 2, 5, 50])
                assert await mine.get_items(limit) == await theirs.get_items(limit), where
            elif roll < 0.85:
                assert await mine.pop_item() == await theirs.pop_item(), where
            elif roll < 0.92:
                await theirs.clear_session()
                await mine.clear_session()
            else:  # the compaction hook: the whole history replaced
                kept = (await theirs.get_items(None))[-rng.randrange(3) :]
                replacement = [*kept, _item(rng, made)]
                made += 1
                assert await mine._atomic_replace_items(replacement)
                await theirs.clear_session()
                await theirs.add_items(replacement)
        for sid in IDS:
            want = await reference[sid].get_items(10_000)
            for mine in ours[sid]:
                assert await mine.get_items(10_000) == want, (seed, sid)
    finally:
        for session in reference.values():
            session.close()
