"""What every command shares, as a user meets it: -h, --version, completion, readable help,
-v/-q/--config everywhere, data on stdout, a closed pipe, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.core._cli import leaf_commands

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _options(cmd: Any) -> set[str]:
    return {opt for p in cmd.params for opt in getattr(p, "opts", [])}


def test_version_and_short_help() -> None:
    from storycore import __version__

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"storycore {__version__}"
    short = run("-h")
    assert short.returncode == 0 and "generate-images" in short.stdout
    assert "--install-completion" in short.stdout and "--show-completion" in short.stdout
    sub = run("assets", "clean", "-h")
    assert sub.returncode == 0 and "--keep-newest N" in sub.stdout


def test_every_command_has_verbose_and_quiet_and_readable_metavars() -> None:
    commands = leaf_commands()
    assert len(commands) >= 20
    for path, cmd in commands:
        opts = _options(cmd)
        assert {"-v", "--verbose", "-q", "--quiet"} <= opts, path
        ctx = typer.Context(cmd, info_name=path)
        help_text = cmd.get_help(ctx)
        for python_type in ("<str>", "<int>", "<float", "<path>", "<list[", "<bool>"):
            assert python_type not in help_text, f"{path}: {python_type} in its help"


def test_shell_completion_completes_commands_and_options() -> None:
    env = {"_STORYCORE_COMPLETE": "complete_bash", "COMP_CWORD": "1", "COMP_WORDS": "storycore gen"}
    commands = run(env=env)
    assert commands.returncode == 0 and commands.stdout.split() == ["generate-images"]
    env.update(COMP_CWORD="2", COMP_WORDS="storycore generate-images --ba")
    options = run(env=env)
    assert options.stdout.split() == ["--backend"]


def test_data_on_stdout_notices_on_stderr() -> None:
    result = run("validate", "-p", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "shot_01" in result.stdout and "valid" in result.stderr
    quiet = run("validate", "-p", str(EXAMPLE), "-q")
    assert quiet.returncode == 0 and "shot_01" in quiet.stdout and "valid" not in quiet.stderr


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited: every write gets EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "storycore", "validate", "-p", str(EXAMPLE)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


UNEXPECTED = (
    "import sys\n"
    "import storycore.project as project\n"
    "def boom(*args, **kwargs):\n"
    "    raise RuntimeError('boom')\n"
    "project.load_project = boom\n"
    "from storycore.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unexpected_error_is_one_line_and_verbose_adds_the_traceback(verbose: bool) -> None:
    args = ["validate", "-p", str(EXAMPLE)] + (["-v"] if verbose else [])
    proc = subprocess.run(
        [sys.executable, "-c", UNEXPECTED, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "error: unexpected RuntimeError: boom" in proc.stderr
    assert ("Traceback" in proc.stderr) is verbose
