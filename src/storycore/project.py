"""StoryCore project folders (Data Contract v1): load, validate, create and save atomically.

A project folder holds ``project.json`` and ``storyboard.json``. Both are kept as the raw JSON
the user wrote, so unknown fields are written back unchanged; pydantic models check them on load.
Nothing is written when validation fails.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from storycore._fsutil import atomic_write_bytes
from storycore._project_io import (
    DiskState,
    decode_json,
    encode_json,
    read_json_file,
    write_if_unchanged,
)
from storycore._project_merge import MISSING, merge_edit
from storycore._project_models import (
    SAFE_ID,
    ProjectFileModel,
    Shot,
    Storyboard,
    project_schema,
    storyboard_schema,
)
from storycore._storyboard_check import StoryboardWarning, json_path, storyboard_warnings
from storycore._validation_text import describe_errors
from storycore.errors import ProjectError

__all__ = [
    "PROJECT_FILE",
    "SAFE_ID",
    "STORYBOARD_FILE",
    "DiskEdit",
    "Project",
    "ProjectFileModel",
    "Shot",
    "Storyboard",
    "StoryboardWarning",
    "apply_disk_edit",
    "init_project",
    "load_project",
    "name_seed",
    "now_iso",
    "parse_version",
    "project_schema",
    "read_disk_edit",
    "save_project",
    "storyboard_schema",
    "storyboard_warnings",
    "validate_project_data",
]

PROJECT_FILE = "project.json"
STORYBOARD_FILE = "storyboard.json"
SCHEMA_VERSION = "1.0"


@dataclass
class Project:
    """A loaded project. ``data`` and ``storyboard`` are the raw JSON, edited in place;
    ``shots`` are the storyboard's validated shots; ``on_disk`` is ``project.json`` as last read
    or written (a save merges an edit a person made since, instead of overwriting it)."""

    root: Path
    data: dict[str, Any]
    storyboard: dict[str, Any]
    _shots: list[Shot] | None = None
    on_disk: DiskState | None = None

    @property
    def shots(self) -> list[Shot]:
        """The validated shots (validated again from ``storyboard`` after :meth:`drop_shots`)."""
        if self._shots is None:
            self._shots = list(Storyboard.model_validate(self.storyboard).shots)
        return self._shots

    def drop_shots(self) -> None:
        """Let the validated shots go (they are made again when asked for): a long render keeps
        its panels instead, and a 2000-shot board's models are some 10 MB."""
        self._shots = None

    @property
    def project_id(self) -> str:
        return str(self.data["project_id"])

    @property
    def global_seed(self) -> int:
        return int(self.data["config"]["global_seed"])

    @property
    def coherence_anchors(self) -> dict[str, Any]:
        anchors = self.data.get("coherence_anchors")
        return anchors if isinstance(anchors, dict) else {}

    def shot(self, shot_id: str) -> Shot:
        for shot in self.shots:
            if shot.shot_id == shot_id:
                return shot
        known = ", ".join(s.shot_id for s in self.shots) or "none"
        raise ProjectError(
            f"has no shot '{shot_id}' (shots: {known})",
            where=str(self.root / STORYBOARD_FILE),
            hint="Check the shot id",
        )


def now_iso() -> str:
    """The current UTC time in ISO 8601 with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def name_seed(name: str) -> int:
    """The project seed StoryCore has always used: md5(name)[:8] as hex, mod 2^31."""
    return int(hashlib.md5(name.encode("utf-8")).hexdigest()[:8], 16) % (2**31)


def parse_version(version: str | int) -> int:
    """``"v3"``, ``"3"`` or ``3`` -> 3; anything else -> 1."""
    if isinstance(version, int):
        return max(1, version)
    match = re.fullmatch(r"[vV]?(\d+)", version.strip())
    return max(1, int(match.group(1))) if match else 1


def _validation_error(
    path: Path, exc: ValidationError, data: Any, model: type[BaseModel]
) -> ProjectError:
    parts = []
    described = describe_errors(model, exc.errors())
    for loc, text in described[:10]:
        shot_hint = ""
        if loc[:1] == ("shots",) and len(loc) > 2 and loc[2] != "shot_id":
            try:
                shot_hint = f" (shot '{data['shots'][loc[1]]['shot_id']}')"
            except (KeyError, IndexError, TypeError):
                shot_hint = ""
        parts.append(f"{json_path(loc)}{shot_hint}: {text}")
    more = len(described) - 10
    if more > 0:
        parts.append(f"and {more} more")
    return ProjectError(
        "is invalid: " + "; ".join(parts),
        where=str(path),
        hint="Fix these fields and run `storycore validate` again; nothing was written",
    )


def load_project(path: Path) -> Project:
    """Load and validate the project at ``path`` (the folder or its ``project.json``)."""
    root = path.parent if path.name == PROJECT_FILE else path
    if not root.is_dir():
        raise ProjectError(
            "is not a folder",
            where=str(root),
            hint="Point --project at a StoryCore project folder",
        )
    project_path = root / PROJECT_FILE
    storyboard_path = root / STORYBOARD_FILE
    data, on_disk = read_json_file(project_path)
    board, _ = read_json_file(storyboard_path)
    for file_path, raw in ((project_path, data), (storyboard_path, board)):
        if not isinstance(raw, dict):
            raise ProjectError(
                f"must hold a JSON object, not {type(raw).__name__}", where=str(file_path)
            )
    try:
        ProjectFileModel.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(project_path, exc, data, ProjectFileModel) from None
    try:
        parsed = Storyboard.model_validate(board)
    except ValidationError as exc:
        raise _validation_error(storyboard_path, exc, board, Storyboard) from None
    seen: dict[str, int] = {}
    for index, shot in enumerate(parsed.shots):
        if shot.shot_id in seen:
            raise ProjectError(
                f"shots[{index}].shot_id: '{shot.shot_id}' is used twice "
                f"(also shots[{seen[shot.shot_id]}])",
                where=str(storyboard_path),
                hint="Give every shot its own id",
            )
        seen[shot.shot_id] = index
    board_pid = board.get("project_id")
    if board_pid is not None and board_pid != data["project_id"]:
        raise ProjectError(
            f"project_id '{board_pid}' does not match project.json's '{data['project_id']}'",
            where=str(storyboard_path),
            hint="Make both files name the same project",
        )
    return Project(
        root=root, data=data, storyboard=board, _shots=list(parsed.shots), on_disk=on_disk
    )


def save_project(project: Project, *, storyboard: bool = False) -> list[str]:
    """Write ``project.json`` (and ``storyboard.json`` if asked) atomically, bumping updated_at.

    When ``project.json`` changed on disk since it was loaded (someone edited it), the edit is
    merged with this save's changes (:mod:`storycore._project_merge`): the warnings returned
    name each value both changed, where the person's was kept. An edit that is not valid any
    more is a :class:`ProjectError` and nothing is written. The files are replaced, never
    written through a link planted in their place."""
    validate_project_data(project.root, project.data)
    warnings: list[str] = []
    path = project.root / PROJECT_FILE
    for _attempt in range(3):
        project.data["updated_at"] = now_iso()
        state, written = write_if_unchanged(
            path, encode_json(project.data), project.on_disk, inside=project.root
        )
        if written:
            project.on_disk = state
            break
        warnings += apply_disk_edit(project, read_disk_edit(project, state))
        validate_project_data(project.root, project.data)
    else:
        raise ProjectError(
            "kept changing while StoryCore saved it (three times in a row); nothing was written",
            where=str(path),
            hint="Close the program that keeps writing it and run the command again",
        )
    if storyboard:
        atomic_write_bytes(
            project.root / STORYBOARD_FILE, encode_json(project.storyboard), inside=project.root
        )
    return warnings


@dataclass(frozen=True)
class DiskEdit:
    """``project.json`` as someone else left it, parsed, with what StoryCore last read or
    wrote (``base``): the two sides of a merge besides memory."""

    state: DiskState
    base: dict[str, Any]
    theirs: dict[str, Any]


def read_disk_edit(project: Project, state: DiskState) -> DiskEdit:
    """Parse and check the changed file ``state`` (blocking CPU work: a worker thread in async
    code). A file that is not a valid project now is a :class:`ProjectError`."""
    path = project.root / PROJECT_FILE
    theirs = decode_json(state.content, path)
    if not isinstance(theirs, dict):
        raise ProjectError(
            f"must hold a JSON object, not {type(theirs).__name__}",
            where=str(path),
        )
    try:
        ProjectFileModel.model_validate(theirs)
    except ValidationError as exc:
        error = _validation_error(path, exc, theirs, ProjectFileModel)
        raise ProjectError(
            "was changed since StoryCore read it, and " + error.message,
            where=error.where,
            hint="Fix these fields; StoryCore did not overwrite the file",
        ) from None
    base: Any = decode_json(project.on_disk.content, path) if project.on_disk else {}
    return DiskEdit(state, base if isinstance(base, dict) else {}, theirs)


def apply_disk_edit(project: Project, edit: DiskEdit) -> list[str]:
    """Merge ``edit`` into ``project.data`` (in place): the person's changes, and this
    process's where the person did not change the same value. One warning per value both
    changed (the person's kept)."""
    result = merge_edit(edit.base, project.data, edit.theirs)
    project.data.clear()
    project.data.update(result.data)
    project.on_disk = edit.state
    conflicts = [c for c in result.conflicts if c.path != "updated_at"]
    warnings = [
        f"{PROJECT_FILE} was edited while StoryCore was using it: kept your "
        f"`{c.path}` ({_short(c.kept)}); StoryCore's value ({_short(c.dropped)}) was not saved"
        for c in conflicts[:5]
    ]
    if len(conflicts) > 5:
        warnings.append(f"{PROJECT_FILE}: and {len(conflicts) - 5} more values kept as you edited")
    return warnings


def _short(value: Any) -> str:
    if value is MISSING:
        return "removed"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_project_data(root: Path, data: dict[str, Any]) -> None:
    """Raise :class:`ProjectError` (naming the field) when ``data`` breaks the data contract."""
    try:
        ProjectFileModel.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(root / PROJECT_FILE, exc, data, ProjectFileModel) from None


def _placeholder_shot(number: int, title: str, subject: str, camera: str) -> dict[str, Any]:
    return {
        "shot_id": f"shot_{number:02d}",
        "scene_id": "scene_01",
        "shot_number": number,
        "version": "v1",
        "title": title,
        "description": subject,
        "duration_seconds": 6,
        "prompt_modules": {
            "subject": subject,
            "camera": camera,
            "lighting": "natural light, soft shadows",
            "color": "neutral palette, balanced colours",
            "style": "cinematic realism",
            "technical": {
                "seed": None,
                "aspect_ratio": "16:9",
                "resolution": "1920x1080",
                "cfg_scale": 7.0,
                "steps": 20,
                "negative_prompt": "low quality, blurry, distorted",
            },
        },
    }


def init_project(name: str, base: Path) -> Path:
    """Create a new project folder ``base/name`` with three placeholder shots.

    Files already in the folder are left alone; a folder that already holds ``project.json`` or
    ``storyboard.json`` is refused and nothing is written."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,100}", name) or name.endswith("."):
        raise ProjectError(
            f"'{name}' is not a usable project name",
            where="NAME",
            hint="Use letters, digits, spaces, '_', '-' or '.', starting with a letter or digit",
        )
    root = base / name
    existing = [f for f in (PROJECT_FILE, STORYBOARD_FILE) if (root / f).exists()]
    if existing:
        # Never overwrite: a storyboard.json alone may be someone's work waiting for its project.
        held = "a project" if PROJECT_FILE in existing else f"a {STORYBOARD_FILE}"
        raise ProjectError(
            f"already holds {held} ({' and '.join(existing)}); nothing was written",
            where=str(root),
            hint="Choose another name or --path, or check that project with `storycore validate`",
        )
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    stamp = now_iso()
    project_id = f"storycore_{slug}"
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "project_id": project_id,
        "created_at": stamp,
        "updated_at": stamp,
        "config": {
            "global_seed": name_seed(name),
            "target_aspect_ratio": "16:9",
            "target_resolution": "1920x1080",
            "target_duration_seconds": 18,
        },
        "coherence_anchors": {
            "style_anchor_id": "STYLE_CINE_REALISM_V1",
            "palette_id": "PALETTE_NEUTRAL_01",
            "character_sheet_ids": [],
            "lighting_direction": "left",
            "lighting_temperature": "neutral",
            "perspective_type": "2-point",
            "horizon_line": "mid",
        },
        "shots_index": {},
        "asset_manifest": {},
        "status": {"current_phase": "initialized", "qa_passed": False},
        "generation_status": {"image_generation": "pending"},
    }
    shots = [
        _placeholder_shot(1, "Opening shot", "an establishing view of the setting", "wide shot"),
        _placeholder_shot(2, "Medium shot", "the main character in action", "medium shot"),
        _placeholder_shot(3, "Closing shot", "the scene winding down", "wide shot, slow pull"),
    ]
    for shot in shots:
        data["shots_index"][shot["shot_id"]] = {"active_version": "v1", "status": "pending"}
    board = {"storyboard_id": f"sb_{slug}", "project_id": project_id, "shots": shots}
    try:
        (root / "assets" / "images").mkdir(parents=True, exist_ok=True)
        (root / "assets" / "audio").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(root / STORYBOARD_FILE, encode_json(board), inside=root)
        atomic_write_bytes(root / PROJECT_FILE, encode_json(data), inside=root)
    except OSError as exc:
        raise ProjectError(
            f"cannot create the project there ({exc.strerror or exc})",
            where=str(exc.filename or root),
            hint="choose a folder you can write to with --path",
        ) from None
    return root
