"""The storyboard page: one HTML review document, written a panel at a time.

Per panel: the thumbnail (a ``data:`` JPEG) linking to the full-size image in the project,
the prompts, seed, sampler settings, size, models, render number, take/profile, execution time
and queue wait, and the local time it was rendered. Values come from what was rendered; where
the storyboard asks for something else today the page says so beside them, and a panel not
rendered yet shows the storyboard's own values, marked as such.

The Content-Security-Policy allows inline styles and ``data:`` images and nothing else (no
script, no fetch, no form, no ``<base>``); the links to the full-size images are plain
navigations, which the policy does not govern.

Every value from the project (storyboard text, ``project.json``, manifest records, the
image's own chunks, the thumbnail cache) is treated as hostile: it reaches the page only
through :func:`esc`, which escapes text and attribute values alike (``<``, ``>``, ``&``, both
quotes) and shows a lone surrogate as U+FFFD; numbers are formatted here, never inserted as
given. The only links are ``../``-relative URLs of renders whose path was checked to stay in
the project's generated-images folder, percent-encoded, so no ``javascript:``, absolute or
``..`` reference in a record can become one.
Timestamps are rendered when the page is written, in the writing machine's time zone, with the
ISO value in ``<time datetime>``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from storycore.review._board import BoardPanel, PanelFacts

__all__ = ["CSP", "esc", "html_chunks", "human_time"]

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_CSS = """
body{margin:0;background:#1e1e20;color:#ececec;font:15px/1.4 system-ui,sans-serif}
header{padding:20px 24px 8px}h1{margin:0 0 4px;font-size:24px}header p{margin:0;color:#aaa}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px;
padding:16px 24px}
.panel{background:#343438;border-radius:6px;overflow:hidden}
.panel.placeholder{outline:3px solid #e67e22}
figure{margin:0;position:relative;background:#606064;aspect-ratio:var(--ar)}
figure a{display:block;height:100%}
figure img{display:block;width:100%;height:100%;object-fit:contain;background:#111}
.empty{display:flex;align-items:center;justify-content:center;height:100%;color:#eee}
.badge{position:absolute;top:8px;left:8px;background:#e67e22;color:#141414;font-weight:700;
font-size:12px;padding:2px 6px;border-radius:3px}
.body{padding:10px 12px}h2{margin:0 0 6px;font-size:17px}.num{color:#e67e22;margin-right:6px}
.desc{margin:0 0 8px;color:#ddd}.source{margin:0 0 8px;color:#aaa;font-size:13px}
.changed{margin:0 0 8px;padding:4px 8px;border-left:3px solid #f5c542;font-size:13px}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0;font-size:13px}
dt{color:#aaa}dd{margin:0;overflow-wrap:anywhere}.prompt{white-space:pre-wrap}
.now{display:block;color:#f5c542}.muted{color:#aaa}a{color:#8cc4ff}
.warn{color:#e67e22;font-weight:700}
"""


def esc(value: object) -> str:
    """``value`` as text safe in an element or a quoted attribute value."""
    text = value if isinstance(value, str) else str(value)
    return html.escape(_SURROGATE.sub("\ufffd", text), quote=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _seconds(value: float | None) -> str | None:
    if value is None:
        return None
    if value < 1:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def human_time(moment: datetime) -> str:
    """``1 Dec 2026, 21:32`` (English month names whatever the machine's locale)."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M}"


def _time_tag(iso: object) -> str:
    """A ``<time>`` element: the local time in words, the UTC instant in ``datetime``."""
    if not iso or not isinstance(iso, str):
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return esc(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # StoryCore writes UTC
    instant = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f'<time datetime="{instant}">{human_time(moment.astimezone())}</time>'


def _zone(now: datetime) -> str:
    offset = now.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = now.tzname()
    return f"{name}, {offset}" if name and name not in offset else offset


def _extra(value: Any) -> str | None:
    """A take or profile as text (a number, a name, or an object's name/label/number)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        for key in ("name", "label", "id", "number"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or None
    return str(value)


class _Rows:
    """The ``<dt>/<dd>`` rows of one panel; values are escaped here."""

    def __init__(self, changed: dict[str, str]) -> None:
        self.parts: list[str] = []
        self.changed = changed

    def add(
        self,
        label: str,
        value: str | None,
        *,
        key: str | None = None,
        css: str = "",
        raw: bool = False,
        note: str = "",
    ) -> None:
        """One row; ``key`` names the field in ``changed`` (its storyboard value is shown
        beside); ``raw`` for markup made here; ``note`` (escaped) after the value."""
        if value is None:
            return
        shown = value if raw else esc(value)
        if note:
            shown += f' <span class="muted">{esc(note)}</span>'
        now = self.changed.get(key or "")
        if now is not None:
            shown += f'<span class="now">storyboard now: {esc(now)}</span>'
        klass = f' class="{esc(css)}"' if css else ""
        self.parts.append(f"<dt>{esc(label)}</dt><dd{klass}>{shown}</dd>")


def _panel_rows(panel: BoardPanel, facts: PanelFacts, href: str | None) -> str:
    record, details, plan = panel.record, facts.details, facts.planned
    rows = _Rows(facts.changed)
    rows.add("Shot", panel.shot_id)
    from_board = " (storyboard)"
    if record is not None:
        name = record.path.rsplit("/", 1)[-1]
        link = f'<a href="{esc(href)}">{esc(name)}</a>' if href else esc(name) + " (missing)"
        numbers = f"v{esc(record.version)} · render {esc(record.render)}"
        rows.add("Render", f"{numbers} · {link}", raw=True)
        entry = panel.entry or {}
        rows.add("Take", _extra(entry.get("take")))
        rows.add("Profile", _extra(entry.get("profile")))
        status = (
            '<span class="warn">PLACEHOLDER</span>: a stand-in frame from the emulator, not a '
            "real render"
            if record.placeholder
            else "rendered"
        )
        rows.add("Status", status, raw=True)
        verdict = (
            "approved"
            if record.approved
            else ("rejected: wants a new take" if record.rejected else None)
        )
        rows.add("Review", verdict)
    else:
        rows.add("Status", "not rendered yet")
    if panel.comment:
        rows.add("Comment", panel.comment)
    rendered = details is not None and details.workflow
    positive = details.positive if details and details.positive is not None else None
    if positive is None and plan is not None:
        rows.add("Prompt", plan.positive, css="prompt", note=from_board)
    else:
        rows.add("Prompt", positive or "—", key="prompt", css="prompt")
    negative = details.negative if details else None
    if negative is None and plan is not None and plan.negative is not None:
        rows.add("Negative", plan.negative, css="prompt", note=from_board)
    else:
        rows.add("Negative", negative or "—", key="negative prompt", css="prompt")
    seed = details.seed if details and details.seed is not None else None
    if seed is None and record is None and plan is not None and plan.seed is not None:
        rows.add("Seed", str(plan.seed), note=from_board)
    else:
        rows.add("Seed", "—" if seed is None else str(seed))

    def setting(label: str, key: str, mine: Any, theirs: Any, fmt: Callable[[Any], str]) -> None:
        if rendered and mine is not None:
            rows.add(label, fmt(mine), key=key)
        elif theirs is not None:
            rows.add(label, fmt(theirs), note=from_board)
        else:
            rows.add(label, "—")

    setting("Steps", "steps", details and details.steps, plan and plan.steps, str)
    setting("CFG", "cfg", details and details.cfg, plan and plan.cfg, lambda v: f"{v:g}")
    setting("Sampler", "sampler", details and details.sampler, plan and plan.sampler, str)
    setting("Scheduler", "scheduler", details and details.scheduler, plan and plan.scheduler, str)
    if rendered and details is not None and details.denoise not in (None, 1.0):
        rows.add("Denoise", f"{details.denoise:g}")
    if details is not None and details.samplers > 1:
        rows.add("Samplers", f"{details.samplers} in the workflow (the first one is shown)")
    if details is not None and details.width and details.height:
        rows.add("Size", f"{details.width} × {details.height} px")
    models = details.models if details is not None else ()
    keys = {"Checkpoint": "checkpoint", "LoRA": "LoRAs"}
    for model in models:
        rows.add(model.kind, model.name, key=keys.pop(model.kind, None), note=model.note)
    if not models:
        checkpoint = plan.checkpoint if plan is not None else None
        rows.add("Checkpoint", checkpoint, note=from_board)
    if record is not None:
        if record.template:
            rows.add("Template", record.template)
        timings = record.timings
        if timings.execution is not None:
            rows.add("Execution", _seconds(timings.execution), note="on the server")
        elif timings.total is not None:
            rows.add("Render time", _seconds(timings.total), note="submitted to saved")
        else:
            rows.add("Execution", "—")
        rows.add("Queue wait", _seconds(timings.queued))
        rows.add("Rendered", _time_tag(record.created_at), raw=True)
    rows.add("Camera", panel.camera or "—")
    rows.add("Lighting", panel.lighting or "—")
    return "".join(rows.parts)


def _source_line(panel: BoardPanel, facts: PanelFacts) -> str:
    details = facts.details
    if panel.record is None:
        text = (
            "Not rendered yet: the prompt and the values the shot sets itself, from the storyboard."
        )
    elif details is not None and details.workflow:
        text = "As rendered: read from the image's own workflow and its manifest record."
    else:
        text = (
            "As recorded in the manifest; the image carries no workflow (ComfyUI with "
            "--disable-metadata, or the file is missing), so values marked (storyboard) are "
            "the storyboard's, not necessarily what was rendered."
        )
    out = f'<p class="source">{esc(text)}</p>'
    if facts.changed:
        listed = esc(", ".join(facts.changed))
        out += (
            f'<p class="changed">The storyboard has changed since this render ({listed}): '
            "the values shown are the ones rendered, with the storyboard's beside them.</p>"
        )
    return out


def _image_href(panel: BoardPanel) -> str | None:
    """The link to the panel's full-size render, relative to ``storyboard/board.html``: only
    for a record whose path stays in the generated-images folder (no scheme, no absolute or
    ``..`` path) and whose file the board found there; percent-encoded."""
    from storycore.assets import record_path_ok

    record = panel.record
    if record is None or panel.image is None or not record_path_ok(record.path):
        return None
    return "../" + quote(record.path, safe="/")


def _panel(panel: BoardPanel, jpeg: bytes | None, facts: PanelFacts) -> str:
    record = panel.record
    href = _image_href(panel) if jpeg is not None else None
    if jpeg is not None:
        alt = esc(f"Shot {panel.shot_number}: {panel.title}")
        figure = f'<img src="{_data_uri(jpeg)}" alt="{alt}">'
        if href is not None:
            title = "Open the full-size image"
            figure = f'<a class="full" href="{esc(href)}" title="{title}">{figure}</a>'
    else:
        label = "file missing" if record is not None else "not rendered"
        figure = f'<div class="empty">{label}</div>'
    badge = '<span class="badge">PLACEHOLDER</span>' if panel.placeholder else ""
    klass = "panel placeholder" if panel.placeholder else "panel"
    return (
        f'<article class="{klass}" id="{esc(panel.shot_id)}"><figure>{figure}{badge}</figure>'
        f'<div class="body"><h2><span class="num">#{esc(panel.shot_number)}</span>'
        f"{esc(panel.title)}</h2>"
        f'<p class="desc">{esc(panel.description)}</p>{_source_line(panel, facts)}'
        f"<dl>{_panel_rows(panel, facts, href)}</dl></div></article>\n"
    )


def html_chunks(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    thumbnail: Callable[[BoardPanel], bytes | None],
    facts: Callable[[BoardPanel], PanelFacts],
    *,
    written_at: datetime,
) -> Iterator[str]:
    """The page in pieces, a panel at a time; ``thumbnail(panel)`` gives its JPEG (or None),
    ``facts(panel)`` what to say about it; ``written_at`` is local time (aware)."""
    rendered = sum(1 for p in panels if p.record is not None and not p.placeholder)
    placeholders = sum(1 for p in panels if p.placeholder)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} — storyboard</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>{_count(len(panels), 'panel')} · {rendered} rendered"
        f" · {_count(placeholders, 'placeholder')}</p>"
        f"<p>Written {_time_tag(written_at.isoformat())}; times are local"
        f" ({esc(_zone(written_at))}). Click an image for the full-size file.</p></header>",
        f'<main style="--ar:{aspect:.4f}">',
    ]
    yield "\n".join(parts) + "\n"
    for panel in panels:
        yield _panel(panel, thumbnail(panel), facts(panel))
    yield "</main></body></html>\n"
