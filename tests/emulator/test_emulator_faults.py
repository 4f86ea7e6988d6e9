"""Knobs and fault injection; the emulator as a real child process with ComfyUI's flags."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions

from ._support import collect_until_done, drain, trivial_prompt


async def _post(http: aiohttp.ClientSession, url: str, **body: object) -> str:
    resp = await http.post(f"{url}/prompt", json=body)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["prompt_id"])


async def test_fail_route_counts_down(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults.fail_route("GET", "/system_stats", 503, times=2)
    statuses = []
    for path in ("/system_stats", "/api/system_stats", "/system_stats"):
        statuses.append((await http.get(emu.url + path)).status)
    assert statuses == [503, 503, 200]
    emu.faults.fail_route("POST", "/prompt", 500)
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": trivial_prompt()})
    assert resp.status == 500
    assert emu.executor.number == 0  # the handler did not run
    emu.faults.fail_route("*", "/history*", 502, times=5)
    emu.faults.clear()
    assert (await http.get(f"{emu.url}/history")).status == 200


async def test_drop_websockets(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=d") as ws:
        await drain(ws, 0.05)
        assert emu.faults.drop_websockets() == 1
        msg = await ws.receive(timeout=5)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.ERROR,
        )
    # The server keeps serving.
    async with http.ws_connect(f"{emu.ws_url}?clientId=d2") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "status"


async def test_stall_websockets_delays_in_order(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=s") as ws:
        await drain(ws, 0.05)
        emu.faults.stall_websockets(0.4)
        start = time.monotonic()
        pid = await _post(http, emu.url, prompt=trivial_prompt(), client_id="s")
        first = await ws.receive_json(timeout=5)
        assert time.monotonic() - start >= 0.3
        assert first["type"] == "status"
        rest = await collect_until_done(ws, pid)
        assert [m["type"] for m in rest][-3:] == ["execution_success", "status", "executing"]
    with pytest.raises(ValueError):
        emu.faults.stall_websockets(-1)


async def test_forget_history_and_restart(emu: Emulator, http: aiohttp.ClientSession) -> None:
    pid = await _post(http, emu.url, prompt=trivial_prompt())
    for _ in range(500):
        if pid in emu.executor.history:
            break
        await asyncio.sleep(0.01)
    emu.faults.forget_history()
    assert await (await http.get(f"{emu.url}/history/{pid}")).json() == {}
    port = emu.port
    pid2 = await _post(http, emu.url, prompt=trivial_prompt(color=5))
    await emu.restart()
    assert emu.port == port
    assert await (await http.get(f"{emu.url}/history/{pid2}")).json() == {}
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": trivial_prompt(color=6)})
    assert (await resp.json())["number"] == 0
    with pytest.raises(RuntimeError):
        emu.faults.crash_after_prompts(1)


async def test_startup_delay(tmp_path: Path) -> None:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        startup_delay=0.3,
    )
    start = time.monotonic()
    async with Emulator(options) as emu:
        assert time.monotonic() - start >= 0.3
        assert emu.port > 0


async def test_step_seconds_emulates_gpu_time(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        step_seconds=0.05,
    )
    prompt = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 6,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "g", "images": ["8", 0]}},
    }
    async with Emulator(options) as emu, http.ws_connect(f"{emu.ws_url}?clientId=g") as ws:
        await drain(ws, 0.05)
        start = time.monotonic()
        pid = await _post(http, emu.url, prompt=prompt, client_id="g")
        msgs = await collect_until_done(ws, pid)
        assert time.monotonic() - start >= 0.3
        assert sum(1 for m in msgs if m["type"] == "progress") == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _spawn(tmp_path: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore.emulator",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--cpu",
        "--disable-auto-launch",
        "--output-directory",
        str(tmp_path / "out"),
        "--input-directory",
        str(tmp_path / "in"),
        "--temp-directory",
        str(tmp_path / "tmp"),
        "--preview-size",
        "256",
        "--fast",
        "--cuda-device",
        "0",
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    url = f"http://127.0.0.1:{port}"
    lines = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stderr.readline()).decode()
            lines.append(line)
            assert line, "".join(lines)
            if "To see the GUI go to:" in line:
                assert url in line
                return proc, url


async def test_process_mode_with_comfyui_flags(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    proc, url = await _spawn(
        tmp_path, "--step-seconds", "0", "--node-packs", "ipadapter_plus", "--profile", "0.3.64"
    )
    try:
        stats = await (await http.get(f"{url}/system_stats")).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
        assert "ipadapter" in await (await http.get(f"{url}/models")).json()
        pid = await _post(http, url, prompt=trivial_prompt("proc"))
        for _ in range(500):
            if await (await http.get(f"{url}/history/{pid}")).json():
                break
            await asyncio.sleep(0.01)
        assert (tmp_path / "out" / "proc_00001_.png").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            rc = await proc.wait()
    assert rc == 0


async def test_process_crashes_mid_job(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    proc, url = await _spawn(tmp_path, "--crash-after-prompts", "2")
    try:
        first = await _post(http, url, prompt=trivial_prompt("a"))
        for _ in range(500):
            if await (await http.get(f"{url}/history/{first}")).json():
                break
            await asyncio.sleep(0.01)
        await _post(http, url, prompt=trivial_prompt("b"))
        async with asyncio.timeout(10):
            rc = await proc.wait()
        assert rc == 17
        assert not (tmp_path / "out" / "b_00001_.png").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery")
async def test_process_stops_on_sigint(tmp_path: Path) -> None:
    proc, _url = await _spawn(tmp_path)
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(10):
        rc = await proc.wait()
    assert rc == 0


def test_parse_args_accepts_comfyui_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from storycore.emulator.__main__ import parse_args

    monkeypatch.chdir(tmp_path)
    options, host, port, crash = parse_args(
        [
            "--listen",
            "--port",
            "9000",
            "--lowvram",
            "--reserve-vram",
            "2",
            "--preview-method",
            "latent2rgb",
            "--node-packs",
            "ipadapter_plus, controlnet_aux",
            "--step-seconds",
            "0.5",
        ]
    )
    assert (host, port, crash) == ("0.0.0.0", 9000, None)
    assert options.output_dir == tmp_path / "output"
    assert options.input_dir == tmp_path / "input"
    assert options.preview_method == "latent2rgb"
    assert options.node_packs == ("ipadapter_plus", "controlnet_aux")
    assert options.step_seconds == 0.5
    options, host, port, crash = parse_args(
        [
            "--base-directory",
            str(tmp_path / "b"),
            "--output-directory",
            str(tmp_path / "out"),
            "--crash-after-prompts",
            "3",
        ]
    )
    assert (host, port, crash) == ("127.0.0.1", 8188, 3)
    assert options.output_dir == tmp_path / "out"
    assert options.temp_dir == tmp_path / "b" / "temp"


async def test_stall_delays_pongs_too(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=p", autoping=False) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "status"
        await ws.ping(b"a")
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.PONG
        emu.faults.stall_websockets(0.4)
        start = time.monotonic()
        await ws.ping(b"b")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.PONG
        assert time.monotonic() - start >= 0.3


async def test_fail_node_and_partial_forget(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.faults.fail_node("SaveImage", "disk full")
    async with http.ws_connect(f"{emu.ws_url}?clientId=f") as ws:
        await drain(ws, 0.05)
        first = await _post(http, emu.url, prompt=trivial_prompt(color=1), client_id="f")
        msgs = await collect_until_done(ws, first)
        err = next(m["data"] for m in msgs if m["type"] == "execution_error")
        assert (err["node_type"], err["exception_type"], err["exception_message"]) == (
            "SaveImage",
            "RuntimeError",
            "disk full\n",
        )
        second = await _post(http, emu.url, prompt=trivial_prompt(color=2), client_id="f")
        msgs = await collect_until_done(ws, second)
        assert "execution_success" in [m["type"] for m in msgs]
    emu.faults.forget_history([first])
    assert await (await http.get(f"{emu.url}/history/{first}")).json() == {}
    assert second in await (await http.get(f"{emu.url}/history/{second}")).json()


async def test_run_emulator_blocks_until_sigterm(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = _free_port()
    code = (
        "from pathlib import Path\n"
        "from storycore.emulator import EmulatorOptions, run_emulator\n"
        f"base = Path({str(tmp_path)!r})\n"
        "run_emulator(EmulatorOptions(output_dir=base / 'o', input_dir=base / 'i',"
        f" temp_dir=base / 't'), port={port})\n"
        "print('returned', flush=True)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                resp = await http.get(f"{url}/queue")
                if resp.status == 200:
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        assert (await http.get(f"{url}/queue")).status == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "returned"
        assert "To see the GUI go to: " + url in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_busy_port_is_port_in_use(emu: Emulator, tmp_path: Path) -> None:
    from storycore.errors import PortInUse

    other = Emulator(
        EmulatorOptions(
            output_dir=tmp_path / "o", input_dir=tmp_path / "i", temp_dir=tmp_path / "t"
        ),
        port=emu.port,
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        other.port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as info:
            await other.start()
    assert str(other.port) in str(info.value)
