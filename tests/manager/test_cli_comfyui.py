"""``storycore comfyui ...`` as a user runs it: real CLI processes, real servers, --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storycore.comfyui.manager import ComfyUIManager, ManagerOptions
from storycore.comfyui.process import check_identity, load_pidfile

from ._support import (
    emulator_available,
    free_port,
    kill_tree_now,
    make_install,
    posix_only,
    stand_in_version,
)

needs_emulator = pytest.mark.skipif(not emulator_available(), reason="emulator not available")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storycore", "comfyui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def port() -> Iterator[int]:
    """A free port; whatever StoryCore left running on it is killed at the end."""
    number = free_port()
    yield number
    manager = ComfyUIManager(ManagerOptions(port=number))
    record, _ = load_pidfile(manager.pidfile_path)
    if record is not None and check_identity(record.pid, record.create_time).matches:
        kill_tree_now(record.pid)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@needs_emulator
def test_mock_start_status_logs_stop(port: int) -> None:
    p = str(port)
    started = cli("start", "--mock", "--port", p, "--json")
    assert started.returncode == 0, started.stderr
    body = as_json(started)
    assert body["ok"] and body["action"] == "started" and body["managed"]
    assert "storycore.emulator" in body["command"]
    assert Path(body["log_path"]).is_file()
    assert _answers(port)  # still serving after the CLI exited

    human = cli("status", "--port", p)
    assert human.returncode == 0  # LSB: running
    assert "running" in human.stdout and str(body["pid"]) in human.stdout
    assert "StoryCore's emulator (placeholders) is running" in human.stdout
    assert body["log_path"] in human.stdout
    status = as_json(cli("status", "--port", p, "--json"))
    assert status["state"] == "running" and status["pid"] == body["pid"]
    assert status["comfyui_version"] == stand_in_version() and status["queue_remaining"] == 0

    logs = as_json(cli("logs", "-n", "3", "--port", p, "--json"))
    assert len(logs["lines"]) <= 3 and logs["log_path"] == body["log_path"]
    began = time.monotonic()
    followed = cli("logs", "--follow", "--max-seconds", "0.5", "--port", p)
    assert followed.returncode == 0 and time.monotonic() - began < 20

    restarted = as_json(cli("restart", "--port", p, "--json"))  # no --mock: still the emulator
    assert restarted["start"]["action"] == "started"
    assert "storycore.emulator" in restarted["start"]["command"]
    body = restarted["start"]

    stopped = cli("stop", "--port", p)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped ComfyUI" in stopped.stderr and "Log:" in stopped.stderr
    assert not _answers(port)
    after = cli("status", "--port", p, "--json")
    assert after.returncode == 3  # LSB: not running
    assert as_json(after)["state"] == "stopped" and as_json(after)["exit_code"] == 3
    assert cli("status", "--port", p).returncode == 3
    again = as_json(cli("stop", "--port", p, "--json"))
    assert again["action"] == "not-running"


@posix_only
def test_start_a_fake_install_and_restart(tmp_path: Path, port: int) -> None:
    root, _ = make_install(tmp_path / "ComfyUI", "venv")
    p = str(port)
    started = cli("start", "--install-path", str(root), "--port", p)
    assert started.returncode == 0, started.stderr
    assert "started ComfyUI" in started.stderr and "Log:" in started.stderr
    assert f"storycore comfyui stop --port {p}" in started.stderr
    restarted = as_json(cli("restart", "--install-path", str(root), "--port", p, "--json"))
    assert restarted["stop"]["action"] == "stopped"
    assert restarted["start"]["action"] == "started"
    assert restarted["start"]["pid"] != restarted["stop"]["pid"]
    assert as_json(cli("stop", "--port", p, "--json"))["action"] == "stopped"


def test_missing_install_is_one_paragraph_exit_5(tmp_path: Path, port: int) -> None:
    (tmp_path / "empty").mkdir()
    result = cli("start", "--install-path", str(tmp_path / "empty"), "--port", str(port))
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert "no runnable ComfyUI" in result.stderr and "python_embeded" in result.stderr
    body = as_json(
        cli("start", "--install-path", str(tmp_path / "empty"), "--port", str(port), "--json")
    )
    assert body["ok"] is False and body["error"] == "InstallNotFound"


@needs_emulator
@posix_only
def test_foreground_streams_and_ctrl_c_stops(port: int) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storycore",
            "comfyui",
            "start",
            "--foreground",
            "--mock",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "Streaming the log" in err and "stopped ComfyUI" in err
    assert not _answers(port)


@needs_emulator
@posix_only
def test_emulate_runs_in_the_foreground(tmp_path: Path, port: int) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storycore",
            "comfyui",
            "emulate",
            "--port",
            str(port),
            "--output-dir",
            str(tmp_path / "out"),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert events[0]["event"] == "serving" and events[0]["url"].endswith(f":{port}")
    assert events[-1]["event"] == "stopped"
