"""``storycore comfyui emulate`` timing options: a child emulator with ``--step-seconds`` keeps a
10-step job running long enough to interrupt it mid-sampling, as in the recording
ws_sd15_interrupt_in_ksampler.jsonl (``execution_interrupted`` naming the KSampler)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from .._support import collect_until_done, load_transcript


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _txt2img(steps: int) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a harbour"}},
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "seed": 1,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "cli"}},
    }


async def _wait_ready(http: aiohttp.ClientSession, url: str, proc: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.returncode is None, "the emulator exited before it listened"
        try:
            async with http.get(f"{url}/system_stats") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"no emulator at {url} within {limit_s} s")


async def test_step_seconds_lets_an_interrupt_land_mid_sampling(tmp_path: Path) -> None:
    recorded = next(
        e["data"]
        for e in load_transcript("ws_sd15_interrupt_in_ksampler.jsonl")
        if e["kind"] == "ws_recv" and e.get("type") == "execution_interrupted"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOME": str(tmp_path), "STORYCORE_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore",
        "comfyui",
        "emulate",
        "--json",
        "--port",
        str(port),
        "--step-seconds",
        "0.2",
        "--output-dir",
        str(tmp_path / "out"),
        "--models-dir",
        str(tmp_path / "models"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await _wait_ready(http, url, proc, 30.0)
            # --models-dir: a new folder is made with the default names, and listed from disk.
            (tmp_path / "models" / "loras" / "storycore-style.safetensors").unlink()
            assert await (await http.get(f"{url}/models/loras")).json() == []
            client = uuid.uuid4().hex
            async with http.ws_connect(f"ws://127.0.0.1:{port}/ws?clientId={client}") as ws:
                body = {"prompt": _txt2img(10), "client_id": client}
                resp = await http.post(f"{url}/prompt", json=body)
                assert resp.status == 200, await resp.text()
                pid = (await resp.json())["prompt_id"]
                seen: list[dict[str, Any]] = []
                async with asyncio.timeout(10):
                    while True:  # wait for the second sampler step
                        msg = json.loads((await ws.receive()).data)
                        seen.append(msg)
                        if msg["type"] == "progress" and msg["data"]["value"] >= 2:
                            break
                started = time.monotonic()
                assert (await http.post(f"{url}/interrupt")).status == 200
                rest = await collect_until_done(ws, pid, 10.0)
                stopped_in = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
    msgs = seen + rest
    interrupted = [m["data"] for m in msgs if m["type"] == "execution_interrupted"]
    assert len(interrupted) == 1, [m["type"] for m in msgs]
    assert sorted(interrupted[0]) == sorted(recorded)
    assert interrupted[0]["node_type"] == "KSampler" == recorded["node_type"]
    assert sorted(interrupted[0]["executed"]) == ["1", "2", "3"]
    steps = [m["data"]["value"] for m in msgs if m["type"] == "progress"]
    assert 2 <= max(steps) < 10  # stopped mid-sampling, not after it
    assert stopped_in < 2.0  # at the next step (0.2 s), not at the end of the job
    assert not any(m["type"] == "execution_success" for m in msgs)
    assert proc.returncode == 0
