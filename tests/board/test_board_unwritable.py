"""A board that cannot be written is one paragraph naming the path and what to do (exit 3),
never a traceback: from `storycore board`, and as a warning from the end-of-run refresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storycore.errors import ProjectError
from storycore.project import load_project, save_project
from storycore.review._board import write_board

from ._project import add_render, copy_example


def _storycore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _project_with_a_file_for_the_board_folder(tmp_path: Path) -> Path:
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01")
    save_project(project)
    (project.root / "storyboard").write_text("notes that happen to be called storyboard\n")
    return project.root


def test_a_file_where_the_board_folder_should_be(tmp_path: Path) -> None:
    root = _project_with_a_file_for_the_board_folder(tmp_path)
    result = _storycore("board", "--project", str(root))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    message = " ".join(result.stderr.split())
    assert f"{root / 'storyboard'}: cannot write the storyboard sheet" in message
    assert "'storyboard' is a file, not a folder" in message
    assert "Move or rename that file" in message and "run `storycore board` again" in message
    assert len(result.stderr.strip().splitlines()) <= 4  # one paragraph (wrapped at most)
    # the file is left alone
    assert (root / "storyboard").read_text().startswith("notes that")

    as_json = _storycore("board", "--project", str(root), "--json")
    assert as_json.returncode == 3 and "Traceback" not in as_json.stderr
    body = json.loads(as_json.stdout or as_json.stderr)
    assert body["error"] == "ProjectError" and body["where"] == str(root / "storyboard")


def test_write_board_raises_a_project_error_naming_the_path(tmp_path: Path) -> None:
    root = _project_with_a_file_for_the_board_folder(tmp_path)
    with pytest.raises(ProjectError) as caught:
        write_board(load_project(root))
    assert caught.value.where == str(root / "storyboard")
    assert caught.value.exit_code == 3


_NO_OVERRIDE = "-dac_override,-dac_read_search"


def _as_a_user() -> list[str]:
    """A command prefix under which file permissions apply: nothing for a normal user; for
    root (CI containers, this machine), ``setpriv`` without the capabilities that let root
    ignore them. Skips when neither works."""
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX permissions only")
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", f"--bounding-set={_NO_OVERRIDE}", f"--inh-caps={_NO_OVERRIDE}"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.skip("running as root without setpriv: permissions do not stop root")
    return prefix


@pytest.mark.parametrize("what", ["board folder", "whole project"])
def test_a_read_only_project(tmp_path: Path, what: str) -> None:
    prefix = _as_a_user()
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01")
    save_project(project)
    board = project.root / "storyboard"
    board.mkdir()
    read_only = [board] if what == "board folder" else [board, *project.root.rglob("*")]
    if what == "whole project":
        read_only.append(project.root)
    modes = {path: path.stat().st_mode for path in read_only}
    for path in read_only:
        path.chmod(modes[path] & ~0o222)
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "storycore", "board", "--project", str(project.root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    message = " ".join(result.stderr.split())
    assert f"{board}: cannot write the storyboard sheet (Permission denied)" in message
    assert f"Make it writable (for example `chmod u+w {board}`)" in message
    assert not list(board.iterdir())  # no temporary file left behind


def test_the_end_of_run_refresh_warns_and_the_render_still_counts(tmp_path: Path) -> None:
    root = _project_with_a_file_for_the_board_folder(tmp_path)
    result = _storycore("generate-images", "--project", str(root), "--mock", "--shots", "shot_02")
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "could not refresh the storyboard sheet:" in message
    assert f"{root / 'storyboard'}: cannot write the storyboard sheet" in message
    assert result.returncode in (0, 9), result.stderr  # the render itself went through
    assert (root / "assets/images/generated/shot_02/shot_02_v1_r001.png").is_file()
