"""Scan ComfyUI's model folders: names as ComfyUI lists them, sizes, and for safetensors files
the kind and family read from the header.

ComfyUI lists a model by its path relative to its folder (``sub/name.safetensors``), recursively,
for the extensions in :data:`MODEL_EXTENSIONS`. ``extra_model_paths.yaml`` adds folders.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storycore.platform._extra_paths import apply_extra_model_paths, load_extra_model_paths
from storycore.platform._safetensors import ModelGuess, guess_model, read_safetensors_header

__all__ = [
    "MODEL_EXTENSIONS",
    "MODEL_FOLDERS",
    "ModelFile",
    "ModelInventory",
    "scan_models",
    "scan_models_async",
]

MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
#: Folder -> the other names ComfyUI accepts for it (legacy ones first).
MODEL_FOLDERS: Mapping[str, tuple[str, ...]] = {
    "checkpoints": (),
    "loras": (),
    "controlnet": ("t2i_adapter",),
    "vae": (),
    "clip_vision": (),
    "ipadapter": (),
    "upscale_models": (),
    "embeddings": (),
    "diffusion_models": ("unet",),
    "text_encoders": ("clip",),
}
_MAX_FILES = 20_000


@dataclass(frozen=True)
class ModelFile:
    """One model file. ``name`` is what ComfyUI lists (``/``-separated, relative)."""

    folder: str
    name: str
    path: Path
    size: int
    guess: ModelGuess | None = None
    error: str | None = None

    @property
    def family(self) -> str:
        return self.guess.family if self.guess else "unknown"

    @property
    def kind(self) -> str:
        return self.guess.kind if self.guess else "unknown"


@dataclass
class ModelInventory:
    """Every model found, by folder, and the folders that were searched."""

    files: dict[str, list[ModelFile]] = field(default_factory=dict)
    searched: dict[str, list[Path]] = field(default_factory=dict)

    def names(self, folder: str) -> list[str]:
        return [f.name for f in self.files.get(folder, [])]

    def as_names(self) -> dict[str, list[str]]:
        """Folder -> file names, the shape :class:`DiagnosticContext` takes."""
        return {folder: self.names(folder) for folder in self.files}

    def find(self, folder: str, name: str) -> ModelFile | None:
        wanted = name.replace("\\", "/")
        return next((f for f in self.files.get(folder, []) if f.name == wanted), None)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for files in self.files.values() for f in files)


def _walk(root: Path) -> Iterable[Path]:
    seen: set[str] = set()
    count = 0
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in MODEL_EXTENSIONS:
                continue
            count += 1
            if count > _MAX_FILES:
                return
            yield Path(current) / name


def _describe(folder: str, root: Path, path: Path, read_headers: bool) -> ModelFile | None:
    try:
        size = path.stat().st_size
    except OSError:
        return None  # a dangling link
    name = path.relative_to(root).as_posix()
    guess: ModelGuess | None = None
    error: str | None = None
    if read_headers and path.suffix.lower() in (".safetensors", ".sft"):
        try:
            guess = guess_model(read_safetensors_header(path))
        except (OSError, ValueError) as exc:
            error = str(exc)
    return ModelFile(folder=folder, name=name, path=path, size=size, guess=guess, error=error)


def scan_models(
    models_dir: Path | None,
    *,
    extra_paths_yaml: Path | None = None,
    folders: Iterable[str] = MODEL_FOLDERS,
    read_headers: bool = True,
) -> ModelInventory:
    """Scan ``models_dir/<folder>`` (and legacy names) plus the extra folders. Blocking."""
    extra = load_extra_model_paths(extra_paths_yaml) if extra_paths_yaml is not None else []
    inventory = ModelInventory()
    for folder in folders:
        names = (folder, *MODEL_FOLDERS.get(folder, ()))
        own = [models_dir / n for n in names] if models_dir is not None else []
        # ComfyUI's order: an ``is_default`` extra folder comes before the install's own.
        roots = apply_extra_model_paths(own, (e for e in extra if e.folder in names))
        inventory.searched[folder] = roots
        found: dict[str, ModelFile] = {}
        for root in roots:
            if not root.is_dir():
                continue
            for path in _walk(root):
                described = _describe(folder, root, path, read_headers)
                if described is not None and described.name not in found:
                    found[described.name] = described
        inventory.files[folder] = sorted(found.values(), key=lambda f: f.name.lower())
    return inventory


async def scan_models_async(
    models_dir: Path | None,
    *,
    extra_paths_yaml: Path | None = None,
    folders: Iterable[str] = MODEL_FOLDERS,
    read_headers: bool = True,
) -> ModelInventory:
    """:func:`scan_models` in a worker thread."""
    return await asyncio.to_thread(
        scan_models,
        models_dir,
        extra_paths_yaml=extra_paths_yaml,
        folders=tuple(folders),
        read_headers=read_headers,
    )
