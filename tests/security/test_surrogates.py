"""A lone surrogate in a received storyboard's prompt text: the panel still renders."""

from __future__ import annotations

import json
from pathlib import Path

from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import make_project
from tests.security._support import run_storycore


async def test_a_lone_surrogate_in_the_prompt_still_renders(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    board_path = root / "storyboard.json"
    # As a received file holds it: the JSON escape of a lone surrogate.
    text = board_path.read_text().replace("a lighthouse", "a lighthouse \\ud800 at dusk")
    board_path.write_text(text)
    assert "\ud800" in json.loads(text)["shots"][0]["prompt_modules"]["subject"]
    result = await run_storycore("generate-images", "--project", str(root), "--mock", limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output[-3000:]
    assert "UnicodeEncodeError" not in result.output
    (record,) = records(load_project(root))
    assert (root / record.path).is_file()
