"""The ``sessionstore`` command, driven as a user drives it (subprocesses), plus the error
layer in-process with click's CliRunner."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import sessionstore
from sessionstore import (
    DriverNotFoundError,
    IntegrityError,
    InvalidSessionIdError,
    OutcomeUnknownError,
    SessionConflictError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from sessionstore.backup import create_backup
from sessionstore.cli import _drivers
from sessionstore.cli._app import COMMANDS, cli
from sessionstore.cli._errors import CliError, ExitCode, GuardedGroup, error_line, exit_code_for

# integration: the command runs in subprocesses
pytestmark = pytest.mark.integration


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``sessionstore ARGS`` in a fresh interpreter, as a user would run it."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    full_env.pop("SESSIONSTORE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "sessionstore.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


# --- the command as a user runs it ---------------------------------------------------------


def test_group_help_lists_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    assert "Usage: sessionstore" in out.stdout
    for option in ("--version", "--debug", "--json"):
        assert option in out.stdout
    for name in COMMANDS:
        assert name in out.stdout
    assert out.stderr == ""


def test_short_help_flag() -> None:
    out = run_cli("-h")
    assert out.returncode == 0
    assert "Usage: sessionstore" in out.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str) -> None:
    out = run_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert f"Usage: sessionstore {command}" in out.stdout


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout == f"sessionstore {sessionstore.__version__}\n"


def test_no_command_shows_help_as_a_usage_error() -> None:
    out = run_cli()
    assert out.returncode == 2
    assert "Usage: sessionstore" in out.stderr
    assert out.stdout == ""


def test_unknown_command_is_a_usage_error() -> None:
    out = run_cli("no-such-command")
    assert out.returncode == 2
    assert "No such command" in out.stderr
    assert out.stdout == ""


def test_unknown_option_is_a_usage_error() -> None:
    out = run_cli("drivers", "--no-such-option")
    assert out.returncode == 2
    assert "No such option" in out.stderr


def test_drivers_lists_memory() -> None:
    out = run_cli("drivers")
    assert out.returncode == 0, out.stderr
    assert "memory" in out.stdout
    assert "sessionstore_memory:MemoryStore" in out.stdout
    assert "Broken plugins" not in out.stdout


def test_drivers_json() -> None:
    out = run_cli("drivers", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # nothing but the JSON document on stdout
    assert set(doc) == {"drivers", "broken"}
    by_scheme = {d["scheme"]: d for d in doc["drivers"]}
    assert by_scheme["memory"] == {
        "scheme": "memory",
        "target": "sessionstore_memory:MemoryStore",
        "plugin": "memory",
        "extra": None,
        "package": "sessionstore",
        "version": sessionstore.__version__,
        "available": True,
        "problem": None,
    }
    assert by_scheme["redis"]["available"] is True  # redis-py is installed here
    assert doc["broken"] == {}


_BLOCK_IMPORT = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

for name in [m for m in sys.modules if m == {blocked!r} or m.startswith({blocked!r} + ".")]:
    del sys.modules[name]
sys.meta_path.insert(0, Block())
sys.argv = ["sessionstore", *{args!r}]
from sessionstore.cli import main
main()
"""


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``sessionstore ARGS`` in an interpreter where ``module`` cannot be imported."""
    code = _BLOCK_IMPORT.format(blocked=module, args=list(args))
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip


def test_drivers_shows_a_driver_whose_dependency_is_missing_as_unavailable() -> None:
    out = run_without("redis", "drivers", "--json")
    assert out.returncode == 0, out.stderr
    by_scheme = {d["scheme"]: d for d in json.loads(out.stdout)["drivers"]}
    for scheme in ("redis", "rediss", "redis+cluster", "redis+sentinel", "unix"):
        row = by_scheme[scheme]
        assert row["available"] is False, row
        assert "No module named 'redis'" in row["problem"]
        assert "pip install 'sessionstore[redis]'" in row["problem"]
    assert by_scheme["memory"]["available"] is True and by_scheme["memory"]["problem"] is None
    table = run_without("redis", "drivers")
    assert table.returncode == 0, table.stderr
    redis_row = next(line for line in table.stdout.splitlines() if "│ redis " in line)
    assert "unavailable: ModuleNotFoundError: No module named 'redis'" in redis_row
    assert f"sessionstore {sessionstore.__version__}" in redis_row
    memory_row = next(line for line in table.stdout.splitlines() if "│ memory " in line)
    assert "│ ok" in memory_row


def test_global_json_option_means_the_same() -> None:
    out = run_cli("--json", "drivers")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(run_cli("drivers", "--json").stdout)


def _broken_plugin_dir(tmp_path: Path) -> Path:
    """A distribution whose ``sessionstore`` entry point names a module that doesn't exist."""
    dist = tmp_path / "broken_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[sessionstore]\nbroken-demo = no_such_module_for_sessionstore_tests.plugin\n"
    )
    return tmp_path


def test_drivers_reports_broken_plugins(tmp_path: Path) -> None:
    path = os.pathsep.join(
        filter(None, [str(_broken_plugin_dir(tmp_path)), os.environ.get("PYTHONPATH")])
    )
    env = {"PYTHONPATH": path}

    out = run_cli("drivers", env=env)
    assert out.returncode == 0, out.stderr
    assert "memory" in out.stdout  # one broken plugin never hides the others
    assert "Broken plugins" in out.stdout
    assert "broken-demo" in out.stdout
    assert "no_such_module_for_sessionstore_tests" in out.stdout
    assert "Traceback" not in out.stderr

    out = run_cli("drivers", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "memory" in {d["scheme"] for d in doc["drivers"]}
    assert "no_such_module_for_sessionstore_tests" in doc["broken"]["broken-demo"]


def test_missing_cli_extra_prints_install_hint() -> None:
    code = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class BlockClick(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "click" or name.startswith("click."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        for name in [m for m in sys.modules if m == "click" or m.startswith("click.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, BlockClick())
        sys.argv = ["sessionstore", "drivers"]
        from sessionstore.cli import main
        main()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "pip install 'sessionstore[cli]'" in lines[0]
    assert lines[0].startswith("error: ")


@pytest.mark.parametrize("missing", ["click", "rich"])
def test_version_works_without_the_cli_extra(missing: str) -> None:
    out = run_without(missing, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"sessionstore {sessionstore.__version__}\n"
    assert out.stderr.splitlines() == [
        f"note: the other commands need {missing!r}, which is not installed; install the "
        "cli extra: pip install 'sessionstore[cli]'"
    ]
    other = run_without(missing, "drivers")
    assert other.returncode == 1 and other.stderr.startswith("error: ")


def test_python_dash_m_sessionstore_is_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionstore", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"sessionstore {sessionstore.__version__}\n"
    helped = subprocess.run(
        [sys.executable, "-m", "sessionstore", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert helped.returncode == 0 and "Usage: sessionstore" in helped.stdout


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", "complete -o nosort -F _sessionstore_completion sessionstore"),
        ("zsh", "#compdef sessionstore"),
        ("fish", "complete --no-files --command sessionstore"),
    ],
)
def test_shell_completion_scripts(shell: str, expected: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionstore"], capture_output=True, text=True, timeout=60,
        check=False, env={**os.environ, "_SESSIONSTORE_COMPLETE": f"{shell}_source"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
    assert "_SESSIONSTORE_COMPLETE=" in out.stdout  # the script calls back into the command


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_SESSIONSTORE_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(cword)}  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "sessionstore"], capture_output=True, text=True,
            timeout=60, check=False, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert complete("sessionstore dr", 1) == ["plain,drivers"]
    assert "plain,--status" in complete("sessionstore ls --st", 2)


def test_cli_package_import_does_not_need_click() -> None:
    code = "import sys, sessionstore.cli;print('click' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- in-process: rendering ---------------------------------------------------------------


def test_drivers_table_does_not_interpret_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_drivers, "broken_plugins", lambda: {"evil": "boom [bold]x[/bold]"})
    result = CliRunner().invoke(cli, ["drivers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "boom [bold]x[/bold]" in result.stdout


def test_json_and_command_without_json_is_a_usage_error() -> None:
    @click.command()
    def plain() -> None:
        """No JSON form."""

    cli.add_command(plain, "plain-test-only")
    try:
        result = CliRunner().invoke(cli, ["--json", "plain-test-only"])
    finally:
        cli.commands.pop("plain-test-only")
    assert result.exit_code == 2
    assert "has no --json output" in result.stderr


# --- in-process: the error layer ------------------------------------------------------------


def _tiny_cli(exc: BaseException) -> click.Group:
    @click.group(cls=GuardedGroup)
    @click.option("--debug", is_flag=True)
    def tiny(debug: bool) -> None:
        """A group using the CLI's error layer."""

    @tiny.command()
    def explode() -> None:
        raise exc

    @tiny.command()
    def fine() -> None:
        click.echo("ok")

    return tiny


def test_error_becomes_one_line_and_exit_code() -> None:
    exc = StoreUnavailableError("cannot reach redis://:***@cache:6379/0: connection refused")
    result = CliRunner().invoke(_tiny_cli(exc), ["explode"])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr == ("error: cannot reach redis://:***@cache:6379/0: connection refused\n")
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_then_the_line() -> None:
    exc = StoreUnavailableError("connection refused")
    result = CliRunner().invoke(_tiny_cli(exc), ["--debug", "explode"])
    assert result.exit_code == 4
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "StoreUnavailableError: connection refused" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: connection refused"


def test_unexpected_exception_is_one_line_with_type_and_hint() -> None:
    result = CliRunner().invoke(_tiny_cli(RuntimeError("boom\n  second line")), ["explode"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == ["error: RuntimeError: boom second line (run with --debug for the traceback)"]
    assert "Traceback" not in result.output


def test_keyboard_interrupt_exits_130() -> None:
    result = CliRunner().invoke(_tiny_cli(KeyboardInterrupt()), ["explode"])
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted\n"


def test_cli_error_carries_its_code() -> None:
    exc = CliError("3 corrupt records", ExitCode.INTEGRITY)
    result = CliRunner().invoke(_tiny_cli(exc), ["explode"])
    assert result.exit_code == 7
    assert result.stderr == "error: 3 corrupt records\n"


def test_click_usage_errors_pass_through() -> None:
    runner = CliRunner()
    tiny = _tiny_cli(RuntimeError("never raised"))
    result = runner.invoke(tiny, ["fine", "--bogus"])
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    result = runner.invoke(tiny, ["fine"])
    assert result.exit_code == 0
    assert result.stdout == "ok\n"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidSessionIdError("../x"), ExitCode.USAGE),
        (DriverNotFoundError("nope", ["memory"]), ExitCode.CONFIG),
        (sessionstore.ConfigurationError("unknown option 'x'"), ExitCode.CONFIG),
        (sessionstore.StoreNotFoundError("no store at /x"), ExitCode.NO_STORE),
        (StoreUnavailableError("down"), ExitCode.UNAVAILABLE),
        (OutcomeUnknownError("maybe"), ExitCode.UNAVAILABLE),
        (SessionNotFoundError("s1"), ExitCode.NOT_FOUND),
        (SessionConflictError("s1", 1, 2), ExitCode.CONFLICT),
        (sessionstore.SessionExistsError("s1"), ExitCode.CONFLICT),
        (IntegrityError("bad checksum", "s1"), ExitCode.INTEGRITY),
        (sessionstore.UnsupportedFormatError("format 9", "s1"), ExitCode.INTEGRITY),
        (sessionstore.QuotaExceededError("too big"), ExitCode.ERROR),
        (PermissionError(13, "Permission denied"), ExitCode.ERROR),
        (ValueError("bug"), ExitCode.ERROR),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_exit_code_table(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) is code
    line = error_line(exc)
    assert "\n" not in line
    assert line


def test_expected_errors_have_no_debug_hint() -> None:
    assert error_line(SessionNotFoundError("s1")) == "session 's1' not found"
    assert (
        error_line(OSError(2, "No such file or directory")) == "[Errno 2] No such file or directory"
    )
    assert error_line(RuntimeError()) == "RuntimeError (run with --debug for the traceback)"


def test_driver_not_found_end_to_end_through_the_real_group() -> None:
    @click.command()
    def needs_driver() -> None:
        sessionstore.get_driver("nosuchscheme")

    cli.add_command(needs_driver, "needs-driver-test-only")
    try:
        result = CliRunner().invoke(cli, ["needs-driver-test-only"])
    finally:
        cli.commands.pop("needs-driver-test-only")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: no driver for scheme 'nosuchscheme'")
    assert len(result.stderr.splitlines()) == 1


# --- store commands never create a store ---------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["show", "s1"],
        ["stats"],
        ["doctor", "--dry-run"],
        ["doctor"],
        ["rm", "s1"],
        ["purge-expired"],
        ["backup", "OUT"],
        ["migrate", "DST"],
    ],
)
def test_commands_on_no_store_exit_8_and_write_nothing(tmp_path: Path, command: list[str]) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    replace = {"OUT": str(tmp_path / "b.jsonl"), "DST": f"file://{tmp_path / 'dst'}"}
    args = [replace.get(a, a) for a in command]
    for url, gone in ((f"file://{folder}", "not a sessionstore file store"),
                      (f"file://{tmp_path / 'absent'}", "does not exist")):  # fmt: skip
        out = run_cli(args[0], url, *args[1:])
        assert out.returncode == 8 == int(ExitCode.NO_STORE), (out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and gone in out.stderr
        assert len(out.stderr.splitlines()) == 1
        assert out.stdout == ""
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "absent").exists()
    assert not (tmp_path / "b.jsonl").exists()
    assert not (tmp_path / "dst").exists()


def test_commands_on_an_existing_file_store_still_work(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    restored = run_cli("restore", url, str(_tiny_backup(tmp_path)), "--json")  # creates it
    assert restored.returncode == 0, restored.stderr
    listed = run_cli("ls", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)["items"]] == ["s1"]


def _tiny_backup(tmp_path: Path) -> Path:
    async def build() -> Path:
        async with sessionstore.open_store("memory://") as store:
            await store.create_session(id="s1")
            info = await create_backup(store, tmp_path / "tiny.jsonl")
        return Path(info.path)

    return asyncio.run(build())
