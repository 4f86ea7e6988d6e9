"""``storycore preflight`` against the emulator (a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storycore.cli import main

from ._support import REPO_ROOT

emulator = pytest.importorskip("storycore.emulator")


@pytest.fixture
def server_url() -> Iterator[str]:
    """The emulator, run on its own event loop in a thread (the CLI runs its own loop)."""
    state: dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        options = emulator.EmulatorOptions(node_packs=("ipadapter_plus", "controlnet_aux"))
        async with emulator.Emulator(options) as emu:
            state["url"] = emu.url
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(15), "emulator did not start"
    try:
        yield str(state["url"])
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "lighthouse"
    shutil.copytree(REPO_ROOT / "examples" / "lighthouse", target)
    return target


def test_preflight_ready_project(
    server_url: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["preflight", "--project", str(project), "--backend", server_url, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["ok"] is True and report["errors"] == 0
    assert report["server"] == server_url
    assert len(report["shots"]) >= 1
    assert report["complexity"]["device"]["type"] == "cpu"  # the recorded /system_stats


def test_preflight_reports_every_shot_with_a_missing_model(
    server_url: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "storycore.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[render]", '[render]\ncheckpoint = "v1-5-pruned-emaonly.safetensor"'
        ),
        encoding="utf-8",
    )
    code = main(["preflight", "--project", str(project), "--backend", server_url, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 6
    assert report["ok"] is False
    problems = report["problems"]
    assert {p["shot_id"] for p in problems} == set(report["shots"])
    assert all(p["code"] == "model_missing" and p["node_id"] == "1" for p in problems)
    assert "v1-5-pruned-emaonly.safetensors" in problems[0]["hint"]
    # the human view says the same in words
    code = main(["preflight", "--project", str(project), "--backend", server_url])
    text = capsys.readouterr().out
    assert code == 6
    assert "not ready" in text and "CheckpointLoaderSimple" in text


def test_preflight_unreachable_server(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["preflight", "--project", str(project), "--backend", "http://127.0.0.1:9", "--json"]
    )
    body = json.loads(capsys.readouterr().out)
    assert code == 4
    assert body["ok"] is False and body["kind"] in ("network", "comfyui")
    assert body["error"] == "NoServerReachable"
    assert body["tried"] == [
        {"url": "http://127.0.0.1:9", "why": "nothing answers (connection refused)"}
    ]
