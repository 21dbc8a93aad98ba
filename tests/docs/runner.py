"""Run the Python blocks of a Markdown page in order, as one program, as a reader would.

Parsing is sybil's: fenced ``python`` blocks, ``<!-- invisible-code-block: python -->``
comments for set-up a reader does not need to see (a store opened before a snippet that
uses ``store``), and ``<!-- skip: next "why" -->`` before the few blocks that cannot run
here; a skip must say why. Evaluation is ours: each block is compiled with top-level
``await`` allowed (the pages show ``await store.get_session(...)`` as in ``python -m
asyncio``) and awaited on one event loop per page, so a store opened in one block is used
by the next, and a block that calls ``asyncio.run(main())`` runs as a script would.

The pages name the Redis server a reader has, ``redis://localhost:6379/0``; ``rewrite``
(see :func:`redis_rewrite`) points those URLs at the test's private server.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import SkipTest

from sybil import Document, Example
from sybil.parsers.markdown import CodeBlockParser, SkipParser

# Every ```python block of the pages; redis_rewrite() points it at a private server.
DOC_REDIS_URL = re.compile(r"redis://localhost:6379(?:/\d+)?")
# Fence openers and closers (CommonMark: ``` or ~~~, up to three spaces of indent).
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$", re.MULTILINE)
PYTHON_SPELLINGS = frozenset({"python", "py", "python3", "pycon", "ipython", "python-repl"})
INVISIBLE = re.compile(r"^[ \t]*<!--\s*invisible-code(?:-block)?:\s*python\b", re.MULTILINE)


class DocExampleError(AssertionError):
    """A block of a page failed: the page, the line and what went wrong."""


@dataclass
class PageRun:
    """What running one page did."""

    path: Path
    ran: list[int] = field(default_factory=list)  # first lines of the blocks that ran
    skipped: dict[int, str] = field(default_factory=dict)  # line -> the reason given
    namespace: dict[str, Any] = field(default_factory=dict)


def redis_rewrite(url: str) -> Callable[[str], str]:
    """Replace every ``redis://localhost:6379[/n]`` of a block with ``url``."""
    return lambda source: DOC_REDIS_URL.sub(url, source)


# The PostgreSQL server a reader has: postgresql://[user[:password]@]localhost:5432/db
DOC_POSTGRES_URL = re.compile(r"postgres(?:ql)?://(?:[^@/\s\"']*@)?localhost:5432/\w+")


def postgres_rewrite(url: str) -> Callable[[str], str]:
    """Replace every ``postgresql://...@localhost:5432/<db>`` of a block with ``url``
    (a query string after it is kept)."""
    return lambda source: DOC_POSTGRES_URL.sub(url, source)


def rewrites(*steps: Callable[[str], str]) -> Callable[[str], str] | None:
    """One rewrite doing each of ``steps`` in turn (``None`` when there are none)."""
    if not steps:
        return None

    def rewrite(source: str) -> str:
        for step in steps:
            source = step(source)
        return source

    return rewrite


class _Evaluator:
    """Compile a block with top-level await allowed; await it on the page's loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rewrite: Callable[[str], str] | None
    ) -> None:
        self.loop = loop
        self.rewrite = rewrite

    def __call__(self, example: Example) -> None:
        source = str(example.parsed)
        if self.rewrite is not None:
            source = self.rewrite(source)
        # Leading newlines: a traceback names the line of the page.
        padded = "\n" * (example.line + example.parsed.line_offset) + source
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        code = compile(padded, example.path, "exec", flags=flags, dont_inherit=True)
        result = eval(code, example.namespace)
        if code.co_flags & inspect.CO_COROUTINE:
            self.loop.run_until_complete(result)


def fences(text: str) -> list[tuple[int, str]]:
    """``(line, info string)`` of every fenced block opener of a Markdown text."""
    found: list[tuple[int, str]] = []
    open_fence: str | None = None
    for match in FENCE.finditer(text):
        fence, info = match["fence"], match["info"].strip()
        line = text.count("\n", 0, match.start()) + 1
        if open_fence is None:
            open_fence = fence
            found.append((line, info))
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not info:
            open_fence = None
    return found


def run_page(path: Path, *, rewrite: Callable[[str], str] | None = None) -> PageRun:
    """Run every Python block of ``path`` in order; :class:`DocExampleError` on the
    first that fails (skipped blocks are recorded with their reasons)."""
    loop = asyncio.new_event_loop()
    evaluator = _Evaluator(loop, rewrite)
    document = Document.parse(str(path), CodeBlockParser("python", evaluator), SkipParser())
    document.namespace["__name__"] = f"docs:{path.name}"
    run = PageRun(path, namespace=document.namespace)
    try:
        for example in document:
            where = f"{path}:{example.line}"
            if example.region.evaluator is not evaluator:  # a skip directive
                action, reason = example.parsed
                if action in ("next", "start") and not (reason or "").strip():
                    raise DocExampleError(f"{where}: 'skip: {action}' must say why")
            try:
                example.evaluate()
            except SkipTest as skip:
                run.skipped[example.line] = str(skip)
                continue
            except Exception as exc:
                raise DocExampleError(f"{where}: {type(exc).__name__}: {exc}") from exc
            if example.region.evaluator is evaluator:
                run.ran.append(example.line)
    finally:
        _close(loop)
    return run


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a page left running (a task a page started and did not await)."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
