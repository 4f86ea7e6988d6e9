"""The CLI as a user runs it: a real child process, exit codes, one-paragraph errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def test_init_validate_json(tmp_path: Path) -> None:
    made = run("init", "Night Train", "--path", str(tmp_path), "--json")
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["shots"] == ["shot_01", "shot_02", "shot_03"]
    checked = run("validate", "--project", info["project"], "--json")
    assert checked.returncode == 0, checked.stderr
    assert len(json.loads(checked.stdout)["panels"]) == 3


def test_bad_project_gives_one_paragraph_and_exit_3(tmp_path: Path) -> None:
    (tmp_path / "project.json").write_text("{oops")
    (tmp_path / "storyboard.json").write_text("{}")
    result = run("validate", "--project", str(tmp_path))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "project.json" in result.stderr and "line 1, column 2" in result.stderr
    as_json = run("validate", "--project", str(tmp_path), "--json")
    body = json.loads(as_json.stdout)
    assert body["ok"] is False and body["error"] == "ProjectError" and body["exit_code"] == 3


def test_bad_setting_gives_exit_2_naming_the_field() -> None:
    result = run("config", "validate", env={"STORYCORE_COMFYUI__PORT": "0"})
    assert result.returncode == 2
    assert "comfyui.port" in result.stderr and "STORYCORE_COMFYUI__PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_json_lists_sources() -> None:
    result = run("config", "show", "--project", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["settings"]["render"]["render_long_side"] == 768
    assert body["sources"]["render.steps"].startswith("project ")
    assert body["sources"]["comfyui.port"] == "default"


def test_usage_error_exit_code() -> None:
    result = run("validate", "--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, storycore, storycore.cli, storycore.config, storycore.project;"
        "print('rich' in sys.modules, 'aiohttp' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False False"
    assert out.stderr == ""
