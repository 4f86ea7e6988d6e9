"""The storyboard page: one self-contained HTML document, written a panel at a time.

No external requests: a Content-Security-Policy allows nothing but inline styles and ``data:``
images; every text is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storycore.board import BoardPanel

__all__ = ["html_chunks"]

_CSS = """
body{margin:0;background:#1e1e20;color:#ececec;font:15px/1.4 system-ui,sans-serif}
header{padding:20px 24px 8px}h1{margin:0 0 4px;font-size:24px}header p{margin:0;color:#aaa}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px;
padding:16px 24px}
.panel{background:#343438;border-radius:6px;overflow:hidden}
figure{margin:0;position:relative;background:#606064;aspect-ratio:var(--ar)}
figure img{display:block;width:100%;height:100%;object-fit:contain;background:#111}
.empty{display:flex;align-items:center;justify-content:center;height:100%;color:#eee}
.badge{position:absolute;top:8px;left:8px;background:#e67e22;color:#141414;font-weight:700;
font-size:12px;padding:2px 6px;border-radius:3px}
.body{padding:10px 12px}h2{margin:0 0 6px;font-size:17px}.num{color:#e67e22;margin-right:6px}
.desc{margin:0 0 8px;color:#ddd}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;
margin:0;font-size:13px}dt{color:#aaa}dd{margin:0}
"""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def html_chunks(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    thumbnail: Callable[[BoardPanel], bytes | None],
) -> Iterator[str]:
    """The page in pieces, a panel at a time; ``thumbnail(panel)`` gives its JPEG (or None)."""
    esc = html.escape
    rendered = sum(1 for p in panels if p.record is not None and not p.placeholder)
    placeholders = sum(1 for p in panels if p.placeholder)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} — storyboard</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>{_count(len(panels), 'panel')} · {rendered} rendered"
        f" · {_count(placeholders, 'placeholder')}</p></header>",
        f'<main style="--ar:{aspect:.4f}">',
    ]
    yield "\n".join(parts) + "\n"
    for panel in panels:
        jpeg = thumbnail(panel)
        if jpeg is not None:
            figure = (
                f'<img src="{_data_uri(jpeg)}" '
                f'alt="{esc(f"Shot {panel.shot_number}: {panel.title}")}">'
            )
        else:
            label = "file missing" if panel.record is not None else "not rendered"
            figure = f'<div class="empty">{label}</div>'
        badge = '<span class="badge">PLACEHOLDER</span>' if panel.placeholder else ""
        seed = "—" if panel.seed is None else str(panel.seed)
        when = esc(panel.record.created_at) if panel.record else "—"
        status = "placeholder" if panel.placeholder else ("rendered" if panel.record else "pending")
        yield (
            f'<article class="panel" id="{esc(panel.shot_id)}"><figure>{figure}{badge}</figure>'
            f'<div class="body"><h2><span class="num">#{panel.shot_number}</span>'
            f"{esc(panel.title)}</h2>"
            f'<p class="desc">{esc(panel.description)}</p><dl>'
            f"<dt>Shot</dt><dd>{esc(panel.shot_id)}</dd>"
            f"<dt>Camera</dt><dd>{esc(panel.camera) or '—'}</dd>"
            f"<dt>Lighting</dt><dd>{esc(panel.lighting) or '—'}</dd>"
            f"<dt>Seed</dt><dd>{seed}</dd>"
            f"<dt>Render time</dt><dd>{_fmt_seconds(panel.render_seconds)}</dd>"
            f"<dt>Rendered at</dt><dd>{when}</dd>"
            f"<dt>Status</dt><dd>{status}</dd></dl></div></article>\n"
        )
    yield "</main></body></html>\n"
