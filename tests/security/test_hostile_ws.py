"""Hostile WebSocket frames: odd node ids, floods of ``executed`` frames, secrets echoed back.

The server is an honest emulator behind a relay whose WebSocket injects crafted frames right
after the emulator's ``execution_start`` for our prompt (so they reach the tracker while the
prompt runs); the CLI renders in a bounded child process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from storycore.emulator import Emulator, EmulatorOptions
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import make_project
from tests.reliability.conftest import server_renders
from tests.security._support import Handler, hostile_comfyui, relay_ws, run_storycore

Inject = Callable[[str], Iterator[str]]
"""Given our prompt id at ``execution_start``, the extra text frames to send at once."""

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__IDLE_TIMEOUT": "6",
    "STORYCORE_COMFYUI__MAX_RETRIES": "1",
}


def injecting_ws(emulator: dict[str, Emulator], inject: Inject) -> Handler:
    """A ``GET /ws`` handler relaying the emulator's frames, with ``inject``'s frames sent
    right after each ``execution_start``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        def after(text: str) -> Iterator[str]:
            event = json.loads(text)
            if event.get("type") == "execution_start":
                yield from inject(str(event["data"]["prompt_id"]))

        async with ClientSession() as session:
            return await relay_ws(request, session, emulator["emu"].url, after_text=after)

    return handler


def frame(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, "data": data})


async def _render(
    tmp_path: Path, inject: Inject, *args: str, step_seconds: float = 0.0
) -> tuple[Any, Path, Emulator]:
    root = make_project(tmp_path / "p", 1)
    holder: dict[str, Emulator] = {}
    options = EmulatorOptions(
        output_dir=tmp_path / "server-output",
        input_dir=tmp_path / "server-input",
        temp_dir=tmp_path / "tmp",
        step_seconds=step_seconds,
    )
    ws = injecting_ws(holder, inject)
    async with hostile_comfyui({"GET /ws": ws}, tmp=tmp_path, options=options) as (url, emu):
        holder["emu"] = emu
        result = await run_storycore(
            "generate-images",
            "--project",
            str(root),
            "--backend",
            url,
            *args,
            env=FAST_ENV,
            limit_s=60,
        )
    return result, root, emu


@pytest.mark.parametrize("node", ["\u00b2", "9" * 5000, "", "x" * 100_000])
async def test_one_odd_executing_frame_renders_the_panel_once(tmp_path: Path, node: str) -> None:
    def inject(prompt_id: str) -> Iterator[str]:
        yield frame("executing", node=node, display_node=node, prompt_id=prompt_id)

    result, root, emu = await _render(tmp_path, inject)
    result.assert_bounded(seconds=30)
    assert result.rc == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    assert len(emu.executed_prompt_ids) == 1, emu.executed_prompt_ids
    assert server_renders([emu.output_dir]) == {"shot_01": 1}
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]


async def test_unparseable_frames_never_stop_a_finished_render(tmp_path: Path) -> None:
    """Frames of every wrong shape right after ``execution_start``: the panel renders once, and
    the WebSocket keeps working (the sampler's steps still arrive: a number too large for a
    float in a ``progress`` frame used to end the connection for the rest of the run)."""

    def inject(prompt_id: str) -> Iterator[str]:
        yield frame("progress", value=10**400, max=3, prompt_id=prompt_id, node="3")
        yield frame("progress", value=1, max=10**400, prompt_id=prompt_id, node="3")
        yield "{not json"
        yield frame("executing", node={"a": 1}, prompt_id=prompt_id)
        yield frame("executed", node=["5"], output=[], prompt_id=prompt_id)
        yield frame("execution_cached", nodes=["\u00b2", "1" * 5000], prompt_id=prompt_id)
        yield frame("progress_state", nodes={"\u00b2": {"state": "running"}}, prompt_id=prompt_id)
        yield json.dumps({"type": "executing", "data": [prompt_id]})
        yield "[" * 100_000 + "]" * 100_000

    result, root, emu = await _render(tmp_path, inject, "--json")
    result.assert_bounded(seconds=30)
    assert result.rc == 0, result.output[-3000:]
    assert len(emu.executed_prompt_ids) == 1, emu.executed_prompt_ids
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [e["step"] for e in lines if e["event"] == "panel_progress" and e.get("step")]
    assert steps and max(steps) == 3, lines


async def test_a_flood_of_executed_frames_with_new_node_ids_keeps_memory_bounded(
    tmp_path: Path,
) -> None:
    """40 ``executed`` frames of 1 MB, each for a node id never seen before, all for the running
    prompt, each output a list of 333,000 empty lists (21 MB once parsed): 850 MB if the tracker
    kept them. The prompt renders for 4.5 s, so every frame arrives while it runs. The child
    must stay under 500 MB and the prompt still finish."""
    flood = "[" + ",".join(["[]"] * 333_000) + "]"

    def inject(prompt_id: str) -> Iterator[str]:
        for n in range(40):
            yield (
                '{"type": "executed", "data": {"node": "flood'
                + str(n)
                + '", "prompt_id": "'
                + prompt_id
                + '", "output": {"text": '
                + flood
                + "}}}"
            )

    result, root, emu = await _render(tmp_path, inject, step_seconds=1.5)
    result.assert_bounded(seconds=40)
    assert result.rc == 0, result.output[-3000:]
    assert len(emu.executed_prompt_ids) == 1
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]


async def test_execution_error_text_is_redacted_and_made_storable(tmp_path: Path) -> None:
    """The server echoes the configured API key (and a lone surrogate) in its error text: the
    panel fails with exit 8, and the key is in none of the files StoryCore writes."""
    secret = "sk-live-0123456789abcdef"

    def inject(prompt_id: str) -> Iterator[str]:
        message = f"bad key {secret} \\ud800 in header"
        yield (
            '{"type": "execution_error", "data": {"prompt_id": "' + prompt_id + '", '
            '"node_id": "3", "node_type": "KSampler", "exception_type": "ValueError '
            + secret
            + '", "exception_message": "'
            + message
            + '", "traceback": ["'
            + secret
            + '"]}}'
        )

    root = make_project(tmp_path / "p", 1)
    holder: dict[str, Emulator] = {}
    config = tmp_path / "xdg" / "storycore" / "config.toml"
    config.parent.mkdir(parents=True)
    async with hostile_comfyui({"GET /ws": injecting_ws(holder, inject)}, tmp=tmp_path) as (
        url,
        emu,
    ):
        holder["emu"] = emu
        config.write_text(
            f'[[backends]]\nurl = "{url}"\nheaders = {{ "X-Api-Key" = "{secret}" }}\n'
        )
        result = await run_storycore(
            "generate-images",
            "--project",
            str(root),
            env={**FAST_ENV, "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
            limit_s=60,
        )
    result.assert_bounded(seconds=40)
    assert result.rc == 8, result.output[-3000:]
    assert "Traceback" not in result.output
    assert secret not in result.output
    written = [p for p in (root / ".storycore").rglob("*") if p.is_file()]
    written.append(root / "project.json")
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    failed = [e for e in Journal(root).events() if e["event"] == "failed"]
    assert failed and "***" in failed[-1]["error"], failed
