"""Build real fixture projects: a copy of examples/lighthouse with real PNG renders recorded."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

from PIL import Image

from storycore._fsutil import atomic_write_json
from storycore.manifest import AssetRecord, Timings, add_record, asset_relpath, next_render_number
from storycore.project import Project, load_project, now_iso, save_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def copy_example(tmp_path: Path) -> Path:
    root = tmp_path / "lighthouse"
    shutil.copytree(EXAMPLE, root)
    return root


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 36)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def add_render(
    project: Project,
    shot_id: str,
    *,
    placeholder: bool = False,
    color: tuple[int, int, int] = (200, 30, 30),
    version: int = 1,
    seed: int = 1234,
    seconds: float = 3.5,
) -> AssetRecord:
    """Write a real PNG + sidecar in the documented layout and record it (made active)."""
    render = next_render_number(project, shot_id, version)
    rel = asset_relpath(shot_id, version, render)
    data = png_bytes(color)
    path = project.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    record = AssetRecord(
        asset_id=f"{shot_id}-v{version}-r{render:03d}",
        shot_id=shot_id,
        version=version,
        render=render,
        path=str(rel),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=64,
        height=36,
        placeholder=placeholder,
        created_at=now_iso(),
        seed=seed,
        timings=Timings(total=seconds),
    )
    atomic_write_json(project.root / record.sidecar_path, record.to_dict())
    add_record(project, record)
    return record


def build(tmp_path: Path, renders: dict[str, list[bool]]) -> Project:
    """A project where ``renders[shot]`` says, oldest first, which renders are placeholders."""
    project = load_project(copy_example(tmp_path))
    for shot_id, kinds in renders.items():
        for placeholder in kinds:
            add_render(project, shot_id, placeholder=placeholder)
    save_project(project)
    return load_project(project.root)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
