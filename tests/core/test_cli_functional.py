"""The CLI as a user runs it: a real child process, exit codes, one-paragraph errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def _copy_example(tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "board"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _edit_board(root: Path, edit: Any) -> None:
    board = json.loads((root / "storyboard.json").read_text())
    edit(board)
    (root / "storyboard.json").write_text(json.dumps(board))


def _typo(board: dict[str, Any]) -> None:
    board["shots"][2]["prompt_modules"]["technical"]["stpes"] = 30


def test_validate_warns_about_an_unknown_key_and_strict_makes_it_an_error(
    tmp_path: Path,
) -> None:
    root = _copy_example(tmp_path)
    _edit_board(root, _typo)
    board_file = str(root / "storyboard.json")
    result = run("validate", "-p", str(root))
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {board_file}: shots[2].prompt_modules.technical.stpes (shot 'shot_03'): "
        "unknown key `stpes`; did you mean `steps`?"
    ) in result.stderr
    assert "stpes" not in result.stdout and "shot_03" in result.stdout
    strict = run("validate", "-p", str(root), "--strict")
    assert strict.returncode == 3
    assert strict.stdout == ""
    assert "shots[2].prompt_modules.technical.stpes" in strict.stderr
    assert "did you mean `steps`?" in strict.stderr and "--strict" in strict.stderr
    assert "Traceback" not in strict.stderr
    as_json = run("validate", "-p", str(root), "--json")
    body = json.loads(as_json.stdout)
    assert [(w["file"], w["path"], w["suggestion"]) for w in body["warnings"]] == [
        (board_file, "shots[2].prompt_modules.technical.stpes", "steps")
    ]
    strict_json = run("validate", "-p", str(root), "--json", "--strict")
    assert strict_json.returncode == 3
    assert json.loads(strict_json.stdout)["exit_code"] == 3


def test_the_example_validates_strictly_without_a_warning() -> None:
    result = run("validate", "-p", str(EXAMPLE), "--strict")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_validate_shows_each_value_and_where_it_came_from(tmp_path: Path) -> None:
    root = _copy_example(tmp_path)
    (root / "storycore.toml").write_text('[render]\nsteps = 33\nsampler = "dpmpp_2m"\n')
    _edit_board(root, lambda b: b["shots"][1]["prompt_modules"]["technical"].pop("steps"))
    result = run("validate", "-p", str(root))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if "shot_02" in line)
    values, sources = lines[row], lines[row + 1]
    cells = [c.strip() for c in values.split("│")[1:-1]]
    kinds = [c.strip() for c in sources.split("│")[1:-1]]
    head = [c.strip() for c in next(line for line in lines if "Steps" in line).split("┃")[1:-1]]
    by_column = dict(zip(head, zip(cells, kinds, strict=True), strict=True))
    assert by_column["Steps"] == ("33", "project default")
    assert by_column["Sampler"] == ("dpmpp_2m", "project default")
    assert by_column["CFG"] == ("7", "shot")
    assert by_column["Scheduler"] == ("normal", "built-in")
    assert f"render.steps from project {root / 'storycore.toml'}" in result.stdout
    first = json.loads(run("validate", "-p", str(root), "--json").stdout)["panels"]
    assert first[0]["values"]["steps"] == {
        "value": 20,
        "source": "shot",
        "detail": "prompt_modules.technical.steps",
    }
    assert first[1]["values"]["steps"]["value"] == 33
    assert first[1]["values"]["steps"]["source"] == "project default"


def test_validation_errors_are_said_for_people(tmp_path: Path) -> None:
    root = _copy_example(tmp_path)
    _edit_board(root, lambda b: b["shots"][0].update(shot_id="shot 01!"))
    result = run("validate", "-p", str(root))
    assert result.returncode == 3
    assert str(root / "storyboard.json") in result.stderr
    assert "shots[0].shot_id: should be letters, digits, `_ . -`, at most 128 characters" in (
        result.stderr
    )
    assert "pattern" not in result.stderr


def test_schema_prints_json_schemas_on_stdout() -> None:
    for kind, title in (("storyboard", "storyboard.json"), ("project", "project.json")):
        result = run("schema", kind)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        schema = json.loads(result.stdout)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"] == f"StoryCore {title}"
        assert schema["additionalProperties"] is False
    bad = run("schema", "storybored")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "storyboard" in bad.stderr and "Traceback" not in bad.stderr


def test_init_prints_a_next_step_that_copy_pastes(tmp_path: Path) -> None:
    import shlex

    base = tmp_path / "my films"
    base.mkdir()
    made = run("init", "Night Train", "--path", str(base))
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""
    line = next(x for x in made.stderr.splitlines() if "next:" in x)
    command = line.split("next:", 1)[1].strip()
    assert shlex.split(command) == [
        "storycore",
        "generate-images",
        "--project",
        str(base / "Night Train"),
    ]


def test_init_refuses_a_folder_with_a_storyboard_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Film"
    root.mkdir()
    (root / "storyboard.json").write_text('{"shots": []}')
    result = run("init", "Film", "--path", str(tmp_path))
    assert result.returncode == 3
    assert "storyboard.json" in result.stderr and "nothing was written" in result.stderr
    assert (root / "storyboard.json").read_text() == '{"shots": []}'
    assert [p.name for p in root.iterdir()] == ["storyboard.json"]


@pytest.mark.parametrize(
    ("text", "windows", "quoted"),
    [
        ("plain/path", False, "plain/path"),
        ("my films/Night Train", False, "'my films/Night Train'"),
        ("it's", False, "'it'\"'\"'s'"),
        (r"C:\films\night", True, r"C:\films\night"),
        (r"C:\my films\Night Train", True, r'"C:\my films\Night Train"'),
        (r"C:\$cash\it's", True, r"'C:\$cash\it''s'"),
        ("", True, '""'),
    ],
)
def test_shell_quote(text: str, windows: bool, quoted: str) -> None:
    from storycore.cli._project_cmds import shell_quote

    assert shell_quote(text, windows=windows) == quoted
