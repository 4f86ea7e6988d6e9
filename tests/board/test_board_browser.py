"""Open the storyboard page in a real headless Chromium and look at the screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from storycore.board import write_board
from storycore.project import load_project, save_project

from ._project import add_render, copy_example

CHROMIUM = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if (found := shutil.which(name))
    ),
    None,
)


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (CI installs Debian's `chromium` package)",
)
def test_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01", color=(230, 20, 20))
    add_render(project, "shot_02", color=(20, 200, 40), placeholder=True)
    save_project(project)
    files = write_board(load_project(project.root))
    shot = tmp_path / "screenshot.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        files.html.resolve().as_uri(),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("headless chromium did not finish within 90 s")
    assert shot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    with Image.open(shot) as opened:
        image = opened.convert("RGB")
    assert image.size == (1280, 2000)
    colors = image.getcolors(1 << 20) or []
    assert len(colors) > 20, "the screenshot is blank"
    # the page background, and both embedded renders, were drawn
    pixels = {color: count for count, color in colors}
    assert pixels.get((30, 30, 32), 0) > 100_000

    def near(target: tuple[int, int, int]) -> int:
        return sum(
            count
            for color, count in pixels.items()
            if all(abs(a - b) <= 12 for a, b in zip(color, target, strict=True))
        )

    assert near((230, 20, 20)) > 5_000, "the red render is not visible"
    assert near((20, 200, 40)) > 5_000, "the green placeholder is not visible"
    assert near((230, 126, 34)) > 200, "the PLACEHOLDER badge is not visible"
