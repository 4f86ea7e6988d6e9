"""What is stored in a project: every recorded render, temporary files, caches, unknown files.

Temporary files are the ones StoryCore makes and can prove it made, by name and place: a
partial download ``.<name>.<marker>.part`` (``comfyui/_download.py``) and an interrupted
atomic write ``.<name>.<marker>.tmp`` (``_fsutil``), where the marker is exactly eight
lower-case hex digits, and ``<name>`` is a file StoryCore writes in that place:

- in the generated-images folder: a render or its sidecar (``<shot>_v<N>_r<NNN>.png|json``) for
  a ``.tmp``, any name for a ``.part`` (a download keeps the server's file name);
- under ``.storycore/`` (StoryCore's own state folder): any name;
- at the project's top: ``project.json``, ``storyboard.json``, ``storycore.toml``;
- in ``storyboard/``: the board's pages, ``board.html`` and its pages record.

Anything else is the user's and is never listed or removed: ``assets/notes.part``,
``assets/images/.draft.tmp``, ``.layout.psd.1a2b3c4d.tmp``, a link. The cache is
``.storycore/cache`` (the storyboard's thumbnail database and its SQLite companions), which may
be deleted at any time. ``storycore assets clean`` removes both once they are old enough (the
retention policy's ``temp_max_age_hours`` and ``temp_max_total_mb``).

The layout is the one :mod:`storycore.manifest` documents. Everything here reads the file system
and the loaded project; nothing writes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from storycore._fsutil import file_sha256, is_safe_relative
from storycore.assets._records import read_record
from storycore.manifest import GENERATED_DIR, MANIFEST_KEY, AssetRecord

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "CACHE_DIR",
    "MAYBE_RECORDED",
    "AssetEntry",
    "AssetStats",
    "KindTotals",
    "ManifestEntry",
    "StoredFile",
    "VerifyProblem",
    "VerifyReport",
    "active_asset_ids",
    "asset_stats",
    "cache_files",
    "file_sha256",
    "list_assets",
    "manifest_entries",
    "record_path_ok",
    "temporary_files",
    "temporary_reason",
    "unknown_files",
    "verify_assets",
]

AssetKind = Literal["final", "placeholder"]
CACHE_DIR = PurePosixPath(".storycore/cache")
_RENDER_NAME = re.compile(r"^(?P<shot>.+)_v\d+_r\d+\.(png|json)$")
# ``.<target>.<8 lower-case hex>.tmp|part``: _fsutil._create_temp (secrets.token_hex(4)) and
# comfyui/_download.py (uuid4().hex[:8]) name their temporary files so
_OUR_TEMP = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{8}\.(?P<kind>tmp|part)$")
_TOP_FILES = frozenset({"project.json", "storyboard.json", "storycore.toml"})
_BOARD_FILE = re.compile(r"^(board(-[1-9][0-9]{0,5})?\.jpg|board\.html|\.storycore-pages\.json)$")
_STATE_DIR = ".storycore"
MAYBE_RECORDED = "render file of a shot with an unreadable manifest record"
_BOARD_DIR = "storyboard"


@dataclass(frozen=True)
class ManifestEntry:
    """One item of ``asset_manifest.generated_images``: its index, parsed record or the problem."""

    index: int
    raw: Any
    record: AssetRecord | None
    problem: str | None = None


@dataclass(frozen=True)
class AssetEntry:
    """One recorded render as ``storycore assets list`` shows it."""

    asset_id: str
    shot_id: str
    version: int
    render: int
    path: str
    size: int
    sha256: str
    placeholder: bool
    active: bool
    exists: bool
    disk_bytes: int
    created_at: str
    approved: bool = False

    @property
    def kind(self) -> AssetKind:
        return "placeholder" if self.placeholder else "final"


@dataclass(frozen=True)
class StoredFile:
    """A file found on disk: project-relative POSIX path, size, modification time, why listed."""

    path: str
    size: int
    mtime: float
    reason: str


@dataclass
class KindTotals:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class AssetStats:
    """Counts and sizes per shot and per kind (``final``, ``placeholder``, ``temporary``,
    ``cache``); ``unknown`` files apart."""

    per_kind: dict[str, KindTotals] = field(default_factory=dict)
    per_shot: dict[str, dict[str, KindTotals]] = field(default_factory=dict)
    missing: int = 0
    unknown: KindTotals = field(default_factory=KindTotals)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.per_kind.values()) + self.unknown.bytes


@dataclass(frozen=True)
class VerifyProblem:
    """A recorded render that is missing or differs from its record."""

    problem: Literal["missing", "changed", "invalid"]
    path: str
    detail: str
    asset_id: str | None = None
    shot_id: str | None = None


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)
    unknown: list[StoredFile] = field(default_factory=list)
    temporary: list[StoredFile] = field(default_factory=list)

    @property
    def missing(self) -> list[VerifyProblem]:
        return [p for p in self.problems if p.problem == "missing"]

    @property
    def changed(self) -> list[VerifyProblem]:
        return [p for p in self.problems if p.problem in ("changed", "invalid")]

    @property
    def clean(self) -> bool:
        """True when every recorded file is present and unchanged."""
        return not self.problems


def manifest_entries(project: Project) -> list[ManifestEntry]:
    """Every item of the manifest list, malformed ones included (with ``problem`` set); items
    are read by :func:`~storycore.assets._records.read_record` (odd types tolerated or named)."""
    manifest = project.data.get("asset_manifest")
    raw = manifest.get(MANIFEST_KEY, []) if isinstance(manifest, dict) else []
    if not isinstance(raw, list):
        return []
    out: list[ManifestEntry] = []
    for index, item in enumerate(raw):
        record, problem = read_record(item)
        if record is None:
            out.append(ManifestEntry(index, item, None, problem or "is not a valid record"))
            continue
        if not record_path_ok(record.path):
            out.append(
                ManifestEntry(
                    index, item, record, f"path {record.path!r} is not under {GENERATED_DIR}/"
                )
            )
            continue
        out.append(ManifestEntry(index, item, record))
    return out


def record_path_ok(path: object) -> bool:
    """True when a record's path is a safe relative path inside the generated-images folder."""
    if not isinstance(path, str) or not is_safe_relative(path) or "\\" in path:
        return False
    parts = PurePosixPath(path).parts
    return len(parts) > len(GENERATED_DIR.parts) and parts[: len(GENERATED_DIR.parts)] == (
        GENERATED_DIR.parts
    )


def active_asset_ids(project: Project) -> set[str]:
    """Every ``active_asset`` named in ``shots_index``."""
    index = project.data.get("shots_index")
    if not isinstance(index, dict):
        return set()
    return {
        str(entry["active_asset"])
        for entry in index.values()
        if isinstance(entry, dict) and entry.get("active_asset")
    }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def list_assets(project: Project) -> list[AssetEntry]:
    """Every well-formed record in the manifest, oldest first, with what is on disk."""
    active = active_asset_ids(project)
    out: list[AssetEntry] = []
    for entry in manifest_entries(project):
        record = entry.record
        if record is None or entry.problem:
            continue
        png = _size(project.root / record.path)
        sidecar = _size(project.root / record.sidecar_path) or 0
        out.append(
            AssetEntry(
                asset_id=record.asset_id,
                shot_id=record.shot_id,
                version=record.version,
                render=record.render,
                path=record.path,
                size=record.size,
                sha256=record.sha256,
                placeholder=record.placeholder,
                active=record.asset_id in active,
                exists=png is not None,
                disk_bytes=(png or 0) + (sidecar if png is not None else 0),
                created_at=record.created_at,
                approved=record.approved,
            )
        )
    return out


def _walk_files(folder: Path) -> Iterator[Path]:
    """Every regular file below ``folder`` (symlinks below it are neither followed nor listed)."""
    if not folder.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        for name in filenames:
            path = base / name
            if path.is_file() and not path.is_symlink():
                yield path


def _stored(project: Project, path: Path, reason: str) -> StoredFile | None:
    try:
        info = path.stat()
    except OSError:
        return None
    rel = path.relative_to(project.root).as_posix()
    return StoredFile(path=rel, size=info.st_size, mtime=info.st_mtime, reason=reason)


def temporary_reason(rel: PurePosixPath) -> str | None:
    """Pure: why the project file at ``rel`` is StoryCore's own temporary file (``partial
    download``, ``interrupted write``) or cache (``cache``); None when it is not provably ours
    (see the module's docstring)."""
    parts = rel.parts
    if parts[: len(CACHE_DIR.parts)] == CACHE_DIR.parts and len(parts) > len(CACHE_DIR.parts):
        return "cache"
    match = _OUR_TEMP.match(rel.name)
    if match is None:
        return None
    target, kind = match.group("target"), match.group("kind")
    folder = parts[:-1]
    if folder[: len(GENERATED_DIR.parts)] == GENERATED_DIR.parts:
        ours = kind == "part" or _RENDER_NAME.match(target) is not None
    elif folder[:1] == (_STATE_DIR,):
        ours = True
    elif folder == ():
        ours = kind == "tmp" and target in _TOP_FILES
    elif folder == (_BOARD_DIR,):
        ours = kind == "tmp" and _BOARD_FILE.match(target) is not None
    else:
        ours = False
    if not ours:
        return None
    return "partial download" if kind == "part" else "interrupted write"


def _temp_reason(project: Project, path: Path) -> str | None:
    return temporary_reason(PurePosixPath(path.relative_to(project.root).as_posix()))


def _temporary_and_cache(project: Project) -> list[StoredFile]:
    out: list[StoredFile] = []
    seen: set[Path] = set()
    candidates = [
        project.root / name for name in (*GENERATED_DIR.parts[:1], _STATE_DIR, _BOARD_DIR)
    ]
    for root in candidates:
        if root.is_symlink():
            continue  # a linked assets/, .storycore/ or storyboard/ is not searched
        for path in _walk_files(root):
            reason = _temp_reason(project, path)
            if reason and path not in seen:
                seen.add(path)
                stored = _stored(project, path, reason)
                if stored:
                    out.append(stored)
    for path in project.root.iterdir():  # interrupted writes of project.json itself
        if path.is_file() and not path.is_symlink() and _temp_reason(project, path):
            stored = _stored(project, path, "interrupted write")
            if stored:
                out.append(stored)
    return sorted(out, key=lambda f: f.path)


def temporary_files(project: Project) -> list[StoredFile]:
    """Partial downloads (``*.part``) and interrupted atomic writes (not the cache)."""
    return [f for f in _temporary_and_cache(project) if f.reason != "cache"]


def cache_files(project: Project) -> list[StoredFile]:
    """Every file under ``.storycore/cache`` (reason ``cache``)."""
    return [f for f in _temporary_and_cache(project) if f.reason == "cache"]


def unknown_files(project: Project) -> list[StoredFile]:
    """Files under the generated-images folder that no record (nor its sidecar) names.

    ``reason`` is ``orphan render`` for files named like our renders (left by an interrupted
    clean or a crash between writing a file and recording it), ``unknown`` otherwise. Temporary
    files are not listed here. A manifest item that cannot be read as a record still protects
    what it names: its ``path`` (when that is text) is known, and when it names no path, the
    render files of its shot (or of every shot, when it names none) are listed as
    :data:`MAYBE_RECORDED`, which ``assets clean`` never removes.
    """
    known: set[str] = set()
    doubtful: set[str] | None = set()  # shots an unreadable record may belong to; None: any
    for entry in manifest_entries(project):
        if entry.record is not None:
            known.add(entry.record.path)
            known.add(entry.record.sidecar_path)
            continue
        raw = entry.raw if isinstance(entry.raw, dict) else None
        if raw is None:
            continue  # a number or a string in the list names no file
        named = raw.get("path")
        if isinstance(named, str) and named:
            known.add(named)
            with contextlib.suppress(ValueError):
                known.add(str(PurePosixPath(named).with_suffix(".json")))
        elif isinstance(raw.get("shot_id"), str) and doubtful is not None:
            doubtful.add(raw["shot_id"])
        else:
            doubtful = None
    out: list[StoredFile] = []
    for path in _walk_files(project.root / GENERATED_DIR):
        rel = path.relative_to(project.root).as_posix()
        if rel in known or _temp_reason(project, path):
            continue
        match = _RENDER_NAME.match(path.name)
        ours = match is not None and match.group("shot") == path.parent.name
        reason = "orphan render" if ours else "unknown"
        if ours and (doubtful is None or path.parent.name in doubtful):
            reason = MAYBE_RECORDED
        stored = _stored(project, path, reason)
        if stored:
            out.append(stored)
    return sorted(out, key=lambda f: f.path)


def asset_stats(project: Project) -> AssetStats:
    """Counts and bytes per kind and per shot (PNG plus its sidecar JSON)."""
    kinds = ("final", "placeholder", "temporary", "cache")
    stats = AssetStats(per_kind={k: KindTotals() for k in kinds})
    for asset in list_assets(project):
        if not asset.exists:
            stats.missing += 1
            continue
        stats.per_kind[asset.kind].add(asset.disk_bytes)
        shot = stats.per_shot.setdefault(
            asset.shot_id, {"final": KindTotals(), "placeholder": KindTotals()}
        )
        shot[asset.kind].add(asset.disk_bytes)
    for temp in _temporary_and_cache(project):
        stats.per_kind["cache" if temp.reason == "cache" else "temporary"].add(temp.size)
    for unknown in unknown_files(project):
        stats.unknown.add(unknown.size)
    return stats


def verify_assets(project: Project) -> VerifyReport:
    """Re-hash every recorded render; report missing, changed, invalid and unknown files."""
    report = VerifyReport()
    for entry in manifest_entries(project):
        report.checked += 1
        record = entry.record
        if record is None or entry.problem:
            report.problems.append(
                VerifyProblem(
                    "invalid",
                    str(record.path) if record else f"{MANIFEST_KEY}[{entry.index}]",
                    f"manifest item {entry.index} {entry.problem}",
                    asset_id=record.asset_id if record else None,
                    shot_id=record.shot_id if record else None,
                )
            )
            continue
        path = project.root / record.path
        size = _size(path)
        if size is None or not path.is_file():
            report.problems.append(
                VerifyProblem(
                    "missing", record.path, "file not found", record.asset_id, record.shot_id
                )
            )
            continue
        try:
            digest = file_sha256(path)
        except OSError as exc:
            report.problems.append(
                VerifyProblem(
                    "missing",
                    record.path,
                    f"cannot be read ({exc.strerror})",
                    record.asset_id,
                    record.shot_id,
                )
            )
            continue
        if digest != record.sha256 or size != record.size:
            detail = f"sha256 {digest[:12]}... (recorded {record.sha256[:12]}...)"
            if size != record.size:
                detail = f"{size} bytes (recorded {record.size}); " + detail
            report.problems.append(
                VerifyProblem("changed", record.path, detail, record.asset_id, record.shot_id)
            )
            continue
        report.ok += 1
    report.unknown = unknown_files(project)
    report.temporary = temporary_files(project)
    return report
