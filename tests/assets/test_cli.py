"""``storycore assets ...`` as a user runs it: a real child process, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from storycore.journal import Journal

from ._project import build, snapshot


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def test_list_stats_verify_json(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True, False], "shot_02": [False]})
    root = str(project.root)
    listed = run("assets", "list", "--project", root, "--json")
    assert listed.returncode == 0, listed.stderr
    assets = json.loads(listed.stdout)["assets"]
    assert [(a["shot_id"], a["render"], a["active"], a["kind"]) for a in assets] == [
        ("shot_01", 1, False, "placeholder"),
        ("shot_01", 2, True, "final"),
        ("shot_02", 1, True, "final"),
    ]
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in assets)
    human = run("assets", "list", "--project", root).stdout.splitlines()
    assert human[0].endswith("shot_01_v1_r001.png  [placeholder]")
    assert human[1].endswith("shot_01_v1_r002.png  [active]")
    assert human[-1] == "3 renders, 2 active"
    stats = json.loads(run("assets", "stats", "--project", root, "--json").stdout)
    assert stats["per_kind"]["final"]["count"] == 2
    assert stats["per_kind"]["placeholder"]["count"] == 1
    assert stats["per_shot"]["shot_01"]["placeholder"]["count"] == 1
    verified = run("assets", "verify", "--project", root, "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["intact"] == 3


def test_verify_exits_7_on_a_flipped_byte(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_03": [False]})
    target = project.root / "assets/images/generated/shot_03/shot_03_v1_r001.png"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x80
    target.write_bytes(bytes(data))
    human = run("assets", "verify", "--project", str(project.root))
    assert human.returncode == 7
    assert "CHANGED" in human.stdout and "shot_03_v1_r001.png" in human.stdout
    assert "1 missing" not in human.stderr and "changed" in human.stderr
    assert "Traceback" not in human.stderr
    as_json = run("assets", "verify", "--project", str(project.root), "--json")
    assert as_json.returncode == 7
    body = json.loads(as_json.stdout)
    assert body["ok"] is False and body["changed"][0]["asset_id"] == "shot_03-v1-r001"


def test_clean_dry_run_then_clean_with_policy_from_toml(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False, False, False]})
    root = str(project.root)
    with (project.root / "storycore.toml").open("a") as handle:
        handle.write("\n[assets]\nkeep_newest = 1\n")
    before = snapshot(project.root)
    dry = run("assets", "clean", "--project", root, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    body = json.loads(dry.stdout)
    assert body["dry_run"] is True and body["policy"]["keep_newest"] == 1
    assert sorted(Path(r["path"]).name for r in body["removed"]) == [
        "shot_01_v1_r001.json",
        "shot_01_v1_r001.png",
        "shot_01_v1_r002.json",
        "shot_01_v1_r002.png",
    ]
    assert snapshot(project.root) == before
    done = run("assets", "clean", "--project", root)
    assert done.returncode == 0, done.stderr
    assert "Removed 4 project files" in done.stdout
    listed = json.loads(run("assets", "list", "--project", root, "--json").stdout)["assets"]
    assert [a["render"] for a in listed] == [3]
    flag = run("assets", "clean", "--project", root, "--keep-newest", "0")
    assert flag.returncode == 2 and "assets.keep_newest" in flag.stderr


def test_clean_server_uses_the_install_path_comfyui_folder(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    install = tmp_path / "portable"
    output = install / "ComfyUI" / "output" / "storycore" / "lighthouse" / "shot_01"
    output.mkdir(parents=True)
    (output / "v1_00001_.png").write_bytes(b"ours")
    (output / "v2_00001_.png").write_bytes(b"not ours")
    journal = Journal(project.root)
    journal.append(
        "submit",
        prompt_id="x",
        backend="http://127.0.0.1:8188",
        filename_prefix="storycore/lighthouse/shot_01/v1",
    )
    journal.append("done", prompt_id="x")
    journal.append("upload", backend="http://far.example:8188", name="ref.png")
    journal.close()
    env = {"STORYCORE_COMFYUI__INSTALL_PATH": str(install)}
    result = run("assets", "clean", "--project", str(project.root), "--server", "--json", env=env)
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["server"]
    assert server["comfyui_dir"] == str(install / "ComfyUI")
    assert [Path(f["path"]).name for f in server["removed"]] == ["v1_00001_.png"]
    assert server["remote"] == [
        {"backend": "http://far.example:8188", "prefixes": [], "uploads": ["ref.png"]}
    ]
    assert not (output / "v1_00001_.png").exists() and (output / "v2_00001_.png").exists()

    missing = {"STORYCORE_COMFYUI__INSTALL_PATH": str(tmp_path / "nowhere")}
    human = run("assets", "clean", "--project", str(project.root), "--server", env=missing)
    assert human.returncode == 0, human.stderr
    assert "no local ComfyUI folder found" in human.stderr
    assert str(tmp_path / "nowhere" / "ComfyUI") in human.stderr
    assert "no API to delete" in human.stderr
