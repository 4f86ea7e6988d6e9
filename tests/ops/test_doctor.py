"""``storycore doctor`` and ``storycore metrics`` against real servers, files and processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storycore.doctor import build_report
from storycore.emulator import Emulator, EmulatorOptions
from storycore.monitoring import PerformanceMonitor, metrics_dir_for
from storycore.platform import port_holder
from storycore.project import init_project

from ._safetensors_factory import SD15_CHECKPOINT, SDXL_LORA, write_safetensors

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell for fake tools")


def _fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smi_line: str | None) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    if smi_line is not None:
        script = folder / "nvidia-smi"
        script.write_text(f'#!/bin/sh\necho "{smi_line}"\n', encoding="utf-8")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return folder


def _fake_install(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "main.py").write_text("# not a real ComfyUI\n")
    (root / "venv" / "bin" / "python").write_text("")
    models = root / "models"
    write_safetensors(models / "checkpoints" / "v1-5-pruned-emaonly.safetensors", SD15_CHECKPOINT)
    write_safetensors(models / "loras" / "style.safetensors", SDXL_LORA)
    return root


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    options = EmulatorOptions(
        models={"checkpoints": ["other.safetensors"]},
        output_dir=tmp_path / "out",
        input_dir=tmp_path / "in",
        temp_dir=tmp_path / "tmp",
    )
    async with Emulator(options) as emu:
        yield emu


@POSIX
async def test_doctor_against_the_emulator(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bin(tmp_path, monkeypatch, "0, Small Card, 4096, 4000, 96, 0, 550.1")
    install = _fake_install(tmp_path)
    monkeypatch.setenv("STORYCORE_COMFYUI__INSTALL_PATH", str(install))
    project = init_project("demo", tmp_path)

    from storycore.diagnostics import DiagnosticHistory, classify
    from storycore.errors import ServerUnreachable

    DiagnosticHistory.for_project(project).record(classify(ServerUnreachable("refused")))

    report = await build_report(project_dir=project, url=emulator.url)

    assert [d["code"] for d in report.recent_diagnoses] == ["unreachable"]
    assert report.server.reachable and report.server.version == "0.3.64"
    assert report.server.node_classes and report.server.node_classes > 400
    assert report.server.models["checkpoints"] == ["other.safetensors"]
    assert report.gpus[0].name == "Small Card"  # NVIDIA first
    assert report.launch.flags == ("--lowvram",)
    assert report.install.found and report.install.kind == "venv"
    assert report.inventory is not None
    ckpt = report.inventory.find("checkpoints", "v1-5-pruned-emaonly.safetensors")
    assert ckpt is not None and ckpt.family == "sd15"
    assert report.project is not None and report.project.panels == 3
    assert report.project.models_missing == {"checkpoints": ["v1-5-pruned-emaonly.safetensors"]}
    assert len(report.project.advice) == 3  # family known from the local header
    codes = [p.code for p in report.problems]
    assert "model_missing" in codes and "server_on_cpu" in codes and not report.ok
    missing = next(p for p in report.problems if p.code == "model_missing")
    assert "`other.safetensors`" in missing.fix
    sources = {name: source for name, _, source in report.settings}
    assert sources["comfyui.install_path"].startswith("environment")
    data = report.to_dict()
    json.dumps(data)  # plain JSON
    assert "classes" not in data["server"]
    assert data["models"]["loras"][0]["family"] == "sdxl"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "storycore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@POSIX
def test_doctor_cli_with_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_bin(tmp_path, monkeypatch, None)
    url = f"http://127.0.0.1:{_free_port()}"
    done = _cli(
        "doctor",
        "--json",
        "--url",
        url,
        env_extra={"STORYCORE_COMFYUI__INSTALL_PATH": str(tmp_path / "nowhere")},
    )
    assert done.returncode == 4, done.stderr  # no ComfyUI reachable, as in generate-images
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["server"]["reachable"] is False
    assert data["server"]["tried"] == [{"url": url, "why": "nothing answers (connection refused)"}]
    codes = {p["code"] for p in data["problems"]}
    assert "no_comfyui" in codes
    assert ("no_gpu" in codes) == (data["gpus"] == [])  # no nvidia-smi on PATH here
    assert ("--cpu" in data["launch_flags"]) == (data["gpus"] == [])
    human = _cli("doctor", "--backend", url)  # --url stays as a hidden alias
    assert human.returncode == 4 and "fix:" in human.stdout
    assert "no ComfyUI server is reachable:" in human.stdout
    assert f"{url}: nothing answers (connection refused)" in human.stdout
    assert "Traceback" not in human.stdout + human.stderr
    shown = _cli("doctor", "--help")
    assert "--backend" in shown.stdout and "--url" not in shown.stdout


async def test_doctor_names_what_holds_the_port(tmp_path: Path) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-not-comfyui\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        if await asyncio.to_thread(port_holder, port) is None:
            pytest.skip("this OS does not tell who listens on a port")
        report = await build_report(url=f"http://127.0.0.1:{port}", probe_timeout=2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert not report.server.reachable
    assert report.server.port_holder is not None and report.server.port_holder[0] == os.getpid()
    problem = next(p for p in report.problems if p.code == "port_in_use")
    assert problem.message.startswith(f"port {port} is held by pid {os.getpid()}")


def test_metrics_cli_summarises_recorded_runs(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    monitor = PerformanceMonitor(metrics_dir=metrics_dir_for(project), run_id="r7")
    monitor.record_panel("shot-1", 12.0, phases={"model_load": 4.0, "sampling": 7.0})
    monitor.record_panel("shot-2", 400.0, phases={"sampling": 390.0})
    monitor.close()
    done = _cli("metrics", "--project", str(project), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (run,) = data["runs"]
    assert run["run_id"] == "r7" and run["panels_ok"] == 2
    assert run["slowest_panels"][0]["panel"] == "shot-2"
    assert run["alerts"][0]["level"] == "critical"
    human = _cli("metrics", "--project", str(project))
    assert "panels/hour" in human.stdout and "shot-2 400.0s" in human.stdout
    empty = _cli("metrics", "--project", str(tmp_path / "none"))
    assert empty.returncode == 0 and "No runs recorded" in empty.stdout


def _project_with_reference(tmp_path: Path) -> Path:
    from PIL import Image

    project = init_project("refs", tmp_path)
    Image.new("RGB", (64, 64), (200, 40, 40)).save(project / "assets" / "hero.png")
    board_path = project / "storyboard.json"
    board = json.loads(board_path.read_text(encoding="utf-8"))
    board["shots"][0]["references"] = {"characters": ["assets/hero.png"]}
    board_path.write_text(json.dumps(board), encoding="utf-8")
    return project


@POSIX
async def test_doctor_lists_custom_nodes_needed_vs_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bin(tmp_path, monkeypatch, None)
    install = _fake_install(tmp_path)
    monkeypatch.setenv("STORYCORE_COMFYUI__INSTALL_PATH", str(install))
    project = _project_with_reference(tmp_path)
    options = EmulatorOptions(
        output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "tmp"
    )
    async with Emulator(options) as core_only:  # no custom node packs
        report = await build_report(project_dir=project, url=core_only.url)
    assert report.project is not None
    ipadapter = {c for c, pack in report.project.nodes_needed.items() if "IPAdapter" in pack}
    assert ipadapter, report.project.nodes_needed
    assert ipadapter <= set(report.project.nodes_missing)
    problem = next(p for p in report.problems if p.code == "custom_node_missing")
    assert "ComfyUI_IPAdapter_plus" in problem.fix and "server does not offer" in problem.message

    with_packs = EmulatorOptions(
        output_dir=tmp_path / "out",
        input_dir=tmp_path / "in",
        temp_dir=tmp_path / "tmp",
        node_packs=("ipadapter_plus", "controlnet_aux"),
    )
    async with Emulator(with_packs) as full:
        report = await build_report(project_dir=project, url=full.url)
    assert report.project is not None and report.project.nodes_missing == []
    assert report.project.nodes_needed  # still listed as needed

    offline = f"http://127.0.0.1:{_free_port()}"
    report = await build_report(project_dir=project, url=offline, probe_timeout=1.0)
    assert report.project is not None and report.project.nodes_missing  # no pack folder
    (install / "custom_nodes" / "ComfyUI_IPAdapter_plus").mkdir(parents=True)
    report = await build_report(project_dir=project, url=offline, probe_timeout=1.0)
    assert report.project is not None and report.project.nodes_missing == []


async def test_doctor_shows_the_project_storage(tmp_path: Path) -> None:
    """Issue 10: asset statistics appear in the doctor's project section."""
    from storycore.config import resolve_settings
    from storycore.engine import ImageEngine, RenderRequest

    project = init_project("stored", tmp_path)
    settings = resolve_settings(
        env={}, read_user_config=False, cli={"render.render_long_side": 128}
    ).settings
    await ImageEngine(settings).render(RenderRequest(project, mock=True))
    (project / "assets" / "images" / "generated" / "shot_01" / "stray.png").write_bytes(b"x")
    report = await build_report(project_dir=project, url="http://127.0.0.1:9", probe_timeout=1)
    assert report.project is not None
    storage = report.project.storage
    assert storage["placeholder"]["count"] == 3 and storage["placeholder"]["bytes"] > 0
    assert storage["final"]["count"] == 0
    assert storage["unknown"]["count"] == 1
