"""Server-side clean: a fake ComfyUI install folder holding our files and other people's."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storycore.assets import NO_DELETE_API, clean_server, find_comfyui_dir, same_server
from storycore.journal import Journal

LOCAL = "http://127.0.0.1:8188"
REMOTE = "http://gpu-box.example:8188"
PREFIX = "storycore/storycore_lighthouse_keeper/shot_01/v1"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _install(tmp_path: Path) -> Path:
    """A portable-style install: <install>/ComfyUI/{main.py,output,input}."""
    comfy = tmp_path / "comfyui_portable" / "ComfyUI"
    (comfy / "output").mkdir(parents=True)
    (comfy / "input").mkdir()
    (comfy / "main.py").write_text("# ComfyUI\n")
    return comfy


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _scene(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    comfy = _install(tmp_path)
    ours = {
        f"output/{PREFIX}_00001_.png",
        f"output/{PREFIX}_00002_.png",
        f"output/{PREFIX}_123456_.png",
        "input/storycore/ref_mara.png",
    }
    foreign = {
        "output/storycore_test_00001_.png",  # a prefix StoryCore never makes: not proven ours
        "input/pose (1).png",  # recorded, but not in input/storycore/ where we upload
        "main.py",
        f"output/{PREFIX}_00001_.webp",  # another extension
        "output/storycore/storycore_lighthouse_keeper/shot_01/v10_00001_.png",  # prefix v10
        "output/storycore/storycore_lighthouse_keeper/shot_01/v1_extra_00001_.png",
        "output/storycore/storycore_lighthouse_keeper/shot_01/v1_0001_.png",  # 4 digits
        "output/storycore_test_b_00001_.png",
        "output/ComfyUI_00001_.png",
        "output/storycore_test_00001_.png.txt",
        "input/pose.png",  # the user's own file with the name we first asked for
        "input/example.png",
        "input/replaced.png",  # we uploaded it, then someone overwrote it
        "output/storycore/storycore_lighthouse_keeper/shot_02/v1_00001_.png",  # running prompt
    }
    for rel in ours | foreign:
        _write(comfy / rel, rel.encode())
    journal = Journal(project)
    journal.append(
        "submit", prompt_id="p1", shot_id="shot_01", backend=LOCAL, filename_prefix=PREFIX
    )
    journal.append("done", prompt_id="p1", asset_id="a1")
    journal.append(
        "submit",
        prompt_id="p2",
        shot_id="x",
        backend="http://localhost:8188/",
        filename_prefix="storycore_test",
    )
    journal.append("done", prompt_id="p2")
    running = "storycore/storycore_lighthouse_keeper/shot_02/v1"
    journal.append(
        "submit", prompt_id="p3", shot_id="shot_02", backend=LOCAL, filename_prefix=running
    )
    journal.append(
        "submit", prompt_id="p4", shot_id="s", backend=REMOTE, filename_prefix="storycore/r/s/v1"
    )
    journal.append("done", prompt_id="p4")
    journal.append(
        "submit", prompt_id="p5", shot_id="s", backend=LOCAL, filename_prefix="../../escape"
    )
    journal.append("done", prompt_id="p5")
    for rel, backend in (
        ("input/storycore/ref_mara.png", LOCAL),
        ("input/pose (1).png", LOCAL),
    ):
        data = (comfy / rel).read_bytes()
        name = rel.rsplit("/", 1)[1]
        sub = rel[len("input/") : -len(name)].strip("/")
        journal.append(
            "upload",
            backend=backend,
            name=name,
            subfolder=sub,
            type="input",
            sha256=hashlib.sha256(data).hexdigest(),
        )
    journal.append("upload", backend=LOCAL, name="replaced.png", sha256="0" * 64)
    journal.append("upload", backend=REMOTE, name="remote_ref.png", subfolder="storycore")
    journal.append("upload", backend=LOCAL, name="../../../etc/passwd")
    journal.close()
    return project, comfy


def test_server_clean_touches_only_our_files(tmp_path: Path) -> None:
    project, comfy = _scene(tmp_path)
    before = _files(comfy)
    # the running prompt (p3) blocks uploads; close it first to test everything
    with Journal(project) as journal:
        journal.append("done", prompt_id="p3")
    report = clean_server(project, comfy, local_backends=[LOCAL])
    removed = before - _files(comfy)
    assert removed == {
        f"output/{PREFIX}_00001_.png",
        f"output/{PREFIX}_00002_.png",
        f"output/{PREFIX}_123456_.png",
        "input/storycore/ref_mara.png",
        "output/storycore/storycore_lighthouse_keeper/shot_02/v1_00001_.png",
    }
    assert {p.relative_to(comfy).as_posix() for p in (f.path for f in report.removed)} == removed
    assert report.freed_bytes == sum(len(rel.encode()) for rel in removed)
    assert [s.path.name for s in report.skipped] == ["pose (1).png", "replaced.png"]
    assert report.refused == [
        "journal prefix 'storycore_test' is not one StoryCore makes "
        "(storycore/<project>/<shot>/v<N>); its files were left"
    ]
    assert (comfy / "input/replaced.png").exists() and (comfy / "input/pose.png").exists()
    assert any("escape" in e for e in report.errors) and any("passwd" in e for e in report.errors)
    assert [(r.backend, r.prefixes, r.uploads) for r in report.remote] == [
        (REMOTE, ["storycore/r/s/v1"], ["storycore/remote_ref.png"])
    ]
    assert report.note == NO_DELETE_API and "no API to delete" in report.note


def test_files_of_a_running_prompt_and_uploads_are_kept_while_it_runs(tmp_path: Path) -> None:
    project, comfy = _scene(tmp_path)
    report = clean_server(project, comfy, local_backends=[LOCAL])
    assert (comfy / "output/storycore/storycore_lighthouse_keeper/shot_02/v1_00001_.png").exists()
    assert (comfy / "input/storycore/ref_mara.png").exists()
    assert not (comfy / f"output/{PREFIX}_00001_.png").exists()
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert "running" in reasons["v1_00001_.png"] and "in flight" in reasons["ref_mara.png"]


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    project, comfy = _scene(tmp_path)
    with Journal(project) as journal:
        journal.append("done", prompt_id="p3")
    before = {p: p.read_bytes() for p in comfy.rglob("*") if p.is_file()}
    report = clean_server(project, comfy, local_backends=[LOCAL], dry_run=True)
    assert {p: p.read_bytes() for p in comfy.rglob("*") if p.is_file()} == before
    assert len(report.removed) == 5 and report.freed_bytes > 0


def test_no_local_install_lists_everything_as_left(tmp_path: Path) -> None:
    project, _ = _scene(tmp_path)
    report = clean_server(project, None, local_backends=[LOCAL])
    assert report.removed == []
    backends = {r.backend for r in report.remote}
    assert backends == {LOCAL, "http://localhost:8188/", REMOTE}


def test_find_comfyui_dir_portable_and_plain(tmp_path: Path) -> None:
    comfy = _install(tmp_path)
    found, looked = find_comfyui_dir(comfy.parent)
    assert found == comfy and looked == [str(comfy)]
    assert find_comfyui_dir(comfy)[0] in (comfy, comfy / "ComfyUI")
    plain = tmp_path / "checkout"
    (plain / "output").mkdir(parents=True)
    assert find_comfyui_dir(plain) == (plain, [str(plain / "ComfyUI"), str(plain)])
    assert find_comfyui_dir(tmp_path / "none")[0] is None


def test_same_server_normalises_loopback() -> None:
    assert same_server("http://localhost:8188/", "http://127.0.0.1:8188")
    assert same_server("http://[::1]:8188", "http://127.0.0.1:8188")
    assert not same_server("http://127.0.0.1:8189", "http://127.0.0.1:8188")
    assert not same_server("http://gpu:8188", "http://127.0.0.1:8188")
