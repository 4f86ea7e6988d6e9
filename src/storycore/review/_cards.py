"""The board as data: one :class:`Card` per shot, in storyboard order, with every take.

This is what the review page shows (``/api/board`` sends cards as JSON), what the live feed
compares to find the shots that changed, and what the static board is drawn from: one
description of a panel for every view of the board.

Pure: it reads a loaded :class:`~storycore.project.Project` (the storyboard's JSON and
``project.json``), never the disk. A manifest entry that does not read as a record (edited by
hand) is left out of the takes, as ``assets list`` names it; a record whose path leaves the
generated-images folder is shown without an image (``path`` is ``None``): nothing a card says
can make the page fetch a file from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from storycore.assets import read_record, record_path_ok
from storycore.manifest import MANIFEST_KEY, AssetRecord

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "REVIEW_KEY",
    "Card",
    "Take",
    "board_cards",
    "card_digest",
    "shot_review",
]

REVIEW_KEY = "x_review"  # shots_index.<shot>.x_review: the review's own extension field
_MODULES = ("subject", "camera", "lighting", "color", "style")
_TECHNICAL = (
    "seed",
    "steps",
    "cfg_scale",
    "sampler",
    "scheduler",
    "checkpoint",
    "negative_prompt",
    "resolution",
    "aspect_ratio",
    "denoise",
)


@dataclass(frozen=True)
class Take:
    """One render of a shot, as the page shows it. ``path`` is project-relative (``None`` when
    the record's path is not one StoryCore would write)."""

    asset_id: str
    render: int
    take: int
    version: int
    profile: str | None
    seed: int | None
    placeholder: bool
    approved: bool
    rejected: bool
    active: bool
    path: str | None
    width: int
    height: int
    created_at: str
    checkpoint: str | None
    template: str | None
    sha256: str


@dataclass(frozen=True)
class Card:
    """One shot of the board: its storyboard text, where it stands, and its takes (oldest
    first). ``index`` is its place in the board (0-based); ``needs_take`` is true when it has
    no take yet or its active take was rejected."""

    shot_id: str
    index: int
    shot_number: int
    title: str
    description: str
    duration_seconds: float | None
    prompt: str
    negative: str | None
    modules: dict[str, str]
    technical: dict[str, Any]
    status: str
    error: str | None
    comment: str
    needs_take: bool
    active: Take | None
    takes: tuple[Take, ...] = field(default_factory=tuple)

    @property
    def profile(self) -> str | None:
        return self.active.profile if self.active is not None else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``/api/board`` sends)."""
        data = asdict(self)
        data["takes"] = list(data["takes"])
        data["profile"] = self.profile
        return data


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _entries_by_shot(project: Project) -> dict[str, list[AssetRecord]]:
    manifest = project.data.get("asset_manifest")
    items = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
    out: dict[str, list[AssetRecord]] = {}
    for item in items if isinstance(items, list) else []:
        record = read_record(item)[0]
        if record is not None:
            out.setdefault(record.shot_id, []).append(record)
    return out


def shot_review(project: Project, shot_id: str) -> dict[str, Any]:
    """The shot's ``x_review`` object in ``shots_index`` (empty when it has none)."""
    index = project.data.get("shots_index")
    entry = index.get(shot_id) if isinstance(index, dict) else None
    review = entry.get(REVIEW_KEY) if isinstance(entry, dict) else None
    return review if isinstance(review, dict) else {}


def _take(record: AssetRecord, active_id: str | None) -> Take:
    return Take(
        asset_id=record.asset_id,
        render=record.render,
        take=record.take,
        version=record.version,
        profile=record.profile,
        seed=record.seed,
        placeholder=record.placeholder,
        approved=record.approved,
        rejected=record.rejected,
        active=record.asset_id == active_id,
        path=record.path if record_path_ok(record.path) else None,
        width=record.width,
        height=record.height,
        created_at=record.created_at,
        checkpoint=record.checkpoint,
        template=record.template,
        sha256=record.sha256,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def board_cards(project: Project) -> list[Card]:
    """Every shot of the storyboard as a :class:`Card`, in storyboard order."""
    from storycore.panels import compose_prompt
    from storycore.project import Shot

    by_shot = _entries_by_shot(project)
    index = project.data.get("shots_index")
    index = index if isinstance(index, dict) else {}
    anchors = project.coherence_anchors
    cards: list[Card] = []
    for position, shot in enumerate(project.storyboard.get("shots", [])):
        if not isinstance(shot, dict):
            continue
        shot_id = str(shot.get("shot_id", ""))
        modules = shot.get("prompt_modules")
        modules = modules if isinstance(modules, dict) else {}
        technical = modules.get("technical")
        technical = technical if isinstance(technical, dict) else {}
        entry = index.get(shot_id)
        entry = entry if isinstance(entry, dict) else {}
        active_id = entry.get("active_asset")
        active_id = active_id if isinstance(active_id, str) else None
        records = sorted(by_shot.get(shot_id, []), key=lambda r: (r.version, r.render))
        takes = tuple(_take(r, active_id) for r in records)
        active = next((t for t in takes if t.active), None)
        try:
            prompt = compose_prompt(Shot.model_validate(shot), anchors)
        except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
            prompt = _text(modules.get("subject")) or _text(shot.get("description"))
        review = shot_review(project, shot_id)
        number = shot.get("shot_number")
        negative = technical.get("negative_prompt")
        cards.append(
            Card(
                shot_id=shot_id,
                index=position,
                shot_number=int(number) if isinstance(number, int | float) else 0,
                title=_text(shot.get("title")) or shot_id,
                description=_text(shot.get("description")),
                duration_seconds=_number(shot.get("duration_seconds")),
                prompt=prompt,
                negative=negative if isinstance(negative, str) else None,
                modules={key: _text(modules.get(key)) for key in _MODULES},
                technical={
                    key: technical[key]
                    for key in _TECHNICAL
                    if technical.get(key) is not None
                    and isinstance(technical[key], str | int | float)
                },
                status=_text(entry.get("status")) or "pending",
                error=entry.get("last_error") if isinstance(entry.get("last_error"), str) else None,
                comment=_text(review.get("comment")),
                needs_take=active is None or active.rejected,
                active=active,
                takes=takes,
            )
        )
    return cards


def card_digest(card: Card) -> str:
    """A short fingerprint of what a card shows: the live feed sends a card again only when
    this changed."""
    text = json.dumps(card.to_json(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
