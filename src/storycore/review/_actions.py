"""What a person does to the board: pick a shot's take, approve, reject, comment.

One implementation for the ``storycore takes`` commands and the review page's handlers (both
call these functions; blocking file I/O, so async callers use ``asyncio.to_thread``).

Every action writes the journal first (``review`` events: ``action``, ``shot_id``,
``asset_id``), then changes ``project.json`` with a compare-and-swap write: read the file,
change it in memory, write it only if it still holds the bytes that were read
(:func:`storycore._project_io.write_if_unchanged`), else read it again and redo the change (at
most :data:`ATTEMPTS` rounds). No :class:`~storycore._lock.ProjectLock` is taken: a render
running in another process keeps its own copy of ``project.json`` and merges the file at its
next save (:mod:`storycore._project_merge`), like an edit a person made by hand; two actions
at once are safe because neither writes over a file it did not read.

A take is named by its ``asset_id`` (``shot_01-v1-r002``) or its render number (``2``,
``r2``, ``r002``); ``None`` means the shot's active take. An unknown shot or take is a
:class:`~storycore.errors.ProjectError` (exit 3) naming the takes the shot has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from storycore._project_io import encode_json, write_if_unchanged
from storycore.errors import ProjectError
from storycore.journal import Journal
from storycore.manifest import MANIFEST_KEY, set_shot_status
from storycore.project import (
    PROJECT_FILE,
    STORYBOARD_FILE,
    load_project,
    now_iso,
    validate_project_data,
)
from storycore.review._cards import REVIEW_KEY, Take, board_cards

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "ATTEMPTS",
    "MAX_COMMENT",
    "list_takes",
    "pick_take",
    "project_root",
    "reject_take",
    "set_approval",
    "set_comment",
]

ATTEMPTS = 5  # compare-and-swap rounds while project.json keeps changing under us
MAX_COMMENT = 10_000  # characters of a shot's comment
_NAMED_IN_MESSAGE = 20  # takes or shots a message lists before "and N more"
_RENDER = re.compile(r"[rR]?0*(\d{1,9})")
T = TypeVar("T")
_NOTHING = object()


def project_root(path: Path) -> Path:
    """The project folder, given the folder or its ``project.json``."""
    return path.parent if path.name == PROJECT_FILE else path


def _shot_dict(project: Project, shot_id: str) -> dict[str, Any]:
    shots = project.storyboard.get("shots")
    for shot in shots if isinstance(shots, list) else []:
        if isinstance(shot, dict) and shot.get("shot_id") == shot_id:
            return shot
    known = [str(s.get("shot_id")) for s in shots or [] if isinstance(s, dict)]
    raise ProjectError(
        f"has no shot '{shot_id}' (shots: {_listing(known) or 'none'})",
        where=str(project.root / STORYBOARD_FILE),
        hint="Check the shot id (`storycore takes SHOT` takes one of these)",
    )


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED_IN_MESSAGE])
    more = len(names) - _NAMED_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def list_takes(project: Project, shot_id: str) -> list[Take]:
    """Every take of ``shot_id`` (oldest first), as its card shows them. Pure: reads the loaded
    project; an unknown shot is a :class:`ProjectError`."""
    from storycore.project import Project as _Project

    shot = _shot_dict(project, shot_id)
    # The card of this one shot: the board's own code, without the cost of every other card.
    view = _Project(root=project.root, data=project.data, storyboard={"shots": [shot]})
    cards = board_cards(view)
    return list(cards[0].takes) if cards else []


def _take_names(takes: list[Take]) -> str:
    return _listing([f"render {t.render} ({t.asset_id})" for t in takes])


def _unknown_take(project: Project, shot_id: str, which: object, takes: list[Take]) -> ProjectError:
    where = str(project.root / PROJECT_FILE)
    if not takes:
        return ProjectError(
            f"shot '{shot_id}' has no takes yet, so it has no take '{which}'",
            where=where,
            hint=f"Render one with `storycore generate-images --shots {shot_id}`",
        )
    return ProjectError(
        f"shot '{shot_id}' has no take '{which}'; its takes are {_take_names(takes)}",
        where=where,
        hint=f"Name a take by its render number or id (`storycore takes {shot_id}` lists them)",
    )


def resolve_take(project: Project, shot_id: str, which: str | int | None) -> Take:
    """The take ``which`` names (asset id, render number, or ``None``: the active take)."""
    takes = list_takes(project, shot_id)
    if which is None:
        active = next((t for t in takes if t.active), None)
        if active is None:
            raise ProjectError(
                f"shot '{shot_id}' has no active take"
                + (f" (its takes are {_take_names(takes)})" if takes else " (no takes yet)"),
                where=str(project.root / PROJECT_FILE),
                hint="Name the take (its render number or id)"
                if takes
                else f"Render one with `storycore generate-images --shots {shot_id}`",
            )
        return active
    if isinstance(which, str):
        exact = next((t for t in takes if t.asset_id == which), None)
        if exact is not None:
            return exact
    number = _render_number(which)
    matches = [t for t in takes if number is not None and t.render == number]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ProjectError(
            f"shot '{shot_id}' has more than one render {number} (one per storyboard version: "
            + ", ".join(t.asset_id for t in matches[:_NAMED_IN_MESSAGE])
            + ")",
            where=str(project.root / PROJECT_FILE),
            hint="Name the take by its id",
        )
    raise _unknown_take(project, shot_id, which, takes)


def _render_number(which: str | int) -> int | None:
    if isinstance(which, bool):
        return None
    if isinstance(which, int):
        return which
    match = _RENDER.fullmatch(which.strip())
    return int(match.group(1)) if match else None


def _entry(project: Project, asset_id: str) -> dict[str, Any]:
    """The manifest entry (the dict in ``project.data``) of ``asset_id``."""
    manifest = project.data.get("asset_manifest")
    items = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("asset_id") == asset_id:
            return item
    raise ProjectError(  # list_takes found it a moment ago, in this very data
        f"has no record '{asset_id}' any more", where=str(project.root / PROJECT_FILE)
    )


def _shots_entry(project: Project, shot_id: str) -> dict[str, Any]:
    index = project.data.setdefault("shots_index", {})
    entry = index.get(shot_id)
    if isinstance(entry, dict):
        return entry
    fresh: dict[str, Any] = {}
    index[shot_id] = fresh
    return fresh


def _change(
    root: Path,
    action: str,
    shot_id: str,
    change: Callable[[Project], tuple[str | None, T]],
    **journal: Any,
) -> T:
    """Read the project, ``change`` it (it returns the asset id it acts on and the result),
    journal the action, and write ``project.json`` if nobody wrote it meanwhile; else again."""
    root = project_root(root)
    journaled: object = _NOTHING
    for _attempt in range(ATTEMPTS):
        project = load_project(root)
        asset_id, result = change(project)
        project.data["updated_at"] = now_iso()
        validate_project_data(root, project.data)
        try:
            if journaled != asset_id:  # again only when a retry found another take
                with Journal(root) as log:
                    details = {"asset_id": asset_id} if asset_id is not None else {}
                    log.append("review", action=action, shot_id=shot_id, **details, **journal)
                journaled = asset_id
            _state, written = write_if_unchanged(
                root / PROJECT_FILE, encode_json(project.data), project.on_disk, inside=root
            )
        except OSError as exc:
            raise ProjectError(
                f"cannot be written ({exc.strerror or exc}); the {action} was not saved",
                where=str(exc.filename or root / PROJECT_FILE),
                hint="Check that the project folder is yours and writable, and try again",
            ) from None
        if written:
            return result
    raise ProjectError(
        f"kept changing while StoryCore saved the {action} ({ATTEMPTS} times in a row); "
        "nothing was written",
        where=str(root / PROJECT_FILE),
        hint="Wait for the program that keeps writing it to pause, and try again",
    )


def _fresh(project: Project, shot_id: str, asset_id: str) -> Take:
    """The take as it stands after the change (its flags and ``active`` recomputed)."""
    return next(t for t in list_takes(project, shot_id) if t.asset_id == asset_id)


def pick_take(root: Path, shot_id: str, which: str | int) -> Take:
    """Make the take ``which`` the shot's active asset (the one the board shows)."""

    def change(project: Project) -> tuple[str, Take]:
        take = resolve_take(project, shot_id, which)
        set_shot_status(
            project,
            shot_id,
            "placeholder" if take.placeholder else "rendered",
            active_asset=take.asset_id,
            version=take.version,
        )
        return take.asset_id, _fresh(project, shot_id, take.asset_id)

    return _change(root, "pick", shot_id, change)


def set_approval(root: Path, shot_id: str, which: str | int | None, approved: bool) -> Take:
    """Approve the take (``assets clean`` keeps it; approving clears a rejection) or withdraw
    the approval (``approved=False``)."""

    def change(project: Project) -> tuple[str, Take]:
        take = resolve_take(project, shot_id, which)
        entry = _entry(project, take.asset_id)
        entry["approved"] = approved
        if approved:
            entry.pop("rejected", None)
        return take.asset_id, _fresh(project, shot_id, take.asset_id)

    return _change(root, "approve" if approved else "unapprove", shot_id, change)


def reject_take(
    root: Path, shot_id: str, which: str | int | None = None, *, undo: bool = False
) -> Take:
    """Reject the take (the active one by default): a shot whose active take is rejected needs
    a new take (``generate-images --rejected``). Rejecting withdraws an approval;
    ``undo=True`` withdraws the rejection."""

    def change(project: Project) -> tuple[str, Take]:
        take = resolve_take(project, shot_id, which)
        entry = _entry(project, take.asset_id)
        if undo:
            entry.pop("rejected", None)
        else:
            entry["rejected"] = True
            entry["approved"] = False
        return take.asset_id, _fresh(project, shot_id, take.asset_id)

    return _change(root, "unreject" if undo else "reject", shot_id, change)


def _comment_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise ProjectError(
            f"a comment is text, not {type(text).__name__}", where=where, hint="Send a string"
        )
    cleaned = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(cleaned) > MAX_COMMENT:
        raise ProjectError(
            f"a comment holds at most {MAX_COMMENT:,} characters, not {len(cleaned):,}; "
            "nothing was written",
            where=where,
            hint="Shorten it",
        )
    return cleaned


def set_comment(root: Path, shot_id: str, text: str) -> str:
    """Set the shot's comment (``shots_index.<shot>.x_review.comment``, with the time); empty
    text removes it. Returns the comment as kept (line ends normalised, edges trimmed)."""
    where = f"{project_root(root) / PROJECT_FILE}: shots_index.{shot_id}.{REVIEW_KEY}.comment"
    comment = _comment_text(text, where)

    def change(project: Project) -> tuple[None, str]:
        _shot_dict(project, shot_id)
        entry = _shots_entry(project, shot_id)
        review = entry.get(REVIEW_KEY)
        review = dict(review) if isinstance(review, dict) else {}
        if comment:
            review["comment"] = comment
            review["comment_at"] = now_iso()
        else:
            review.pop("comment", None)
            review.pop("comment_at", None)
        if review:
            entry[REVIEW_KEY] = review
        else:
            entry.pop(REVIEW_KEY, None)
        return None, comment

    return _change(root, "comment", shot_id, change, length=len(comment))
