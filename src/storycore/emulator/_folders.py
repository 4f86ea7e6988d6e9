"""Model file lists: from fixed names (``EmulatorOptions.models``) or from a models folder.

A real ComfyUI lists ``models/<folder>/`` on every ``/object_info`` and validation
(folder_paths.py get_filename_list @ a125cd84: a recursive walk, files whose extension is in
the folder's list -- ``supported_pt_extensions`` for model folders -- as ``/``-separated
relative paths, sorted). :class:`DiskModels` does the same on the emulator's own folder, so
removing a file makes a prompt naming it fail with ``value_not_in_list`` as on a real server;
:func:`populate` fills a new folder with empty placeholder files of the default names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["DiskModels", "ModelFiles", "StaticModels", "model_files", "populate"]

# folder_paths.py supported_pt_extensions @ a125cd84.
MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
_MAX_FILES = 10000  # a bound on what one listing walks
_MAX_DEPTH = 8


class ModelFiles(Protocol):
    def folders(self) -> list[str]: ...

    def files(self, folder: str) -> list[str]: ...


class StaticModels:
    """Fixed names per folder (what tests pass as ``models=``)."""

    def __init__(self, models: Mapping[str, Sequence[str]]) -> None:
        self._models = {k: sorted(v) for k, v in models.items()}

    def folders(self) -> list[str]:
        return list(self._models)

    def files(self, folder: str) -> list[str]:
        return list(self._models.get(folder, []))


class DiskModels:
    """``root/<folder>/**`` listed like ComfyUI, on every call (no cache)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folders(self) -> list[str]:
        try:
            with os.scandir(self.root) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            return []

    def files(self, folder: str) -> list[str]:
        if not folder or "/" in folder or "\\" in folder or folder in (".", ".."):
            return []
        base = self.root / folder
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            rel = os.path.relpath(dirpath, base)
            depth = 0 if rel == "." else rel.count(os.sep) + 1
            if depth >= _MAX_DEPTH:
                dirnames[:] = []
            for name in filenames:
                if os.path.splitext(name)[1].lower() not in MODEL_EXTENSIONS:
                    continue
                path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                found.append(path)
                if len(found) >= _MAX_FILES:
                    return sorted(found)
        return sorted(found)


def populate(root: Path, models: Mapping[str, Sequence[str]]) -> None:
    """Make ``root/<folder>/<name>`` placeholder files (empty) for every name given."""
    for folder, names in models.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = root / folder / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")


def model_files(
    models: Mapping[str, Sequence[str]] | None,
    root: Path | None,
    defaults: Mapping[str, Sequence[str]],
) -> ModelFiles:
    """What the emulator lists: ``root`` when given (made with ``models`` or the default names
    when it does not exist yet), else the fixed names (``models``, else the defaults)."""
    if root is None:
        return StaticModels(models if models is not None else defaults)
    if not root.exists():
        populate(root, models if models is not None else defaults)
    return DiskModels(root)
