"""The storyboard sheet: JPEG geometry and content, a self-contained and escaped HTML page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from storycore.project import Project, load_project, save_project
from storycore.review._board import board_geometry, write_board

from ._project import add_render, copy_example

RED = (220, 20, 20)
BLUE = (20, 40, 220)


def _project(tmp_path: Path, hostile: bool = False) -> Project:
    project = load_project(copy_example(tmp_path))
    if hostile:
        project.storyboard["shots"][2]["title"] = '<script>alert("x")</script> & "Lamp"'
        save_project(project, storyboard=True)
        project = load_project(project.root)
    add_render(project, "shot_01", color=RED, seed=42, seconds=12.25)
    add_render(project, "shot_02", color=BLUE, placeholder=True, seed=7)
    save_project(project)
    return load_project(project.root)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster") and value is not None:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_geometry_is_a_grid_of_four_columns() -> None:
    geo = board_geometry(7)
    assert (geo.columns, geo.rows, geo.thumb) == (4, 2, (320, 180))
    assert geo.size == (16 + 4 * (320 + 16), 56 + 2 * (180 + 44 + 16) + 16) == (1360, 552)
    assert board_geometry(2).size == (16 + 2 * 336, 56 + 240 + 16)
    assert board_geometry(5, aspect=1.0).thumb == (320, 320)


def _near(got: object, want: tuple[int, int, int], tolerance: int = 4) -> bool:
    assert isinstance(got, tuple)
    return all(abs(int(g) - w) <= tolerance for g, w in zip(got, want, strict=True))


def test_board_png_has_the_right_size_and_shows_the_panels(tmp_path: Path) -> None:
    project = _project(tmp_path)
    files = write_board(project)
    assert files.sheet == project.root / "storyboard" / "board.jpg"
    assert (files.panels, files.rendered, files.placeholders, files.missing) == (7, 1, 1, 0)
    with Image.open(files.sheet) as opened:
        sheet = opened.convert("RGB")
    assert sheet.size == (1360, 552)
    # shot_01 tile (column 0, row 0): the red render, scaled to the 320x180 box (tiles come
    # from the cached JPEG thumbnail, so colours are within JPEG's rounding)
    assert _near(sheet.getpixel((16 + 160, 56 + 90)), RED)
    # shot_02 tile: blue placeholder with the orange PLACEHOLDER badge in its corner
    assert _near(sheet.getpixel((352 + 160, 56 + 120)), BLUE)
    badge = sheet.crop((352 + 6, 56 + 6, 352 + 80, 56 + 26)).getcolors(4096) or []
    assert any(_near(color, (230, 126, 34)) for _, color in badge)
    # shot_03 is not rendered: a grey tile
    assert _near(sheet.getpixel((688 + 10, 56 + 10)), (96, 96, 100))
    assert not list((project.root / "storyboard").glob(".*.tmp"))


def test_missing_file_shows_a_grey_tile_not_a_crash(tmp_path: Path) -> None:
    project = _project(tmp_path)
    os.unlink(project.root / "assets/images/generated/shot_01/shot_01_v1_r001.png")
    files = write_board(project)
    assert files.missing == 1
    with Image.open(files.sheet) as opened:
        assert _near(opened.convert("RGB").getpixel((16 + 10, 56 + 10)), (96, 96, 100))
    assert "file missing" in files.html.read_text(encoding="utf-8")


def test_a_record_pointing_outside_the_project_is_not_read(tmp_path: Path) -> None:
    project = _project(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(
        (project.root / "assets/images/generated/shot_01/shot_01_v1_r001.png").read_bytes()
    )
    items = project.data["asset_manifest"]["generated_images"]
    items[0]["path"] = "assets/images/generated/../../../secret.png"
    save_project(project)
    files = write_board(load_project(project.root))
    assert files.missing == 1
    assert files.html.read_text(encoding="utf-8").count("data:image/jpeg") == 1


def test_html_is_self_contained_and_lists_every_panel(tmp_path: Path) -> None:
    project = _project(tmp_path, hostile=True)
    files = write_board(project)
    page = files.html.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    # images are embedded; the only other URLs are relative links to renders in the project
    images = [url for url in parser.urls if url.startswith("data:image/")]
    links = [url for url in parser.urls if not url.startswith("data:image/")]
    assert links and all(url.startswith("../assets/images/generated/") for url in links)
    assert all((files.html.parent / url).resolve().is_file() for url in links)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">" in page
    )
    assert "7 panels · 1 rendered · 1 placeholder<" in page
    assert sum(url.startswith("data:image/jpeg;base64,") for url in images) == 2
    text = " ".join(parser.text)
    for shot in project.shots:
        assert shot.title in text, shot.title
        assert shot.prompt_modules.camera in text
        assert shot.prompt_modules.lighting in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;Lamp&quot;" in page
    assert "<script>" not in page
    assert text.count("PLACEHOLDER") == 2  # the badge, and the status line
    assert "12.2 s" in text or "12.3 s" in text
    assert ">42<" in page and ">7<" in page


def test_board_command_json(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "storycore", "board", "--project", str(project.root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is True and body["panels"] == 7 and body["placeholders"] == 1
    assert Path(body["sheet"]).is_file() and Path(body["html"]).is_file()


def test_long_boards_get_more_sheets_and_thumbnails_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storycore.review._board as board

    project = _project(tmp_path)
    monkeypatch.setattr(board, "SHEET_PAGE", 3)
    files = write_board(project)
    assert [p.name for p in files.pages] == ["board.jpg", "board-2.jpg", "board-3.jpg"]
    with Image.open(files.pages[2]) as last:
        assert last.size == board_geometry(1).size  # the 7th panel alone
    # two rendered panels, each thumbnail made once (the page embeds it, the sheet scales it)
    with board.thumb_cache(project.root) as cache:
        assert len(cache) == 2
    import storycore.review._thumbcache as thumbcache

    made: list[str] = []
    original = thumbcache.jpeg_bytes
    monkeypatch.setattr(thumbcache, "jpeg_bytes", lambda image: made.append("x") or original(image))
    monkeypatch.setattr(board, "SHEET_PAGE", 96)
    again = write_board(project)
    assert [p.name for p in again.pages] == ["board.jpg"]
    assert not (project.root / "storyboard" / "board-2.jpg").exists()
    assert again.html.read_text(encoding="utf-8").count("data:image/jpeg") == 2
    assert made == []  # the second refresh read the cached thumbnails and made none


def test_a_refresh_redraws_only_the_pages_whose_panels_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storycore.review._board as board

    project = _project(tmp_path)
    monkeypatch.setattr(board, "SHEET_PAGE", 3)
    # what an older version wrote, or a user's file: nothing proves it is ours, so it stays
    old_sheet = project.root / "storyboard" / "board.png"
    old_sheet.parent.mkdir(parents=True, exist_ok=True)
    old_sheet.write_bytes(b"old")
    first = write_board(project)
    assert old_sheet.read_bytes() == b"old"
    drawn = {p.name: p.stat().st_mtime_ns for p in first.pages}

    # nothing changed: no page is drawn again
    again = write_board(load_project(project.root))
    assert {p.name: p.stat().st_mtime_ns for p in again.pages} == drawn

    # a new render of shot_05 (page 2) and a new title for shot_07 (page 3): page 1 is kept
    project = load_project(project.root)
    add_render(project, "shot_05", color=RED)
    project.storyboard["shots"][6]["title"] = "A new title"
    save_project(project, storyboard=True)
    third = write_board(load_project(project.root))
    now = {p.name: p.stat().st_mtime_ns for p in third.pages}
    assert now["board.jpg"] == drawn["board.jpg"]
    assert now["board-2.jpg"] != drawn["board-2.jpg"]
    assert now["board-3.jpg"] != drawn["board-3.jpg"]
    with Image.open(third.pages[1]) as page:  # shot_05 is the second tile of page 2
        assert _near(page.convert("RGB").getpixel((352 + 160, 56 + 90)), RED)
    assert third.rendered == 2
