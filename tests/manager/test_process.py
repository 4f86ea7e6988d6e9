"""OS side: pidfiles, logs, identity, tree termination and port holders, with real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from storycore.comfyui.process import (
    PIDFILE_VERSION,
    PidRecord,
    check_identity,
    describe_port_holder,
    is_port_open,
    load_pidfile,
    rotate_log,
    spawn_detached,
    tail_lines,
    terminate_tree,
    write_pidfile,
)

from ._support import free_port, posix_only


def _record(**changes: object) -> PidRecord:
    base = PidRecord(
        pid=1234,
        create_time=1700000000.25,
        host="127.0.0.1",
        port=8188,
        command=("python", "main.py"),
        log_path="/tmp/x.log",
        started_at=1700000001.0,
    )
    return PidRecord(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_pidfile_round_trip_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "comfyui.pid"
    assert load_pidfile(path) == (None, None)
    record = _record()
    write_pidfile(path, record)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == PIDFILE_VERSION and data["command"] == ["python", "main.py"]
    assert set(data) >= {"pid", "create_time", "host", "port", "command", "log_path", "started_at"}
    assert load_pidfile(path) == (record, None)
    assert [p.name for p in path.parent.iterdir()] == ["comfyui.pid"]  # no temp files left
    for body in (
        "{not json",
        "[]",
        json.dumps({**data, "version": 99}),
        json.dumps({"version": 1}),
    ):
        path.write_text(body, encoding="utf-8")
        loaded, problem = load_pidfile(path)
        assert loaded is None and problem is not None and "not a StoryCore pidfile" in problem


def test_rotate_log(tmp_path: Path) -> None:
    log = tmp_path / "comfyui.log"
    log.write_bytes(b"x" * 10)
    rotate_log(log, max_bytes=100, backups=2)
    assert log.exists()  # small enough: kept
    for round_ in range(4):
        log.write_bytes(str(round_).encode() * 200)
        rotate_log(log, max_bytes=100, backups=2)
        assert not log.exists()
    assert (tmp_path / "comfyui.log.1").read_bytes()[:1] == b"3"
    assert (tmp_path / "comfyui.log.2").read_bytes()[:1] == b"2"
    assert not (tmp_path / "comfyui.log.3").exists()


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    assert tail_lines(log, 5) == []
    log.write_text("".join(f"line {i}\n" for i in range(5000)), encoding="utf-8")
    assert tail_lines(log, 3) == ["line 4997", "line 4998", "line 4999"]
    offset = len("".join(f"line {i}\n" for i in range(4998)))
    assert tail_lines(log, 10, start_offset=offset) == ["line 4998", "line 4999"]
    assert tail_lines(log, 0) == []


def test_identity_of_self_of_a_stranger_and_of_the_dead() -> None:
    me = psutil.Process()
    assert check_identity(me.pid, me.create_time()).matches
    other = check_identity(me.pid, me.create_time() - 1000)
    assert other.alive and not other.matches and "another program" in other.reason
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    dead = check_identity(proc.pid, 0.0)
    assert not dead.alive and not dead.matches


@posix_only
def test_zombie_is_not_alive(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    create_time = psutil.Process(proc.pid).create_time()
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    identity = check_identity(proc.pid, create_time)
    assert not identity.matches and not identity.alive
    proc.wait(timeout=5)


TREE_SCRIPT = """
import signal, subprocess, sys, time
if {ignore}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time\\nif {ignore}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "for _ in range(600): time.sleep(0.1)"])
print(child.pid, flush=True)
for _ in range(600):
    time.sleep(0.1)
"""


@posix_only
@pytest.mark.parametrize("ignore", [False, True])
def test_terminate_tree_kills_children_and_stubborn_ones(tmp_path: Path, ignore: bool) -> None:
    log = tmp_path / "tree.log"
    spawned = spawn_detached(
        [sys.executable, "-c", TREE_SCRIPT.format(ignore=ignore)],
        cwd=tmp_path,
        env=dict(os.environ),
        log_path=log,
    )
    try:
        deadline = time.monotonic() + 10
        while not tail_lines(log, 1, start_offset=spawned.log_offset):
            assert time.monotonic() < deadline, "the tree script did not start"
            time.sleep(0.05)
        grandchild = int(tail_lines(log, 1, start_offset=spawned.log_offset)[0])
        assert os.getpgid(spawned.pid) == spawned.pid  # its own session and group
        assert check_identity(spawned.pid, spawned.create_time).matches
        report = terminate_tree(
            psutil.Process(spawned.pid), graceful_timeout=0.5, force_kill_timeout=2
        )
        assert report.clean and report.survivors == ()
        assert not psutil.pid_exists(grandchild) or (
            psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        )
        if ignore:
            assert set(report.killed) >= {spawned.pid, grandchild}
            assert report.elapsed >= 0.5 and not report.graceful
        else:
            assert report.killed == () and report.graceful
    finally:
        spawned.popen.kill()
        spawned.popen.wait(timeout=5)
    assert "===== storycore: starting" in log.read_text(encoding="utf-8")


def test_ports_and_their_holder() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert is_port_open("127.0.0.1", port)
        holder = describe_port_holder(port)
        if sys.platform.startswith("linux"):
            assert f"pid {os.getpid()}" in holder
        else:
            assert holder
    assert not is_port_open("127.0.0.1", free_port(), timeout=0.5)
    assert describe_port_holder(free_port()) == "unknown process"
