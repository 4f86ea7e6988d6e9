"""``storycore board --pdf``: the board as a PDF for review meetings.

One page per sheet of :data:`PDF_SHEET` panels, A4 landscape: each panel's shown take, its
number and title, take / profile / verdict (approved, rejected, placeholder), the description
and the review comment, so the printout carries what the meeting talks about. Drawn with
Pillow and written one page at a time (Pillow's PDF writer appends each page to the file), so
memory stays flat in the number of panels; the file is written to a temporary name beside the
target and renamed over it when complete (a link at the target is replaced, never written
through); the folder must stay inside the project, as for the contact sheet.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageOps

from storycore._fsutil import ensure_inside, mkdirs_inside
from storycore.review._board import BOARD_DIR, board_panels, thumb_cache
from storycore.review._board_sheet import _fit_text, _font
from storycore.review._cards import board_cards
from storycore.review._thumbcache import Thumbnails

if TYPE_CHECKING:
    from storycore.project import Project
    from storycore.review._board import BoardPanel
    from storycore.review._cards import Card

__all__ = ["PDF_NAME", "PDF_SHEET", "write_board_pdf"]

PDF_NAME = "board.pdf"
PDF_SHEET = 12  # panels per page: 4 x 3, room for the shot text under each
PAGE = (2339, 1654)  # A4 landscape at 200 dpi
DPI = 200.0
COLUMNS, ROWS = 4, 3
MARGIN, GAP, HEADER = 80, 36, 110
TEXT_H = 200  # below each thumbnail: title, take line, two lines of description, comment

_INK, _MUTED, _FRAME = (20, 20, 24), (90, 90, 98), (205, 205, 210)
_GOOD, _BAD, _WARN = (32, 130, 70), (190, 40, 40), (200, 110, 20)


def _verdict(card: Card) -> tuple[str, tuple[int, int, int]] | None:
    take = card.active
    if take is None:
        return ("NOT RENDERED", _MUTED)
    if take.rejected:
        return ("REJECTED", _BAD)
    if take.approved:
        return ("APPROVED", _GOOD)
    if take.placeholder:
        return ("PLACEHOLDER", _WARN)
    return None


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int, lines: int, size: int) -> list[str]:
    font, words, out, line = _font(size), " ".join(text.split()).split(" "), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
            continue
        out.append(line)
        line = word
        if len(out) == lines:
            break
    if len(out) < lines and line:
        out.append(line)
    if out and len(out) == lines and " ".join(out) != " ".join(words):
        out[-1] = _fit_text(draw, out[-1] + " …", font, width)
    return out[:lines]


def _draw_cell(
    page: Image.Image,
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    card: Card,
    thumb: bytes | None,
) -> None:
    x, y, w, h = box
    image_h = h - TEXT_H
    draw.rectangle((x, y, x + w, y + image_h), outline=_FRAME, width=2)
    if thumb is not None:
        with contextlib.suppress(OSError, ValueError, Image.DecompressionBombError):
            with Image.open(io.BytesIO(thumb), formats=("JPEG",)) as img:
                fitted = ImageOps.contain(img.convert("RGB"), (w - 8, image_h - 8))
            page.paste(fitted, (x + (w - fitted.width) // 2, y + (image_h - fitted.height) // 2))
    ty = y + image_h + 10
    title = f"{card.shot_number or card.index + 1}. {card.title}"
    draw.text((x, ty), _fit_text(draw, title, _font(30), w), fill=_INK, font=_font(30))
    take = card.active
    facts = [
        f"take {take.take}" if take else "",
        f"profile {take.profile}" if take and take.profile else "",
    ]
    facts.append(f"{len(card.takes)} takes" if len(card.takes) > 1 else "")
    line = " · ".join(f for f in facts if f)
    verdict = _verdict(card)
    fx = x
    if verdict is not None:
        label, colour = verdict
        lw = int(draw.textlength(label, font=_font(22))) + 16
        draw.rectangle((x, ty + 40, x + lw, ty + 68), fill=colour)
        draw.text((x + 8, ty + 42), label, fill=(255, 255, 255), font=_font(22))
        fx = x + lw + 12
    draw.text(
        (fx, ty + 42), _fit_text(draw, line, _font(22), w - (fx - x)), fill=_MUTED, font=_font(22)
    )
    for n, text in enumerate(_wrap(draw, card.description or card.prompt, w, 2, 22)):
        draw.text((x, ty + 78 + n * 28), text, fill=_INK, font=_font(22))
    if card.comment:
        comment = _fit_text(draw, f"Comment: {card.comment}", _font(22), w)
        draw.text((x, ty + 140), comment, fill=_BAD, font=_font(22))


def _page(
    title: str, number: int, pages: int, cards: list[Card], thumbs: list[bytes | None]
) -> Image.Image:
    page = Image.new("RGB", PAGE, (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.text(
        (MARGIN, 40),
        _fit_text(draw, title, _font(40), PAGE[0] - 2 * MARGIN - 300),
        fill=_INK,
        font=_font(40),
    )
    counter = f"page {number} of {pages}"
    draw.text(
        (PAGE[0] - MARGIN - draw.textlength(counter, font=_font(26)), 52),
        counter,
        fill=_MUTED,
        font=_font(26),
    )
    cell_w = (PAGE[0] - 2 * MARGIN - (COLUMNS - 1) * GAP) // COLUMNS
    cell_h = (PAGE[1] - HEADER - MARGIN - (ROWS - 1) * GAP) // ROWS
    for i, (card, thumb) in enumerate(zip(cards, thumbs, strict=True)):
        col, row = i % COLUMNS, i // COLUMNS
        box = (MARGIN + col * (cell_w + GAP), HEADER + row * (cell_h + GAP), cell_w, cell_h)
        _draw_cell(page, draw, box, card, thumb)
    return page


def _title(project: Project) -> str:
    name = project.data.get("name") or project.data.get("title") or project.project_id
    return f"StoryCore storyboard: {name}"


def write_board_pdf(project: Project, out: Path | None = None) -> Path:
    """Write the board as a PDF and return its path: ``storyboard/board.pdf`` (its folder
    checked to stay inside the project, as for the contact sheet), or ``out``, a path the user
    named (anywhere; its folder must exist). Blocking: call it in a worker thread from async
    code."""
    root = project.root
    if out is None:
        target = root / BOARD_DIR / PDF_NAME
        mkdirs_inside(root, target.parent, what="folder of the PDF")
        inside: Path | None = root
    else:
        target, inside = out.absolute(), None
        if not target.parent.is_dir():
            from storycore.errors import ProjectError

            raise ProjectError(
                "the folder to write the PDF in does not exist",
                where=str(target.parent),
                hint="create it first, or leave out --out to write storyboard/board.pdf",
            )
    cards = board_cards(project)
    panels: dict[str, BoardPanel] = {p.shot_id: p for p in board_panels(project)}
    chunks = [cards[i : i + PDF_SHEET] for i in range(0, max(1, len(cards)), PDF_SHEET)]
    temp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    title = _title(project)
    try:
        with thumb_cache(root) as cache:
            thumbs = Thumbnails(cache)
            for number, chunk in enumerate(chunks, start=1):
                jpegs = [
                    thumbs.jpeg(panels[c.shot_id]) if c.shot_id in panels else None for c in chunk
                ]
                page = _page(title, number, len(chunks), chunk, jpegs)
                page.save(temp, "PDF", resolution=DPI, append=number > 1)
                page.close()
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        if inside is not None:  # a link swapped in meanwhile is caught
            ensure_inside(inside, target.parent, what="folder of the PDF")
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return target
