"""Where rendered images live in a project, and the manifest records that describe them.

Layout (stable, documented in the README)::

    <project>/assets/images/generated/<shot_id>/<shot_id>_v<version>_r<render:03d>.png
    <project>/assets/images/generated/<shot_id>/<shot_id>_v<version>_r<render:03d>.json  (sidecar)

``version`` is the shot's storyboard version; ``render`` counts renders of that version (a re-roll
or ``--force`` makes a new render, never overwriting an older file).

In ``project.json``:

- ``asset_manifest.generated_images``: a list of :class:`AssetRecord` dicts, oldest first;
- ``shots_index.<shot_id>``: ``active_version``, ``active_asset`` (an ``asset_id``), ``status``
  (``pending`` / ``rendered`` / ``placeholder`` / ``failed``), ``last_render``, and the review's
  extension field ``x_review`` (``comment``, ``comment_at``);

A record is one *take* of its shot (``take`` 1, 2, ...: take ``k`` renders with the shot's seed
plus ``k - 1``), made with a render ``profile`` (``None``: no profile), and a person's verdict on
it: ``approved`` or ``rejected`` (a shot whose active take is rejected wants a new take).
- ``generation_status.image_generation``: ``pending`` / ``in_progress`` / ``done`` / ``partial``
  / ``placeholders`` / ``failed``.

Pure data functions: they edit a loaded :class:`~storycore.project.Project` in memory; the
caller saves it atomically with :func:`storycore.project.save_project`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "GENERATED_DIR",
    "MANIFEST_KEY",
    "MAX_TAKE",
    "AssetRecord",
    "Timings",
    "active_assets",
    "active_record",
    "add_record",
    "asset_index",
    "asset_relpath",
    "finite_seconds",
    "highest_render_on_disk",
    "next_render_number",
    "records",
    "records_by_key",
    "resolve_asset",
    "set_approved",
    "set_shot_status",
    "whole_number",
]

GENERATED_DIR = PurePosixPath("assets/images/generated")
MANIFEST_KEY = "generated_images"
MAX_TAKE = 10_000  # takes of one shot: a bound on what a hand-edited record may claim
_NAME = re.compile(r"^(?P<shot>.+)_v(?P<version>\d+)_r(?P<render>\d+)\.png$")


@dataclass
class Timings:
    """Seconds spent in each phase of one panel's render."""

    queued: float | None = None
    model_load: float | None = None
    sampling: float | None = None
    execution: float | None = None
    download: float | None = None
    total: float | None = None


@dataclass
class AssetRecord:
    """One rendered (or placeholder) image and how it was made."""

    asset_id: str
    shot_id: str
    version: int
    render: int
    path: str
    sha256: str
    size: int
    width: int
    height: int
    placeholder: bool
    created_at: str
    prompt_id: str | None = None
    server_url: str | None = None
    comfyui_version: str | None = None
    workflow_sha256: str | None = None
    seed: int | None = None
    checkpoint: str | None = None
    models: list[str] = field(default_factory=list)
    template: str | None = None
    timings: Timings = field(default_factory=Timings)
    approved: bool = False
    take: int = 1
    profile: str | None = None
    rejected: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what ``asdict`` gives, without its deep-copying walk)."""
        data = dict(self.__dict__)
        data["models"] = list(self.models)
        data["timings"] = dict(self.timings.__dict__)
        # Left out at their defaults, so a plain render's entry is what it always was: no
        # ``take`` is take 1, no ``profile`` no profile, no ``rejected`` not rejected.
        for key, default in _LEAN_DEFAULTS:
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssetRecord:
        """A record from its manifest entry, as written by any version or by hand.

        Tolerated: keys this version does not know (in the record or its ``timings``; they
        stay in ``project.json``), whole numbers written as text (``"12"``) or as ``12.0``,
        and odd values where a record only describes (a size, a seed, a time, the models:
        unknown when they are not what they should be). A ``ValueError`` naming the key when
        what identifies the render (its id, shot, path, checksum, version or number) is
        missing or of the wrong kind."""
        values: dict[str, Any] = {}
        for key in _REQUIRED_TEXT:
            values[key] = _required(data, key, _text)
        for key in ("version", "render"):
            values[key] = _required(data, key, whole_number)
        values["created_at"] = _text(data.get("created_at")) or ""
        for key in ("size", "width", "height"):
            values[key] = whole_number(data.get(key)) or 0
        for key in _OPTIONAL_TEXT:
            values[key] = _text(data.get(key))
        values["seed"] = whole_number(data.get("seed"))
        values["placeholder"] = data.get("placeholder") is True
        values["approved"] = data.get("approved") is True
        values["rejected"] = data.get("rejected") is True
        take = whole_number(data.get("take"))
        values["take"] = take if take is not None and 1 <= take <= MAX_TAKE else 1
        models = data.get("models")
        values["models"] = (
            [m for m in models if isinstance(m, str)] if isinstance(models, list) else []
        )
        timings = data.get("timings")
        values["timings"] = Timings(
            **{
                key: finite_seconds(timings.get(key)) if isinstance(timings, dict) else None
                for key in Timings.__dataclass_fields__
            }
        )
        return cls(**values)

    @property
    def sidecar_path(self) -> str:
        return str(PurePosixPath(self.path).with_suffix(".json"))


_LEAN_DEFAULTS = (("take", 1), ("profile", None), ("rejected", False))
_REQUIRED_TEXT = ("asset_id", "shot_id", "path", "sha256")
_OPTIONAL_TEXT = (
    "prompt_id",
    "server_url",
    "comfyui_version",
    "workflow_sha256",
    "checkpoint",
    "template",
    "profile",
)


def _required(data: dict[str, Any], key: str, convert: Callable[[Any], Any]) -> Any:
    value = convert(data.get(key))
    if value is None:
        got = "missing" if key not in data else f"{type(data[key]).__name__} {data[key]!r:.40}"
        raise ValueError(f"`{key}` should be {_KINDS[convert]}, not {got}")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def whole_number(value: Any) -> int | None:
    """A whole number from JSON (``12``, ``12.0``, ``"12"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and len(value) <= 30:
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            return int(digits)
    return None


def finite_seconds(value: Any) -> float | None:
    """A finite number of seconds (``1.5``, ``"1.5"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


_KINDS: dict[Callable[[Any], Any], str] = {_text: "text", whole_number: "a whole number"}


def asset_relpath(shot_id: str, version: int, render: int) -> PurePosixPath:
    """The project-relative path of a render."""
    return GENERATED_DIR / shot_id / f"{shot_id}_v{version}_r{render:03d}.png"


def records(project: Project) -> list[AssetRecord]:
    """Every generated image recorded in the manifest, oldest first. An entry that is not a
    readable record (hand-edited: no ``asset_id``...) is passed over; ``assets list`` and
    ``assets verify`` name it."""
    manifest = project.data.setdefault("asset_manifest", {})
    raw = manifest.get(MANIFEST_KEY, []) if isinstance(manifest, dict) else []
    out: list[AssetRecord] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            with contextlib.suppress(ValueError):
                out.append(AssetRecord.from_dict(item))
    return out


def asset_index(project: Project) -> dict[str, AssetRecord]:
    """Every record by ``asset_id`` (parse the manifest once, look up many times)."""
    return {record.asset_id: record for record in records(project)}


def highest_render_on_disk(root: Path, shot_id: str, version: int) -> int:
    """The highest render number of ``shot_id``/``version`` among the files in the project (0 if
    none), so that a new render never overwrites a file the manifest does not know about."""
    highest = 0
    folder = root / GENERATED_DIR / shot_id
    if folder.is_dir():
        for path in folder.glob(f"{shot_id}_v{version}_r*.png"):
            match = _NAME.match(path.name)
            if match and match.group("shot") == shot_id:
                highest = max(highest, int(match.group("render")))
    return highest


def next_render_number(project: Project, shot_id: str, version: int) -> int:
    """One more than the highest render number in the manifest or on disk for this shot/version
    (a scan of the manifest: the engine keeps its own index instead)."""
    highest = highest_render_on_disk(project.root, shot_id, version)
    for record in records(project):
        if record.shot_id == shot_id and record.version == version:
            highest = max(highest, record.render)
    return highest + 1


def records_by_key(found: Iterable[AssetRecord]) -> dict[tuple[str, str], list[AssetRecord]]:
    """Records by (shot id, cache key), newest first: what the render cache looks up to find a
    take made before (any take, not only the shot's active one)."""
    out: dict[tuple[str, str], list[AssetRecord]] = {}
    for record in found:
        if record.workflow_sha256:
            out.setdefault((record.shot_id, record.workflow_sha256), []).append(record)
    for same in out.values():
        same.sort(key=lambda r: (r.version, r.render), reverse=True)
    return out


def active_assets(project: Project) -> dict[str, str]:
    """Every shot's ``active_asset`` id, from ``shots_index``."""
    index = project.data.get("shots_index")
    out: dict[str, str] = {}
    for shot_id, entry in index.items() if isinstance(index, dict) else ():
        asset = entry.get("active_asset") if isinstance(entry, dict) else None
        if isinstance(asset, str):
            out[str(shot_id)] = asset
    return out


def active_record(project: Project, shot_id: str) -> AssetRecord | None:
    """The record the shots index marks active for ``shot_id``."""
    entry = project.data.get("shots_index", {}).get(shot_id)
    if not isinstance(entry, dict) or not entry.get("active_asset"):
        return None
    for record in records(project):
        if record.asset_id == entry["active_asset"]:
            return record
    return None


def add_record(project: Project, record: AssetRecord, *, activate: bool = True) -> dict[str, Any]:
    """Append ``record`` to the manifest and (``activate``) make it the shot's active asset;
    the manifest entry (the dict that ``project.json`` will hold). A take that does not become
    active leaves the shot's status and active asset as they are."""
    manifest = project.data.setdefault("asset_manifest", {})
    item = record.to_dict()
    manifest.setdefault(MANIFEST_KEY, []).append(item)
    if activate:
        set_shot_status(
            project,
            record.shot_id,
            "placeholder" if record.placeholder else "rendered",
            active_asset=record.asset_id,
            version=record.version,
            when=record.created_at,
        )
    return item


def set_shot_status(
    project: Project,
    shot_id: str,
    status: str,
    *,
    active_asset: str | None = None,
    version: int | None = None,
    when: str | None = None,
    error: str | None = None,
) -> None:
    """Update ``shots_index.<shot_id>``, keeping any fields we do not own."""
    index = project.data.setdefault("shots_index", {})
    entry = index.setdefault(shot_id, {})
    if not isinstance(entry, dict):
        entry = index[shot_id] = {}
    entry["status"] = status
    if active_asset is not None:
        entry["active_asset"] = active_asset
    if version is not None:
        entry["active_version"] = f"v{version}"
    if when is not None:
        entry["last_render"] = when
    if error is not None:
        entry["last_error"] = error
    elif status in ("rendered", "placeholder"):
        entry.pop("last_error", None)


def resolve_asset(project: Project, record: AssetRecord) -> Path:
    """The absolute path of a record's file."""
    return project.root / PurePosixPath(record.path)


def set_approved(project: Project, asset_ids: list[str], approved: bool = True) -> list[str]:
    """Mark records approved (kept by every retention policy) or not; return unknown ids."""
    wanted = set(asset_ids)
    manifest = project.data.setdefault("asset_manifest", {})
    for item in manifest.get(MANIFEST_KEY, []) if isinstance(manifest, dict) else []:
        if isinstance(item, dict) and item.get("asset_id") in wanted:
            item["approved"] = approved
            wanted.discard(str(item["asset_id"]))
    return sorted(wanted)
