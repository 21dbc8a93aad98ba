#!/usr/bin/env python3
"""Mutation testing of the conformance suite: how many planted bugs does it catch?

    .venv/bin/python scripts/mutation.py                  # every mutant (hours on a busy machine)
    .venv/bin/python scripts/mutation.py --sample 120     # a seeded random sample
    .venv/bin/python scripts/mutation.py --full sessionstore._eventlog --stop-at 07:30 \
        --module-level-last                               # one module whole, the rest in a
                                                          # seeded order until a time
    .venv/bin/python scripts/mutation.py --rerun .mutation/results.json   # its survivors
    .venv/bin/python scripts/mutation.py --list           # the mutants, not run

A small AST mutator (mutmut 3 rewrites the sources into a ``mutants/`` tree that our
src-less layout with three top-level packages and editable installs does not fit; see
docs/decisions.md). Each mutant changes one operator or constant in one of the modules
under test: the memory driver (``drivers/sessionstore_memory/``) and the base store with
its write planner (``sessionstore/base.py``, ``_planner.py``, the expiry and record-copy
helpers ``_expiry.py`` and ``_record_copy.py``, and ``_eventlog.py``, the base's event-log
primitives: the facts read before planning and the batch's view of a log).

How a mutant runs: a child ``pytest`` gets ``-p mutation``, a plugin (this file)
that installs an import hook compiling the mutated AST for the one module, before the
suite imports anything. Only the conformance tests that execute the mutated line run
(a line-coverage map per test, built once per suite by the same plugin), with ``-x``:
the first failure kills the mutant. A line inside a function body that no test executes
cannot change what a test sees: it survives without a run. A line outside function
bodies (module or class level, signatures) runs at import: the whole suite runs. The
suite is ``TestMemoryStore`` in ``tests/conformance/test_memory_conformance.py`` (its
state machine is derandomized, so a kill is reproducible). A mutant of the shared modules
(base, planner, expiry, record copy, event log) that survives on memory runs again with
the suite on the acme example driver (the tests that execute the line there), which
keeps every base method. Score: killed / (mutants - recorded equivalents, see
``scripts/mutation_equivalent.json``). Results go to ``.mutation/results.json`` (and, as
each mutant finishes, ``.mutation/results.progress.jsonl``, which ``--resume`` takes);
survivors are listed with their file, line, change and source line.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib.abc
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".mutation"
SUITE = "tests/conformance/test_memory_conformance.py"
# The second test command: the same suite on the acme example driver, which keeps every
# public method of BaseSessionStore (it implements only the storage primitives). A
# mutant of the shared modules that survives on memory runs there too, because memory
# replaces several base methods (listing, counting, creation) that other drivers use.
ACME = ROOT / "contrib/sessionstore-acme"
SECOND_SUITE = "contrib/sessionstore-acme/tests/test_acme_conformance.py"
# The third: memory with the base's generic event reads (an event-log driver that keeps
# them; memory has its own and acme no event log), for the shared survivors of both.
THIRD_SUITE = "scripts/mutation_suites/test_memory_base_event_reads.py"
SHARED = ("sessionstore.base", "sessionstore._planner", "sessionstore._expiry",
          "sessionstore._record_copy", "sessionstore._eventlog")  # fmt: skip
# Mutants recorded as equivalent, each with a reason: matched by module, function, change
# and the text of the mutated line (not by index, which moves when the code does).
EQUIVALENT = ROOT / "scripts/mutation_equivalent.json"
TARGETS = {
    "sessionstore_memory._store": ROOT / "drivers/sessionstore_memory/_store.py",
    "sessionstore_memory._index": ROOT / "drivers/sessionstore_memory/_index.py",
    "sessionstore.base": ROOT / "sessionstore/base.py",
    "sessionstore._planner": ROOT / "sessionstore/_planner.py",
    "sessionstore._expiry": ROOT / "sessionstore/_expiry.py",
    "sessionstore._record_copy": ROOT / "sessionstore/_record_copy.py",
    # the base store's event-log primitives (facts read before planning, seq tags)
    "sessionstore._eventlog": ROOT / "sessionstore/_eventlog.py",
}
_ENV_MUTANT = "SESSIONSTORE_MUTANT"  # "module:index"
_ENV_COVERAGE = "SESSIONSTORE_MUTATION_COVERAGE"  # where to write the per-test line map

_COMPARE_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}


@dataclass
class Mutant:
    module: str
    index: int
    line: int
    change: str
    function: str = ""
    code: str = ""  # the mutated line's text, stripped
    status: str = "pending"  # killed | survived | timeout | error<exit code>
    killed_by: str = ""  # "memory", "acme", "base-events" or "import" (unimportable)
    equivalent: str = ""  # the recorded reason, when this survivor is equivalent
    tests: int = 0
    seconds: float = 0.0
    last_line: int = 0  # the mutated code's last line (it may span several)


# --------------------------------------------------------------------------- mutations


def _skipped_lines(tree: ast.Module) -> set[int]:
    """Lines not worth mutating: asserts, docstrings, log calls, TYPE_CHECKING blocks."""
    skip: set[int] = set()

    def span(node: ast.AST) -> range:
        return range(node.lineno, (node.end_lineno or node.lineno) + 1)  # type: ignore[attr-defined]

    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        ):
            skip.update(span(node))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.update(span(node))  # docstrings
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "log"
        ) or (isinstance(node, ast.AnnAssign) and node.value is None):
            skip.update(span(node))
    return skip


def _annotation_nodes(tree: ast.Module) -> set[int]:
    """Ids of nodes inside annotations: never evaluated (``from __future__ import
    annotations``), so a mutant there is equivalent by construction."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            roots.append(node.returns)
    return {id(n) for root in roots for n in ast.walk(root)}


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, Any]]:
    """``(node, description, apply)`` for every mutation in ``tree`` (in a fixed order)."""
    skip = _skipped_lines(tree)
    annotations = _annotation_nodes(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if line is None or line in skip or id(node) in annotations:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = _COMPARE_SWAPS.get(type(op))
                if swap is not None:
                    yield node, f"{type(op).__name__} -> {swap.__name__}", ("cmp", i, swap)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
            swap = _BINOP_SWAPS[type(node.op)]
            yield node, f"{type(node.op).__name__} -> {swap.__name__}", ("binop", swap)
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield node, f"{type(node.op).__name__} -> {other.__name__}", ("boolop", other)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not x -> x", ("unnot",)
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            yield node, f"{node.value} -> {not node.value}", ("const", not node.value)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            new = 1 if node.value == 0 else node.value + 1
            yield node, f"{node.value} -> {new}", ("const", new)
        elif isinstance(node, ast.If | ast.While):
            yield node, "condition -> not condition", ("negate",)
        elif (
            isinstance(node, ast.Return)
            and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
        ):
            yield node, "return x -> return None", ("return_none",)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            yield node, "raise -> pass", ("drop_raise",)


class _Apply(ast.NodeTransformer):
    def __init__(self, target: int, how: Any) -> None:
        self.target = target
        self.how = how
        self.seen = -1

    def _count(self, node: ast.AST) -> bool:
        self.seen += 1
        return self.seen == self.target


def mutate(tree: ast.Module, index: int) -> tuple[ast.Module, int, str]:
    """A copy of ``tree`` with mutation ``index`` applied: (tree, line, description)."""
    tree = copy.deepcopy(tree)
    for i, (node, what, how) in enumerate(_sites(tree)):
        if i != index:
            continue
        kind = how[0]
        if kind == "cmp":
            node.ops[how[1]] = how[2]()  # type: ignore[attr-defined]
        elif kind == "binop" or kind == "boolop":
            node.op = how[1]()  # type: ignore[attr-defined]
        elif kind == "unnot":
            assert isinstance(node, ast.UnaryOp)
            node.op = ast.UAdd()  # +bool(x): the truth of x itself
            node.operand = ast.Call(ast.Name("bool", ast.Load()), [node.operand], [])
        elif kind == "const":
            node.value = how[1]  # type: ignore[attr-defined]
        elif kind == "negate":
            node.test = ast.UnaryOp(ast.Not(), node.test)  # type: ignore[attr-defined]
        elif kind == "return_none":
            node.value = ast.Constant(None)  # type: ignore[attr-defined]
        elif kind == "drop_raise":
            node.exc = None  # type: ignore[attr-defined]
            node.cause = None  # type: ignore[attr-defined]
            # a bare raise outside except is a RuntimeError: use an expression instead
            return _replace_raise(tree, node), node.lineno, what  # type: ignore[attr-defined]
        ast.fix_missing_locations(tree)
        return tree, node.lineno, what  # type: ignore[attr-defined]
    raise IndexError(index)


def _replace_raise(tree: ast.Module, target: ast.AST) -> ast.Module:
    class Swap(ast.NodeTransformer):
        def visit_Raise(self, node: ast.Raise) -> ast.AST:
            if node is target:
                return ast.copy_location(ast.Pass(), node)
            return node

    out = Swap().visit(tree)
    ast.fix_missing_locations(out)
    return out  # type: ignore[no-any-return]


def _functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function, innermost last."""
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")

    visit(tree, "")
    return out


def all_mutants(root: Path = ROOT) -> list[Mutant]:
    """Every mutant of the target modules (of the source tree at ``root``)."""
    out = []
    for module, path in TARGETS.items():
        text = (root / path.relative_to(ROOT)).read_text()
        lines = text.splitlines()
        tree = ast.parse(text, str(path))
        functions = _functions(tree)
        for i, (node, what, _) in enumerate(_sites(tree)):
            line: int = node.lineno  # type: ignore[attr-defined]
            where = [name for first, last, name in functions if first <= line <= last]
            function = where[-1] if where else "<module>"
            m = Mutant(module, i, line, what, function, lines[line - 1].strip())
            m.last_line = _last_line(node)
            out.append(m)
    return out


Key = tuple[str, str, str, str, int]


def stable_keys(mutants: list[Mutant]) -> dict[tuple[str, int], Key]:
    """(module, index) -> a key that survives edits elsewhere in the module: module,
    function, change, the line's text and which of the mutants with those four it is.
    Indices shift when code is removed (the sites are numbered breadth-first over the
    whole module); a ``--rerun`` on edited sources matches the earlier run by these."""
    seen: dict[tuple[str, str, str, str], int] = {}
    out: dict[tuple[str, int], Key] = {}
    for m in sorted(mutants, key=lambda m: (m.module, m.index)):
        base = (m.module, m.function, m.change, m.code)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out[(m.module, m.index)] = (*base, n)
    return out


def _last_line(node: ast.AST) -> int:
    """The last line of what the mutant changes: a statement or expression may span
    several lines, and the tracer reports the lines its code runs on (a parenthesized
    ``if (`` condition runs on the lines below it, never on the ``if`` line itself)."""
    part = node.test if isinstance(node, ast.If | ast.While) else node
    end: int = getattr(part, "end_lineno", None) or getattr(node, "lineno", 0) or 0
    return end


def overridden_by_memory(m: Mutant) -> bool:
    """A base-store method that the memory driver replaces: the suite on memory cannot
    reach the mutant (the method still runs for drivers that do not override it)."""
    cls, _, method = m.function.partition(".")
    if cls != "BaseSessionStore" or not method:
        return False
    import inspect

    from sessionstore_memory import MemoryStore

    from sessionstore import BaseSessionStore

    name = method.split(".")[0]
    mro = MemoryStore.__mro__
    for klass in mro[: mro.index(BaseSessionStore)]:  # MemoryStore (and anything between)
        override = vars(klass).get(name)
        if override is not None:
            func = getattr(override, "fget", override)
            return "super()" not in inspect.getsource(func)  # replaced, not extended
    return False


# --------------------------------------------------------------------------- child side


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Compiles the mutated AST for one module instead of its source."""

    def __init__(self, module: str, index: int) -> None:
        self.module = module
        self.index = index

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.module:
            return None
        return importlib.util.spec_from_file_location(
            name, TARGETS[name], loader=self, submodule_search_locations=None
        )

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        path = TARGETS[self.module]
        tree, _, _ = mutate(ast.parse(path.read_text(), str(path)), self.index)
        exec(compile(tree, str(path), "exec"), module.__dict__)  # noqa: S102 - our own source


def _install() -> None:
    spec = os.environ.get(_ENV_MUTANT)
    if spec:
        module, index = spec.rsplit(":", 1)
        sys.meta_path.insert(0, _MutantFinder(module, int(index)))


_install()  # imported as a pytest plugin (-p), before the suite imports the targets

_lines: dict[str, set[tuple[str, int]]] = {}
_seconds: dict[str, float] = {}

if os.environ.get(_ENV_COVERAGE):
    import pytest

    _files = {str(p): m for m, p in TARGETS.items()}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item: Any) -> Iterator[None]:
        hits: set[tuple[str, int]] = set()

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            module = _files.get(frame.f_code.co_filename)
            if module is None:
                return None

            def local(frame: Any, event: str, arg: Any) -> Any:
                if event == "line":
                    hits.add((module, frame.f_lineno))
                return local

            hits.add((module, frame.f_lineno))
            return local

        sys.settrace(tracer)
        import threading

        threading.settrace(tracer)
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type,unused-ignore]
            _seconds[item.nodeid] = time.perf_counter() - started
            _lines[item.nodeid] = hits

    def pytest_sessionfinish(session: Any) -> None:
        report = {"lines": {k: sorted(v) for k, v in _lines.items()}, "seconds": _seconds}
        Path(os.environ[_ENV_COVERAGE]).write_text(json.dumps(report))


# --------------------------------------------------------------------------- parent side


def _pytest(args: list[str], env: dict[str, str], timeout: float) -> int:
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p",
        "mutation", "-o", "addopts=", "-m", "not slow", "--no-header", "-W", "ignore", *args,
    ]  # fmt: skip
    env = {**env, "PYTHONPATH": f"{ROOT / 'scripts'}{os.pathsep}{env.get('PYTHONPATH', '')}"}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1
    return done.returncode


def coverage_map(acme: bool | str = False) -> dict[tuple[str, int], list[str]]:
    """(module, line) -> the suite's tests that execute it (built once, cached): on
    memory, with ``acme`` on the acme example driver (the second test command), with
    ``"base-events"`` the third (memory with the base's generic event reads)."""
    third = acme == "base-events"
    name = "coverage-base-events" if third else "coverage-acme" if acme else "coverage"
    suite = THIRD_SUITE if third else SECOND_SUITE if acme else SUITE
    acme = bool(acme) and not third
    cached = OUT / f"{name}.json"
    stamp = OUT / f"{name}.digest"
    digest = hashlib.sha256()
    sources = [*TARGETS.values(), *sorted((ROOT / "sessionstore/testing").glob("*.py"))]
    if acme:
        sources += sorted((ACME / "acme_sessionstore").glob("*.py"))
    if third:
        sources += [ROOT / SUITE]
    for source in [*sources, ROOT / suite]:
        digest.update(source.read_bytes())
    if not cached.exists() or not stamp.exists() or stamp.read_text() != digest.hexdigest():
        OUT.mkdir(exist_ok=True)
        cached.unlink(missing_ok=True)
        env = {**os.environ, _ENV_COVERAGE: str(cached)}
        if acme:
            env["PYTHONPATH"] = f"{ACME}{os.pathsep}{env.get('PYTHONPATH', '')}"
        code = _pytest([suite], env, timeout=3600)
        if code != 0:
            sys.exit(f"the suite does not pass on the unmutated code (exit {code}, {suite})")
        stamp.write_text(digest.hexdigest())
    raw: dict[str, Any] = json.loads(cached.read_text())
    seconds: dict[str, float] = raw["seconds"]
    out: dict[tuple[str, int], list[str]] = {}
    for test in sorted(raw["lines"], key=seconds.__getitem__):  # fastest first: with -x,
        # node ids are relative to the suite's rootdir (acme has its own pyproject.toml)
        node = (
            test if (ROOT / test.split("::")[0]).exists() else f"{Path(suite).parent.parent}/{test}"
        )
        for module, line in raw["lines"][test]:  # a kill usually comes early
            out.setdefault((module, int(line)), []).append(node)
    return out


def in_body(mutant: Mutant) -> bool:
    """The mutated line is inside a function's body (not a signature, class body or
    module level): it runs only when a test calls the function, so a line no test
    executes cannot change what any test sees."""
    return any(first <= mutant.line <= last for first, last in _BODIES[mutant.module])


def _body_spans(path: Path) -> list[tuple[int, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((node.body[0].lineno, node.end_lineno or node.lineno))
    return out


_BODIES = {module: _body_spans(path) for module, path in TARGETS.items()}
_STATUS = {0: "survived", 1: "killed", -1: "timeout"}
_COVER: dict[bool | str, dict[tuple[str, int], list[str]]] = {}


def _tests_for(mutant: Mutant, acme: bool | str) -> list[str] | None:
    """The tests to run (fastest first), or ``None``: no test executes the line."""
    if acme not in _COVER:
        _COVER[acme] = coverage_map(acme)
    cover = _COVER[acme]
    found: dict[str, None] = {}  # the tests that run any line of the mutated code
    for line in range(mutant.line, max(mutant.line, mutant.last_line) + 1):
        found.update(dict.fromkeys(cover.get((mutant.module, line), [])))
    tests = [t for t in found if "_long" not in t]
    if tests:
        return tests
    if in_body(mutant):
        return None
    if acme == "base-events":
        return [THIRD_SUITE]
    return [SECOND_SUITE if acme else SUITE]  # run at import (module level): all of them


def _import_fails(env: dict[str, str], module: str) -> bool:
    """The mutated module cannot even be imported (e.g. a dataclass flag that makes the
    class definition raise): every test of every suite fails, whatever it asserts."""
    env = {**env, "PYTHONPATH": f"{ROOT / 'scripts'}{os.pathsep}{env.get('PYTHONPATH', '')}"}
    code = f"import mutation, importlib; importlib.import_module({module!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=300
    )
    return done.returncode != 0 and b"IndexError" not in done.stderr


def _run_more(mutant: Mutant, acme: bool | str, env: dict[str, str], label: str) -> None:
    """One more test command (``acme`` as for :func:`_tests_for`) on a mutant that survived
    the ones before: a kill or timeout is credited to ``label``, an error is its status."""
    tests = _tests_for(mutant, acme=acme)
    if tests is None:
        return
    code = _pytest(tests, env, timeout=900)
    mutant.tests += len(tests)
    status = _STATUS.get(code, f"error{code}")
    if status in ("killed", "timeout"):
        mutant.status, mutant.killed_by = status, label
    elif status.startswith("error"):
        mutant.status = status


def run_mutant(mutant: Mutant) -> Mutant:
    env = {**os.environ, _ENV_MUTANT: f"{mutant.module}:{mutant.index}"}
    start = time.monotonic()
    tests = _tests_for(mutant, acme=False)
    mutant.status = "survived"  # no test executes the line
    if tests is not None:
        # generous: on a loaded machine the whole suite can take minutes, and a timeout
        # counts as a kill (a mutant that hangs the suite is caught by any CI timeout)
        code = _pytest(tests, env, timeout=900 if tests == [SUITE] else 300)
        mutant.tests = len(tests)
        # pytest exits 1 when a test failed; anything else (2-5: interrupted, internal or
        # usage error, no tests) says nothing about the mutant and is not counted as a kill,
        # unless the mutated module itself cannot be imported (the suite cannot start)
        mutant.status = _STATUS.get(code, f"error{code}")
        if mutant.status.startswith("error") and _import_fails(env, mutant.module):
            mutant.status = "killed"
            mutant.killed_by = "import"
    mutant.killed_by = mutant.killed_by or (
        "memory" if mutant.status in ("killed", "timeout") else ""
    )
    if mutant.status == "survived" and mutant.module in SHARED:
        # the second test command: the suite on acme, the tests that execute the line
        acme_env = {**env, "PYTHONPATH": f"{ACME}{os.pathsep}{env.get('PYTHONPATH', '')}"}
        _run_more(mutant, True, acme_env, "acme")
    if mutant.status == "survived" and mutant.module in SHARED:
        _run_more(mutant, "base-events", env, "base-events")  # the third test command
    mutant.seconds = round(time.monotonic() - start, 2)
    return mutant


def load_equivalent() -> dict[tuple[str, str, str, str], str]:
    """(module, function, change, line text) -> why that mutant is equivalent."""
    if not EQUIVALENT.exists():
        return {}
    rows = json.loads(EQUIVALENT.read_text())
    return {(r["module"], r["function"], r["change"], r["code"]): r["reason"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=0, help="run a seeded random sample")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--module", action="append", help="only these modules")
    parser.add_argument(
        "--rerun",
        type=Path,
        help="only the survivors not recorded as equivalent (and the unrunnable) of this"
        " results.json or .progress.jsonl (same mutants); also prints that run's score with"
        " these results in place",
    )
    parser.add_argument(
        "--full",
        action="append",
        default=[],
        help="run every mutant of this module first (with --sample/--stop-at: the rest after)",
    )
    parser.add_argument(
        "--stop-at",
        help="HH:MM (UTC): start no mutant after this; the rest run in a seeded random order"
        " (--seed), so what ran is a seeded random sample of them",
    )
    parser.add_argument(
        "--since",
        type=Path,
        help="with --rerun: the source tree (a worktree) the earlier run ran on, when the"
        " target modules changed since: mutants of new or changed code run too, those of"
        " removed code leave the tally (matched by module, function, change, line text)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    parser.add_argument(
        "--resume",
        type=Path,
        help="a .progress.jsonl of an interrupted run with the same sources: its mutants"
        " are taken from it, not run again",
    )
    parser.add_argument(
        "--module-level-last",
        action="store_true",
        help="mutants outside function bodies (each runs the whole suite) after the others",
    )
    args = parser.parse_args()
    mutants = all_mutants()
    if args.module:
        mutants = [m for m in mutants if m.module in args.module]
    previous_by_key: dict[Key, Mutant] = {}
    removed: list[Mutant] = []
    if args.rerun:
        previous = [Mutant(**r) for r in _results(args.rerun)]
        recorded = load_equivalent()  # no test can kill those: not run again
        # the earlier run's mutants by stable key (its indices may differ from ours)
        old_all = all_mutants(args.since) if args.since else all_mutants()
        old_keys = stable_keys(old_all)
        previous_by_key = {old_keys[(r.module, r.index)]: r for r in previous}
        current_keys = stable_keys(mutants)
        by_key = {current_keys[(m.module, m.index)]: m for m in mutants}
        removed = [r for k, r in previous_by_key.items() if k not in by_key]
        new_code = {k for k in by_key if k not in set(old_keys.values())}
        wanted = {
            k
            for k, r in previous_by_key.items()
            if (r.status == "survived" and (r.module, r.function, r.change, r.code) not in recorded)
            or r.status.startswith("error")
        } | new_code
        mutants = [m for k, m in by_key.items() if k in wanted]
        if removed or new_code:
            print(
                f"since {args.since}: {len(removed)} mutants of the earlier run are gone with"
                f" their code, {len(new_code)} are new (run now)",
                flush=True,
            )
    else:
        first = [m for m in mutants if m.module in args.full]
        rest = [m for m in mutants if m.module not in args.full]
        if args.sample:
            rest = sorted(
                random.Random(args.seed).sample(rest, min(args.sample, len(rest))),
                key=lambda m: (m.module, m.index),
            )
        elif args.stop_at:
            random.Random(args.seed).shuffle(rest)
        mutants = first + rest
        if args.module_level_last:  # a stable partition: the seeded order is kept
            mutants = [m for m in mutants if in_body(m)] + [m for m in mutants if not in_body(m)]
    if args.list:  # (with --rerun: those it would run)
        for m in mutants:
            print(f"{m.module}:{m.index}\tline {m.line}\t{m.change}")
        print(f"{len(mutants)} mutants")
        return
    resumed: dict[tuple[str, int], dict[str, Any]] = {}
    if args.resume:
        for line in args.resume.read_text().splitlines():
            row = json.loads(line)
            if not row["status"].startswith("error"):  # run again what could not be run
                resumed[(row["module"], row["index"])] = row
    deadline = None
    if args.stop_at:
        hour, minute = (int(x) for x in args.stop_at.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hour * 60 + minute) - (now.tm_hour * 60 + now.tm_min)) * 60
    _COVER[False] = coverage_map()
    if any(m.module in SHARED for m in mutants):
        _COVER[True] = coverage_map(acme=True)
        _COVER["base-events"] = coverage_map(acme="base-events")
    print(f"{len(mutants)} mutants, {args.jobs} jobs", flush=True)
    started = time.monotonic()
    OUT.mkdir(exist_ok=True)
    progress = args.out.with_suffix(".progress.jsonl")
    if args.resume is None or args.resume.resolve() != progress.resolve():
        progress.write_text("".join(json.dumps(r) + "\n" for r in resumed.values()))
    import threading

    lock = threading.Lock()

    def one(m: Mutant) -> Mutant:
        done_before = resumed.get((m.module, m.index))
        if done_before is not None:
            return Mutant(**done_before)
        if deadline is not None and time.time() > deadline:
            m.status = "not run"
            return m
        run_mutant(m)
        print(f"{m.status:9s} {m.module}:{m.index} line {m.line}: {m.change}", flush=True)
        with lock, progress.open("a") as out:
            out.write(json.dumps(asdict(m)) + "\n")
        return m

    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(one, mutants))
    not_run = [m for m in done if m.status == "not run"]
    done = [m for m in done if m.status != "not run"]
    if not_run:
        print(f"{len(not_run)} mutants not run (--stop-at {args.stop_at})")
    equivalent = load_equivalent()
    for m in done:
        if m.status == "survived":
            m.equivalent = equivalent.get((m.module, m.function, m.change, m.code), "")
    killed = sum(m.status in ("killed", "timeout") for m in done)
    timeouts = [m for m in done if m.status == "timeout"]
    if timeouts:
        print(f"{len(timeouts)} kills are timeouts (check them): {timeouts[:3]}")
    errors = [m for m in done if m.status.startswith("error")]
    if errors:
        print(f"{len(errors)} mutants could not be run (not scored): {errors[:3]}")
    done = [m for m in done if not m.status.startswith("error")]
    # the score: killed / (scored mutants - those recorded as equivalent, with a reason)
    n_equivalent = sum(bool(m.equivalent) for m in done)
    denominator = len(done) - n_equivalent
    score = killed / denominator if denominator else 0.0
    survivors = [m for m in done if m.status == "survived" and not m.equivalent]
    report = {
        "mutants": len(done),
        "killed": killed,
        "killed_by_acme": sum(m.killed_by == "acme" for m in done),
        "equivalent": n_equivalent,
        "survived": len(survivors),
        "score": round(score, 4),
        "seconds": round(time.monotonic() - started, 1),
        "sample": args.sample,
        "seed": args.seed,
        "full": args.full,
        "stop_at": args.stop_at,
        "not_run": len(not_run),
        "rerun": str(args.rerun or ""),
        "results": [asdict(m) for m in done],
    }
    if args.rerun:
        # the earlier run with these mutants' new results in place of its survivors, the
        # equivalents as recorded now: the score of that run on the current suite
        current_keys = stable_keys(all_mutants())
        rerun = {current_keys[(m.module, m.index)]: m for m in done}
        gone = {id(r) for r in removed}
        merged = [rerun.pop(k, r) for k, r in previous_by_key.items() if id(r) not in gone] + list(
            rerun.values()
        )  # what is left: mutants of new code
        report["removed_with_their_code"] = [asdict(r) for r in removed]
        for m in merged:
            m.equivalent = (
                equivalent.get((m.module, m.function, m.change, m.code), "")
                if m.status == "survived"
                else ""
            )
        report["merged"] = tally(merged)
    args.out.write_text(json.dumps(report, indent=1))
    for m in survivors:
        note = " [overridden by the memory driver]" if overridden_by_memory(m) else ""
        print(f"SURVIVED {m.module}:{m.index} line {m.line} {m.function}: {m.change}{note}")
        print(f"    {m.code}")
    print(
        f"killed {killed} (acme {report['killed_by_acme']}), equivalent {n_equivalent}, "
        f"survived {len(survivors)}: score {killed}/{denominator} = {score:.1%} "
        f"in {report['seconds']} s"
    )
    if "merged" in report:
        t = report["merged"]
        print(
            f"with the earlier run ({args.rerun}; {len(removed)} of its mutants gone with"
            f" their code): {t['mutants']} mutants, killed "
            f"{t['killed']}, equivalent {t['equivalent']}, survived {t['survived']}: "
            f"score {t['killed']}/{t['mutants'] - t['equivalent']} = {t['score']:.1%}"
        )


def _results(path: Path) -> list[dict[str, Any]]:
    """The mutants of a results.json, or of a .progress.jsonl (an unfinished run)."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())["results"]  # type: ignore[no-any-return]


def tally(mutants: list[Mutant]) -> dict[str, Any]:
    """Totals and score of scored mutants (not run / not runnable ones left out)."""
    scored = [m for m in mutants if m.status != "not run" and not m.status.startswith("error")]
    killed = sum(m.status in ("killed", "timeout") for m in scored)
    n_equivalent = sum(bool(m.equivalent) for m in scored if m.status == "survived")
    denominator = len(scored) - n_equivalent
    return {
        "mutants": len(scored),
        "killed": killed,
        "equivalent": n_equivalent,
        "survived": denominator - killed,
        "score": round(killed / denominator, 4) if denominator else 0.0,
    }


if __name__ == "__main__":
    main()
