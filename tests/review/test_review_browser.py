"""The review page in a real headless Chromium (Playwright, the system Chromium) against a real
``storycore review`` child on a project rendered by a real ``generate-images --mock`` child:
the board opens, a take is picked and approved through the page and lands in project.json,
with no console error and no CSP violation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.assets._project import copy_example

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright does not import"),
]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp / "xdg")}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = copy_example(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "storycore",
            "generate-images",
            "--mock",
            "--takes",
            "2",
            "--project",
            str(root),
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode in (0, 9), done.stdout + done.stderr
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storycore",
            "review",
            "--port",
            "0",
            "--no-open",
            "--project",
            str(root),
        ],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Review page: "), line
        yield line.removeprefix("Review page: ").strip(), root
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_open_pick_approve_no_console_error(served: tuple[str, Path]) -> None:
    url, root = served
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " e => console.error('CSP ' + e.violatedDirective))"
        )
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=20_000)
        cards = page.locator("#board .card")
        assert cards.count() == 7
        card = page.locator('.card[data-shot="shot_01"]')
        assert card.locator("button.take").count() == 2
        second = card.locator("button.take").nth(1)
        asset = second.get_attribute("data-asset")
        second.click()
        page.wait_for_selector(
            f'.card[data-shot="shot_01"] button.take.active[data-asset="{asset}"]'
        )
        card.locator("button.approve").click()
        page.wait_for_selector('.card[data-shot="shot_01"] .badge.approved')
        data = json.loads((root / "project.json").read_text())
        assert data["shots_index"]["shot_01"]["active_asset"] == asset
        records = [
            r for r in data["asset_manifest"]["generated_images"] if r.get("asset_id") == asset
        ]
        assert records and records[0].get("approved") is True
        assert not problems, problems
        browser.close()
