"""Settings mistakes as a user meets them: real ``python -m storycore`` child processes, their
exit codes, what stderr says, what stdout holds when it is a pipe."""

from __future__ import annotations

import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.core._cli import leaf_commands

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"
LONG_PROMPT = "blurry, " * 40 + "the very end"
CONFIG = f"""\
log_level = "info"

[comfyui]
extra_args = ["--a", "--b"]

[render]
negative_prompt = "{LONG_PROMPT}"

[[backends]]
url = "https://me:hunter2@studio.example/comfy"
token = "tok-123"
headers = {{ Authorization = "Bearer abc", "X-Api-Key" = "sekrit" }}

[templates]
sdxl = "templates/sdxl.binding.toml"
"""
SECRETS = ("hunter2", "tok-123", "Bearer abc", "sekrit")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """stdout and stderr are pipes, as in ``storycore ... | less``."""
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_config_show_prints_toml_whole_values_and_masks_credentials(config_file: Path) -> None:
    result = run("config", "show", "--config", str(config_file), env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert LONG_PROMPT in out  # a pipe 40 columns wide cuts nothing
    assert "…" not in out and "..." not in out
    for secret in SECRETS:
        assert secret not in out
    lines = {line.split("=")[0].strip(): line for line in out.splitlines()}
    assert " ".join(lines["log_level"].split()) == f'log_level = "info" # config file {config_file}'
    assert '= ["--a", "--b"]' in lines["comfyui.extra_args"]
    assert f"# config file {config_file}" in lines["comfyui.extra_args"]
    assert "= true" in lines["comfyui.gpu"] and lines["comfyui.gpu"].endswith("# default")
    assert '= { sdxl = "templates/sdxl.binding.toml" }' in lines["templates"]
    # the whole listing is a TOML document: what it shows is what a file would hold
    shown = tomllib.loads(out)
    assert shown["render"]["negative_prompt"] == LONG_PROMPT
    assert shown["comfyui"]["port"] == 8188 and shown["comfyui"]["gpu"] is True
    (backend,) = shown["backends"]
    assert backend["url"] == "https://me:***@studio.example/comfy"
    assert backend["token"] == "***"
    assert backend["headers"] == {"Authorization": "***", "X-Api-Key": "***"}
    assert "vae" not in shown["render"]  # not set: a comment line
    assert any(line.startswith("# render.vae ") for line in out.splitlines())


def test_config_show_json_masks_credentials(config_file: Path) -> None:
    result = run("config", "show", "--config", str(config_file), "--json")
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout
    body = json.loads(result.stdout)
    assert body["settings"]["backends"][0]["headers"]["Authorization"] == "***"
    assert body["settings"]["render"]["negative_prompt"] == LONG_PROMPT
    assert body["sources"]["backends"] == f"config file {config_file}"


def test_a_typo_in_a_section_names_the_file_and_the_section_meant(tmp_path: Path) -> None:
    project = tmp_path / "board"
    shutil.copytree(EXAMPLE, project)
    toml = project / "storycore.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + "\n[rendr]\nsteps = 4\n", encoding="utf-8")
    result = run("validate", "-p", str(project))
    assert result.returncode == 2
    assert f"project {toml}: [rendr] is not a known section (did you mean [render]?)" in (
        result.stderr
    )
    assert "from default" not in result.stderr and "Traceback" not in result.stderr
    toml.write_text("[render]\nstpes = 4\n", encoding="utf-8")
    typo = run("config", "show", "-p", str(project))
    assert typo.returncode == 2 and "did you mean `steps`?" in typo.stderr
    assert str(toml) in typo.stderr and typo.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["generate-images", "-p", "{project}"],
        ["preflight", "-p", "{project}"],
        ["validate", "-p", "{project}"],
        ["config", "show"],
        ["config", "validate"],
        ["comfyui", "status"],
        ["assets", "clean", "-p", "{project}"],
        ["doctor", "-p", "{project}"],
    ],
)
def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path, command: list[str]) -> None:
    project = tmp_path / "board"
    shutil.copytree(EXAMPLE, project)

    def files() -> list[Path]:  # a command may take the project's lock (.storycore/) first
        return sorted(
            p.relative_to(project) for p in project.rglob("*") if ".storycore" not in p.parts
        )

    before = files()
    args = [part.replace("{project}", str(project)) for part in command]
    result = run(*args, "--config", "missing.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "error: missing.toml: the settings file given with --config does not exist" in (
        result.stderr
    )
    assert "leave out --config" in result.stderr and "Traceback" not in result.stderr
    assert files() == before


def test_an_unknown_variable_warns_and_the_command_still_runs() -> None:
    env = {"STORYCORE_OUTPUT_DIR": "/old/place", "STORYCORE_RENDR__STEPS": "4"}
    result = run("validate", "-p", str(EXAMPLE), env=env)
    assert result.returncode == 0, result.stderr
    assert "warning: environment variable STORYCORE_OUTPUT_DIR is not a StoryCore" in (
        result.stderr
    )
    assert "did you mean STORYCORE_RENDER__STEPS?" in result.stderr
    assert "shot_01" in result.stdout
    quiet = run("config", "validate", "--json", env=env)
    assert quiet.returncode == 0 and len(json.loads(quiet.stdout)["warnings"]) == 2


def test_an_unknown_key_in_a_known_section_from_env_exits_2_with_the_variable_meant() -> None:
    result = run("config", "validate", env={"STORYCORE_COMFYUI__PROT": "8190"})
    assert result.returncode == 2
    assert "environment STORYCORE_COMFYUI__PROT" in result.stderr
    assert "did you mean STORYCORE_COMFYUI__PORT?" in result.stderr
    as_json = json.loads(
        run("config", "validate", "--json", env={"STORYCORE_COMFYUI__PROT": "1"}).stdout
    )
    assert as_json["ok"] is False and as_json["exit_code"] == 2


def test_a_project_folder_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = run("config", "show", "-p", str(tmp_path / "nope"))
    assert result.returncode == 3
    assert f"{tmp_path / 'nope'}: does not exist" in result.stderr and result.stdout == ""


# --- every command that reads settings takes --config, and honours it ---------------------------

_READERS = {"cli_settings"}  # the one function that passes the command's --config on
_BYPASS = {"resolve_settings", "build_report"}  # read settings without the command's --config


def _calls(func: Callable[..., Any], seen: set[str]) -> set[str]:
    """Names of the functions ``func`` calls, following helpers of its own module."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = node.func
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if name:
                names.add(name)
    for name in sorted(names - seen):
        seen.add(name)
        helper = func.__globals__.get(name)
        if inspect.isfunction(helper) and helper.__module__ == func.__module__:
            names |= _calls(helper, seen)
    return names


def test_every_command_that_reads_settings_takes_config_and_no_other_does() -> None:
    commands = leaf_commands()
    assert len(commands) >= 20
    readers = []
    for path, cmd in commands:
        func = inspect.unwrap(cmd.callback)
        calls = _calls(func, set())
        takes_config = any("--config" in getattr(p, "opts", []) for p in cmd.params)
        reads = bool(calls & (_READERS | _BYPASS))
        assert takes_config == reads, (
            f"{path}: {'reads settings but has no --config' if reads else '--config is ignored'}"
        )
        if reads:
            readers.append(path)
            assert calls & _READERS, f"{path} reads settings without its --config"
    assert {"generate-images", "preflight", "validate", "config show", "comfyui status"} <= set(
        readers
    )
