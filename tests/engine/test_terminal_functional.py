"""What generate-images tells the person watching, against real emulators on loopback: sampler
progress, the server's own time, throughput, exit codes and their words, the dry-run plan,
debug lines, and retry backoff."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from storycore.cli._common import Output
from storycore.cli._render_view import RichView
from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import (
    ImageEngine,
    PanelDone,
    PanelFailed,
    PanelProgress,
    PanelSubmitted,
    RenderRequest,
)
from storycore.engine._jobs import PanelJob, pick_next
from tests.engine.conftest import Recorder, fast_settings, make_project, run_cli

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "4",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
}


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_cli(*args, env={**FAST_ENV, **(env or {})})


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def test_progress_follows_the_sampler_and_names_the_node(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    recorder = Recorder()
    async with Emulator(EmulatorOptions(step_seconds=0.05)) as emu:
        engine = ImageEngine(fast_settings(**{"render.steps": 4}), on_event=recorder)
        summary = await engine.render(RenderRequest(root, backends=(emu.url,)))
    assert summary.counts["rendered"] == 2
    steps = [e for e in recorder.of(PanelProgress) if e.shot_id == "shot_01" and e.steps]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert {e.steps for e in steps} == {4} and {e.node_class for e in steps} == {"KSampler"}

    # The terminal view shows exactly that: the bar at step/steps, the node named.
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    out = Output(False)
    out.err_console = console
    view = RichView(out)
    view.progress.start()
    for event in recorder.events:
        if isinstance(event, PanelProgress) and event.shot_id == "shot_01":
            view.handle(event)
            if event.steps:
                task = view.progress.tasks[-1]
                assert (task.completed, task.total) == (event.step, event.steps)
                assert "KSampler" in task.description
    view.close()


async def test_panel_time_is_the_servers_execution_time(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    recorder = Recorder()
    async with Emulator(EmulatorOptions(step_seconds=0.05)) as emu:
        engine = ImageEngine(fast_settings(**{"render.steps": 4}), on_event=recorder)
        await engine.render(RenderRequest(root, backends=(emu.url,)))
        async with aiohttp.ClientSession() as http:
            for done in recorder.of(PanelDone):
                async with http.get(f"{emu.url}/history/{done.prompt_id}") as response:
                    entry = (await response.json())[done.prompt_id]
                stamps = dict(entry["status"]["messages"])
                server = (
                    stamps["execution_success"]["timestamp"]
                    - stamps["execution_start"]["timestamp"]
                ) / 1000
                assert done.execution_s is not None and abs(done.execution_s - server) < 0.002
                assert done.execution_s >= 0.2  # four 0.05 s steps
                assert done.queued_s is not None and done.queued_s >= 0
                assert done.seconds >= done.execution_s


async def test_summary_gives_throughput_on_stdout_and_progress_on_stderr(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with Emulator(EmulatorOptions(step_seconds=0.01)) as emu:
        code, out, err = await _cli("generate-images", "-p", str(root), "--backend", emu.url)
    assert code == 0, err
    assert "3 panels in " in out and " s per panel, " in out and " per hour" in out
    assert "3 rendered, 0 skipped (unchanged), 0 failed, 0 placeholders" in out
    assert "done shot_01" in err and "done shot_01" not in out
    assert "on the server" in err
    assert "exit code" not in out + err


async def test_exit_code_words_only_with_the_real_code(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    closed = {"STORYCORE_COMFYUI__PORT": "9"}  # nothing listens on the discard port
    code, out, err = await _cli("generate-images", "-p", str(root), "--mock", env=closed)
    assert code == 0, err
    assert "placeholder frames, as asked with --mock" in err and "exit code" not in out + err

    # A rerun that keeps those placeholders exits 9 and says why.
    code, out, err = await _cli(
        "generate-images", "-p", str(root), "--fallback", "mock", env=closed
    )
    assert code == 9, err
    assert "2 panels are placeholders from an earlier run" in err
    assert "(exit code 9)" in err
    assert "skipped (placeholder)" in out


async def test_verbose_logs_submit_settle_and_download_with_ids(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    async with Emulator(EmulatorOptions(step_seconds=0.01)) as emu:
        code, out, err = await _cli(
            "generate-images", "-p", str(root), "--backend", emu.url, "--json", "-v"
        )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    (done,) = [e for e in events if e["event"] == "panel_done"]
    prompt_id = done["prompt_id"]
    assert f"submitted shot_01 as prompt {prompt_id} to {emu.url}" in err
    assert f"prompt {prompt_id} on {emu.url} settled: success" in err
    assert (
        "downloaded '" in err
        and "_00001_.png' (" in err
        and f"of prompt {prompt_id} from {emu.url}" in err
    )
    assert f"preflight of 1 graph(s) against {emu.url}" in err


async def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    async with Emulator(EmulatorOptions(step_seconds=0.0)) as emu:
        code, _, err = await _cli("generate-images", "-p", str(root), "--backend", emu.url)
        assert code == 0, err
        rendered = len(emu.executed_prompt_ids)
        board = json.loads((root / "storyboard.json").read_text())
        board["shots"][1]["prompt_modules"]["subject"] = "a storm at sea"
        (root / "storyboard.json").write_text(json.dumps(board))
        before = _tree(root)
        code, out, err = await _cli(
            "generate-images", "-p", str(root), "--dry-run", env={"STORYCORE_COMFYUI__PORT": "9"}
        )
        assert len(emu.executed_prompt_ids) == rendered  # nothing submitted anywhere
    assert code == 0, err
    assert _tree(root) == before  # nothing written, not even .storycore
    assert "skip   shot_01: unchanged since its last render" in out
    assert "render shot_02: changed since its last render" in out
    assert "prompt: a storm at sea" in out and "seed " in out and "128x72" in out
    assert "v1-5-pruned-emaonly.safetensors" in out
    assert "1 panel would render, 1 would be skipped" in out
    assert "backend" not in err  # no server was contacted or started


async def test_dry_run_json_streams_one_plan_per_panel(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    code, out, err = await _cli("generate-images", "-p", str(root), "--dry-run", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    plans = [e for e in events if e["event"] == "panel_planned"]
    assert [p["shot_id"] for p in plans] == ["shot_01", "shot_02"]
    assert all(p["action"] == "render" and p["positive"] and p["seed"] for p in plans)
    assert events[-1]["event"] == "summary" and events[-1]["dry_run"] is True


async def test_a_retry_waits_out_a_backoff(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    stamps: list[tuple[float, Any]] = []
    recorder = Recorder(lambda event: stamps.append((time.monotonic(), event)))
    async with Emulator(EmulatorOptions(step_seconds=0.0)) as emu:
        emu.faults.fail_route("POST", "/prompt", 503, times=1)
        engine = ImageEngine(fast_settings(), on_event=recorder)
        summary = await engine.render(RenderRequest(root, backends=(emu.url,)))
    assert summary.counts["rendered"] == 1, summary.to_dict()
    failed = [t for t, e in stamps if isinstance(e, PanelFailed) and e.will_retry]
    second = [t for t, e in stamps if isinstance(e, PanelSubmitted) and e.attempt == 2]
    assert failed and second
    assert second[0] - failed[0] >= 0.45  # RetryPolicy: 0.5 s before the first retry


def test_a_job_in_backoff_is_not_picked() -> None:
    class _Backend:
        url = "http://a"
        last_checkpoint = None
        healthy = True

    def job(shot: str, not_before: float) -> PanelJob:
        panel = type("P", (), {"checkpoint": "x", "shot_id": shot})()
        return PanelJob(panel, "fp", {}, lambda: None, not_before=not_before)  # type: ignore[arg-type, return-value]

    waiting, ready = job("a", time.monotonic() + 60), job("b", 0.0)
    pending = deque([waiting, ready])
    backend: Any = _Backend()
    assert pick_next(pending, backend, [backend]) is ready
    assert pick_next(pending, backend, [backend]) is None and list(pending) == [waiting]


async def test_storyboard_typos_are_warned_about_before_rendering(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    board = json.loads((root / "storyboard.json").read_text())
    board["shots"][0]["prompt_modules"]["technical"]["stpes"] = 12
    (root / "storyboard.json").write_text(json.dumps(board))
    code, out, err = await _cli("generate-images", "-p", str(root), "--dry-run")
    assert code == 0, err
    assert "shots[0].prompt_modules.technical.stpes" in err and "did you mean `steps`?" in err
    code, out, _ = await _cli("generate-images", "-p", str(root), "--dry-run", "--json")
    notices = [json.loads(line) for line in out.splitlines()]
    assert any(n["event"] == "notice" and "technical.stpes" in n["text"] for n in notices), notices
