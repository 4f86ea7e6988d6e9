"""Open the storyboard page in a real headless Chromium: the screenshot shows the renders and
the badge; driven over DevTools, each panel shows its prompt and settings, the thumbnail's link
opens the full-size image, the local timestamps read as such, and the Content-Security-Policy
reports no violation (while it does block what it should)."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from storycore.manifest import active_record
from storycore.project import load_project, save_project
from storycore.review._board import write_board
from storycore.review._board_html import human_time

from ._cdp import CHROMIUM, FLAGS, browser_page
from ._project import add_render, copy_example
from ._renders import rendered_project

NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (CI installs Debian's `chromium` package)",
)


@pytest.mark.browser
@NEEDS_CHROMIUM
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
        *FLAGS,
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


_PANEL = """(() => {
  const panel = document.getElementById("shot_01");
  const prompt = [...panel.querySelectorAll("dt")].find((dt) => dt.textContent === "Prompt");
  const box = prompt.nextElementSibling.getBoundingClientRect();
  const time = panel.querySelector("time");
  return {
    text: panel.innerText,
    promptVisible: prompt.nextElementSibling.checkVisibility() && box.width > 0 && box.height > 0,
    href: panel.querySelector("a.full").href,
    time: [time.getAttribute("datetime"), time.innerText],
  };
})()"""
_CSP_WORDS = re.compile(r"Content[- ]Security[- ]Policy|Refused to", re.I)


def _pairs(text: str) -> dict[str, str]:
    """The panel's rows as the browser lays them out: each label on a line, its value next."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows: dict[str, str] = {}
    for label, value in itertools.pairwise(lines):
        rows.setdefault(label, value)
    return rows


@pytest.mark.browser
@NEEDS_CHROMIUM
async def test_a_panel_reads_as_a_review_document_in_chromium(tmp_path: Path) -> None:
    root = await rendered_project(tmp_path)
    project = load_project(root)
    items = project.data["asset_manifest"]["generated_images"]
    next(item for item in items if item["shot_id"] == "shot_01").update(
        take=2, profile="draft-fast"
    )
    save_project(project)
    files = await asyncio.to_thread(write_board, load_project(root))
    record = active_record(load_project(root), "shot_01")
    assert record is not None

    async with browser_page(tmp_path / "profile") as page:
        await page.navigate(files.html.resolve().as_uri())
        seen = await page.evaluate(_PANEL)
        rows = _pairs(seen["text"])
        assert rows["Prompt"].startswith('Mara & the <lamp> "keeper", ')
        assert rows["Negative"] == "blurry, <b>text</b>"
        assert rows["Seed"] == str(record.seed)
        assert (rows["Steps"], rows["CFG"]) == ("5", "6.5")
        assert rows["Size"] == f"{record.width} × {record.height} px"
        assert rows["Checkpoint"] == "v1-5-pruned-emaonly.safetensors"
        assert rows["LoRA"].startswith("ink-style.safetensors")
        assert rows["Render"] == "v1 · render 1 · shot_01_v1_r001.png"
        assert (rows["Take"], rows["Profile"]) == ("2", "draft-fast")
        assert rows["Execution"].endswith("s on the server")
        assert seen["promptVisible"]

        # timestamps: the local time in words, the instant in the datetime attribute
        instant, shown = seen["time"]
        assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}", shown), shown
        local = datetime.fromisoformat(instant).astimezone()
        assert shown == human_time(local) == rows["Rendered"]

        # the page loaded without a single CSP report, console error or exception
        assert page.messages == [], page.messages

        # the thumbnail's link is the full-size file in the project; clicking it shows it
        image = (root / record.path).resolve()
        assert seen["href"] == image.as_uri()
        await page.evaluate('document.querySelector("#shot_01 a.full").click()')
        await page.wait_for("Page.loadEventFired")
        shown_image = await page.evaluate(
            "({type: document.contentType, url: location.href,"
            " w: document.images[0].naturalWidth, h: document.images[0].naturalHeight})"
        )
        assert shown_image == {
            "type": "image/png",
            "url": image.as_uri(),
            "w": record.width,
            "h": record.height,
        }
        assert page.messages == [], page.messages

        # the policy is live: on the page, an image from elsewhere is refused and reported
        await page.navigate(files.html.resolve().as_uri())
        await page.evaluate(
            "new Promise((done) => { const img = new Image(); img.onerror = done;"
            " img.src = 'http://127.0.0.1:9/x.png'; document.body.append(img); })"
        )
        for _ in range(50):
            if any(_CSP_WORDS.search(m) for m in page.messages):
                break
            await asyncio.sleep(0.1)
        assert any(_CSP_WORDS.search(m) for m in page.messages), page.messages
