"""``storycore assets clean --server``: remove the files StoryCore caused in a ComfyUI's folders.

Only two kinds of file are ever touched, both known from the project's render journal. The
journal travels with the project, so it is trusted only as far as it can be proven:

- outputs: ``output/<prefix dir>/<prefix name>_NNNNN_.png`` (SaveImage's naming, five or more
  digits) for every ``filename_prefix`` we submitted that has the shape StoryCore gives its
  prefixes, ``<root>/<project>/<shot>/v<N>`` (``render.filename_prefix_root``, ``storycore``
  by default): a journal naming ``ComfyUI`` or ``portrait`` gets none of the user's own
  outputs deleted;
- uploads: ``input/storycore/.../<name>`` (StoryCore uploads into that subfolder) for every
  upload the journal recorded with its sha256, and only while the file still has it; an upload
  without a checksum, or outside ``input/storycore/``, is not proven ours and stays.

Files of prompts the journal still has open (a render may be running) are left alone. ComfyUI
has no API to delete files, so for servers that are not the local install the report lists what
was left there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from storycore._fsutil import is_safe_relative, safe_join
from storycore.assets._inventory import file_sha256
from storycore.journal import Journal

__all__ = [
    "NO_DELETE_API",
    "RemoteLeftovers",
    "ServerCleanReport",
    "ServerFile",
    "clean_server",
    "comfyui_dir_candidates",
    "find_comfyui_dir",
    "is_our_prefix",
    "same_server",
]

NO_DELETE_API = (
    "ComfyUI has no API to delete outputs or uploads; remove them on that machine "
    "(or run `storycore assets clean --server` there)"
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}
_PREFIX_PART = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
_UPLOAD_FOLDER = "storycore"  # the subfolder the engine uploads into (engine/_jobs.py)


@dataclass(frozen=True)
class ServerFile:
    """A file in the ComfyUI folder that we removed, would remove, or left (with why)."""

    path: Path
    folder: Literal["output", "input"]
    bytes: int
    reason: str


@dataclass
class RemoteLeftovers:
    """What StoryCore left on a server it cannot clean."""

    backend: str
    prefixes: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)


@dataclass
class ServerCleanReport:
    comfyui_dir: Path | None
    dry_run: bool
    removed: list[ServerFile] = field(default_factory=list)
    skipped: list[ServerFile] = field(default_factory=list)
    remote: list[RemoteLeftovers] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    looked_at: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # journal entries not proven ours
    note: str = NO_DELETE_API

    @property
    def freed_bytes(self) -> int:
        return sum(f.bytes for f in self.removed)


def _norm(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip().rstrip("/"))
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK:
        host = "127.0.0.1"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme.lower(), host, port


def same_server(a: str, b: str) -> bool:
    """True when two backend URLs name the same server (loopback spellings are equal)."""
    return _norm(a) == _norm(b)


def comfyui_dir_candidates(install_path: Path, *, search: bool | None = None) -> list[Path]:
    """Where ComfyUI's own folder may be: ``<install>/ComfyUI`` (portable), then ``<install>``.

    With ``search`` (by default when ``install_path`` is the built-in default), then the same
    for every place :func:`storycore.comfyui.install.find_install` searches, in its order, and
    last ComfyUI Desktop's base folder (which holds its ``output/`` and ``input/``).
    """
    from storycore.comfyui._install_search import desktop_base_folder, search_places
    from storycore.config import default_install_path

    if search is None:
        search = install_path == default_install_path()
    roots = [install_path.expanduser()]
    if search:
        roots += [place.path for place in search_places()]
    candidates = [folder for root in roots for folder in (root / "ComfyUI", root)]
    desktop = desktop_base_folder() if search else None
    if desktop is not None:
        candidates.append(desktop)
    return list(dict.fromkeys(candidates))


def find_comfyui_dir(
    install_path: Path, *, search: bool | None = None
) -> tuple[Path | None, list[str]]:
    """The first candidate with ``main.py``, ``output/`` or ``input/``, and every path looked at."""
    looked: list[str] = []
    for candidate in comfyui_dir_candidates(install_path, search=search):
        looked.append(str(candidate))
        if candidate.is_dir() and any(
            (candidate / name).exists() for name in ("main.py", "output", "input")
        ):
            return candidate, looked
    return None, looked


def _is_local(backend: str, local_backends: Collection[str]) -> bool:
    return any(same_server(backend, local) for local in local_backends)


def _output_pattern(prefix: str) -> tuple[PurePosixPath, re.Pattern[str]] | None:
    if not is_safe_relative(prefix) or "\\" in prefix:
        return None
    path = PurePosixPath(prefix)
    if not path.name or path.name in (".", ".."):
        return None
    return path.parent, re.compile(rf"^{re.escape(path.name)}_\d{{5,}}_\.png$")


def is_our_prefix(prefix: str, root: str = "storycore") -> bool:
    """True for a ``filename_prefix`` shaped as StoryCore makes them:
    ``<root>/<project>/<shot>/v<N>`` (``workflows._graph.make_filename_prefix``)."""
    parts = prefix.split("/")
    return (
        len(parts) == 4
        and parts[0] == root
        and all(_PREFIX_PART.match(p) and not p.startswith(".") for p in parts[1:3])
        and re.fullmatch(r"v\d{1,9}", parts[3]) is not None
    )


def _list_matching(folder: Path, pattern: re.Pattern[str]) -> Iterable[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [
        Path(e.path)
        for e in sorted(entries, key=lambda e: e.name)
        if pattern.match(e.name) and e.is_file(follow_symlinks=False)
    ]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _delete(path: Path, report: ServerCleanReport, item: ServerFile) -> None:
    if report.dry_run:
        report.removed.append(item)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror or exc}")
        return
    report.removed.append(item)


def _collect(
    events: Iterable[dict[str, Any]],
) -> tuple[dict[str, set[str]], dict[str, list[dict[str, Any]]]]:
    prefixes: dict[str, set[str]] = {}
    uploads: dict[str, list[dict[str, Any]]] = {}
    for item in events:
        backend = str(item.get("backend", ""))
        if item["event"] == "submit" and item.get("filename_prefix"):
            prefixes.setdefault(backend, set()).add(str(item["filename_prefix"]))
        elif item["event"] == "upload" and item.get("name"):
            uploads.setdefault(backend, []).append(item)
    return prefixes, uploads


def _upload_rel(item: dict[str, Any]) -> str:
    sub = str(item.get("subfolder") or "")
    return f"{sub}/{item['name']}" if sub else str(item["name"])


def clean_server(
    project_root: Path,
    comfyui_dir: Path | None,
    *,
    local_backends: Collection[str],
    dry_run: bool = False,
    prefix_root: str = "storycore",
) -> ServerCleanReport:
    """Remove our outputs and uploads from the local ComfyUI at ``comfyui_dir``.

    ``local_backends`` are the URLs served by that install; journal entries of other backends
    are reported as left behind. With ``comfyui_dir`` None every backend is reported.
    ``prefix_root`` is the settings' ``render.filename_prefix_root``. Journal entries that do
    not prove a file ours (see the module's docstring) are listed in ``refused``.
    """
    journal = Journal(project_root)
    report = ServerCleanReport(comfyui_dir=comfyui_dir, dry_run=dry_run)
    prefixes, uploads = _collect(journal.events())
    open_prompts = journal.open_prompts()
    busy = {str(p.record.get("filename_prefix")) for p in open_prompts}
    local_busy = any(_is_local(p.backend, local_backends) for p in open_prompts)

    for backend in sorted(set(prefixes) | set(uploads)):
        if comfyui_dir is not None and _is_local(backend, local_backends):
            continue
        report.remote.append(
            RemoteLeftovers(
                backend=backend,
                prefixes=sorted(prefixes.get(backend, set())),
                uploads=sorted(_upload_rel(u) for u in uploads.get(backend, [])),
            )
        )
    if comfyui_dir is None:
        return report

    output = comfyui_dir / "output"
    local_prefixes = sorted(
        {p for b, ps in prefixes.items() if _is_local(b, local_backends) for p in ps}
    )
    for prefix in local_prefixes:
        parsed = _output_pattern(prefix)
        if parsed is None:
            report.errors.append(f"journal prefix {prefix!r} is not a safe relative path; skipped")
            continue
        if not is_our_prefix(prefix, prefix_root):
            report.refused.append(
                f"journal prefix {prefix!r} is not one StoryCore makes "
                f"({prefix_root}/<project>/<shot>/v<N>); its files were left"
            )
            continue
        subfolder, pattern = parsed
        try:
            folder = safe_join(output, *subfolder.parts) if subfolder.parts else output
        except ValueError:
            report.errors.append(f"journal prefix {prefix!r} leaves {output}; skipped")
            continue
        for path in _list_matching(folder, pattern):
            found = ServerFile(path, "output", _size(path), f"output of prefix {prefix}")
            if prefix in busy:
                report.skipped.append(
                    ServerFile(path, "output", found.bytes, "its prompt may still be running")
                )
                continue
            _delete(path, report, found)

    input_dir = comfyui_dir / "input"
    seen: set[Path] = set()
    for backend, items in uploads.items():
        if not _is_local(backend, local_backends):
            continue
        for item in items:
            rel = _upload_rel(item)
            try:
                path = safe_join(input_dir, *PurePosixPath(rel).parts)
            except ValueError:
                report.errors.append(f"journal upload {rel!r} leaves {input_dir}; skipped")
                continue
            if path in seen or not path.is_file() or path.is_symlink():
                continue
            seen.add(path)
            size = _size(path)
            if local_busy:
                report.skipped.append(
                    ServerFile(path, "input", size, "a render is in flight and may need it")
                )
                continue
            expected = item.get("sha256")
            sub = str(item.get("subfolder") or "")
            if sub != _UPLOAD_FOLDER and not sub.startswith(_UPLOAD_FOLDER + "/"):
                report.skipped.append(
                    ServerFile(path, "input", size, "not in input/storycore/: not our upload")
                )
                continue
            if not isinstance(expected, str) or not expected:
                report.skipped.append(
                    ServerFile(path, "input", size, "no checksum recorded: not proven ours")
                )
                continue
            try:
                actual = file_sha256(path)
            except OSError as exc:
                report.errors.append(f"{path}: {exc.strerror or exc}")
                continue
            if actual != expected.lower():
                report.skipped.append(
                    ServerFile(path, "input", size, "changed since our upload; not ours now")
                )
                continue
            _delete(path, report, ServerFile(path, "input", size, "our upload"))
    return report
