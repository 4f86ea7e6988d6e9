"""``storycore board --pdf``: the board as a PDF for review meetings, one page per 12 panels with
the shot text, written atomically inside the project (or where the user says), never through a
link that leaves it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from PIL import Image

from storycore.project import load_project, save_project
from storycore.review._board_pdf import PDF_SHEET, _page
from storycore.review._cards import board_cards
from tests.board._project import add_render, copy_example, png_bytes
from tests.security._support import run_storycore


def _pages(pdf: bytes) -> int:
    """The page count of the newest page tree (each appended page is an incremental update
    of the file, which writes the tree again)."""
    counts = re.findall(rb"/Count\s+(\d+)", pdf)
    return int(counts[-1]) if counts else 0


def _long_project(tmp_path: Path, shots: int) -> Path:
    root = copy_example(tmp_path)
    board = json.loads((root / "storyboard.json").read_text())
    template = board["shots"][0]
    board["shots"] = [
        {**template, "shot_id": f"s{n:03d}", "shot_number": n, "title": f"Panel {n}"}
        for n in range(1, shots + 1)
    ]
    (root / "storyboard.json").write_text(json.dumps(board))
    project = load_project(root)
    for n in range(1, shots + 1, 3):
        add_render(project, f"s{n:03d}", color=(40, 120 + n % 100, 200))
    save_project(project)
    return root


async def test_board_pdf_has_a_page_per_twelve_panels_and_names_the_file(tmp_path: Path) -> None:
    root = _long_project(tmp_path, 30)
    result = await run_storycore("board", "--pdf", "--json", "--project", str(root))
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout)
    pdf = root / "storyboard" / "board.pdf"
    assert answer["pdf"] == str(pdf)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert _pages(data) == math.ceil(30 / PDF_SHEET) == 3
    assert b"/DCTDecode" in data  # each page an embedded JPEG image
    leftovers = [p.name for p in pdf.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_the_page_shows_verdicts_and_the_comment(tmp_path: Path) -> None:
    project = load_project(copy_example(tmp_path))
    approved = add_render(project, "shot_01")
    rejected = add_render(project, "shot_02")
    for item in project.data["asset_manifest"]["generated_images"]:
        item["approved"] = item["asset_id"] == approved.asset_id
        item["rejected"] = item["asset_id"] == rejected.asset_id
    project.data["shots_index"]["shot_01"]["x_review"] = {"comment": "keep the rim light"}
    cards = board_cards(project)
    page = _page("Board", 1, 1, cards[:4], [png_to_jpeg((200, 30, 30))] * 4)
    colours = {colour for _count, colour in page.getcolors(maxcolors=1 << 20) or []}
    assert (32, 130, 70) in colours  # the APPROVED badge
    assert (190, 40, 40) in colours  # the REJECTED badge and the comment's ink
    assert page.size == (2339, 1654)


def png_to_jpeg(colour: tuple[int, int, int]) -> bytes:
    import io

    with Image.open(io.BytesIO(png_bytes(colour))) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG")
        return out.getvalue()


async def test_out_writes_where_the_user_says_and_a_link_out_is_refused(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "p")
    mine = tmp_path / "meeting.pdf"
    result = await run_storycore("board", "--out", str(mine), "--project", str(root))
    assert result.rc == 0, result.stderr
    assert _pages(mine.read_bytes()) == 1
    missing = await run_storycore(
        "board", "--out", str(tmp_path / "nope" / "x.pdf"), "-p", str(root)
    )
    assert missing.rc == 3 and "does not exist" in missing.stderr

    outside = tmp_path / "outside"
    outside.mkdir()
    planted = copy_example(tmp_path / "q")
    (planted / "storyboard").symlink_to(outside, target_is_directory=True)
    refused = await run_storycore("board", "--pdf", "--project", str(planted))
    assert refused.rc == 3, refused.stderr
    assert "Traceback" not in refused.stderr
    assert list(outside.iterdir()) == []


def test_the_static_page_shows_the_verdict_and_the_comment_as_text(tmp_path: Path) -> None:
    from storycore.review import write_board

    project = load_project(copy_example(tmp_path))
    kept = add_render(project, "shot_01")
    add_render(project, "shot_02")
    for item in project.data["asset_manifest"]["generated_images"]:
        item["approved"] = item["asset_id"] == kept.asset_id
        item["rejected"] = item["asset_id"] != kept.asset_id
    project.data["shots_index"]["shot_02"]["x_review"] = {"comment": "<b>too dark</b>"}
    save_project(project)
    html = write_board(load_project(project.root)).html.read_text()
    assert ">approved<" in html and "rejected: wants a new take" in html
    assert "&lt;b&gt;too dark&lt;/b&gt;" in html and "<b>too dark" not in html
