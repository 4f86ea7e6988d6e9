"""The Image Engine end to end against real emulators on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import (
    BackendChanged,
    ImageEngine,
    PanelDone,
    PanelFailed,
    RenderRequest,
)
from storycore.errors import NoServerReachable, RenderError
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import Recorder, fast_settings, make_project


def _check_project(root: Path, shots: int) -> None:
    """Every shot has exactly one active record whose file has the recorded sha256."""
    project = load_project(root)
    recs = records(project)
    assert Counter(r.shot_id for r in recs) == {f"shot_{n:02d}": 1 for n in range(1, shots + 1)}
    for rec in recs:
        data = (root / rec.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec.sha256
        assert len(data) == rec.size
        assert (root / rec.sidecar_path).is_file()
        assert project.data["shots_index"][rec.shot_id]["active_asset"] == rec.asset_id
    assert Journal(root).open_prompts() == []


async def test_renders_twelve_panels_then_skips_them(project12: Path) -> None:
    async with Emulator(EmulatorOptions(step_seconds=0.005)) as emu:
        engine = ImageEngine(fast_settings(), on_event=Recorder())
        summary = await engine.render(RenderRequest(project12, backends=(emu.url,)))
        assert summary.counts["rendered"] == 12, summary.to_dict()
        assert summary.exit_code == 0
        assert len(emu.executed_prompt_ids) == 12
        _check_project(project12, 12)
        rec = records(load_project(project12))[0]
        with Image.open(project12 / rec.path) as image:
            provenance = json.loads(image.info["storycore"])
        assert provenance["prompt_id"] == rec.prompt_id
        assert provenance["workflow_sha256"] == rec.workflow_sha256
        assert rec.timings.total is not None and rec.seed is not None
        assert load_project(project12).data["generation_status"]["image_generation"] == "done"

        again = await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,))
        )
        assert again.counts["skipped"] == 12
        assert len(emu.executed_prompt_ids) == 12

        forced = await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,), shots=("shot_03",), force=True)
        )
        assert forced.counts["rendered"] == 1
        assert (project12 / "assets/images/generated/shot_03/shot_03_v1_r002.png").is_file()
        assert (project12 / "assets/images/generated/shot_03/shot_03_v1_r001.png").is_file()


async def test_a_changed_file_is_rendered_again(project12: Path) -> None:
    async with Emulator() as emu:
        await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,), shots=("shot_01", "shot_02"))
        )
        target = project12 / "assets/images/generated/shot_01/shot_01_v1_r001.png"
        data = bytearray(target.read_bytes())
        data[-20] ^= 0xFF
        target.write_bytes(bytes(data))
        (project12 / "assets/images/generated/shot_02/shot_02_v1_r001.png").unlink()
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,), shots=("shot_01", "shot_02"))
        )
        assert summary.counts["rendered"] == 2


async def test_three_backends_share_the_board(tmp_path: Path) -> None:
    root = make_project(tmp_path, 12)
    opts = EmulatorOptions(step_seconds=0.02)
    async with Emulator(opts) as a, Emulator(opts) as b, Emulator(opts) as c:
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(a.url, b.url, c.url))
        )
        assert summary.counts["rendered"] == 12
        used = [len(e.executed_prompt_ids) for e in (a, b, c)]
        assert sum(used) == 12 and all(n > 0 for n in used), used
    _check_project(root, 12)


async def test_backend_killed_mid_run_panels_move(tmp_path: Path) -> None:
    root = make_project(tmp_path, 12)
    opts = EmulatorOptions(step_seconds=0.05)
    async with Emulator(opts) as survivor:
        victim = Emulator(opts)
        await victim.start()
        killed = asyncio.Event()

        def hook(event: object) -> None:
            if isinstance(event, PanelDone) and event.backend == victim.url and not killed.is_set():
                killed.set()
                asyncio.get_running_loop().create_task(victim.stop())

        recorder = Recorder(hook)
        summary = await ImageEngine(fast_settings(), on_event=recorder).render(
            RenderRequest(root, backends=(victim.url, survivor.url))
        )
        await victim.stop()
        assert killed.is_set()
        assert summary.counts["rendered"] == 12, summary.to_dict()
        assert any(
            isinstance(e, BackendChanged) and e.url == victim.url and e.state == "unhealthy"
            for e in recorder.events
        )
    _check_project(root, 12)


async def test_websocket_drops_lose_nothing(project12: Path) -> None:
    async with Emulator(EmulatorOptions(step_seconds=0.02)) as emu:
        drops = 0

        def hook(event: object) -> None:
            nonlocal drops
            if isinstance(event, PanelDone) and drops < 4:
                drops += 1
                emu.faults.drop_websockets()

        summary = await ImageEngine(fast_settings(), on_event=Recorder(hook)).render(
            RenderRequest(project12, backends=(emu.url,))
        )
        assert drops == 4
        assert summary.counts["rendered"] == 12
        assert len(emu.executed_prompt_ids) == 12
    _check_project(project12, 12)


async def test_one_bad_panel_does_not_stop_the_others(tmp_path: Path) -> None:
    root = make_project(tmp_path, 4)
    board = json.loads((root / "storyboard.json").read_text())
    board["shots"][2]["prompt_modules"]["technical"]["checkpoint"] = "not-installed.safetensors"
    (root / "storyboard.json").write_text(json.dumps(board))
    async with Emulator() as emu:
        recorder = Recorder()
        summary = await ImageEngine(fast_settings(), on_event=recorder).render(
            RenderRequest(root, backends=(emu.url,))
        )
    assert summary.counts == {**summary.counts, "rendered": 3, "failed": 1}
    failed = summary.failed[0]
    assert failed.shot_id == "shot_03"
    assert failed.error is not None and "not-installed.safetensors" in failed.error
    assert summary.exit_code == RenderError.exit_code
    assert load_project(root).data["shots_index"]["shot_03"]["status"] == "failed"
    assert [e.shot_id for e in recorder.of(PanelFailed)] == ["shot_03"]


async def test_mock_fallback_then_real_run_replaces_placeholders(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    dead = "http://127.0.0.1:9"
    summary = await ImageEngine(fast_settings()).render(
        RenderRequest(root, backends=(dead,), fallback="mock")
    )
    assert summary.mock and summary.counts["placeholder"] == 3 and summary.exit_code == 9
    assert all(r.placeholder for r in records(load_project(root)))

    with pytest.raises(NoServerReachable, match="no ComfyUI server is reachable"):
        await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(dead,), fallback="fail")
        )

    async with Emulator() as emu:
        real = await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
    assert real.counts["rendered"] == 3 and real.exit_code == 0
    project = load_project(root)
    active = {project.data["shots_index"][f"shot_0{n}"]["active_asset"] for n in (1, 2, 3)}
    assert all(not r.placeholder for r in records(project) if r.asset_id in active)


async def test_stop_request_then_resume_renders_each_panel_once(project12: Path) -> None:
    async with Emulator(EmulatorOptions(step_seconds=0.05)) as emu:
        engine: ImageEngine

        def hook(event: object) -> None:
            if isinstance(event, PanelDone):
                engine.request_stop()

        engine = ImageEngine(fast_settings(), on_event=Recorder(hook))
        first = await engine.render(RenderRequest(project12, backends=(emu.url,)))
        assert first.stopped and first.counts["stopped"] > 0
        assert first.exit_code == 130
        second = await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,))
        )
        assert second.counts["rendered"] + first.counts["rendered"] == 12
        assert len(set(emu.executed_prompt_ids)) == len(emu.executed_prompt_ids) == 12
    _check_project(project12, 12)


async def test_dry_run_submits_nothing(project12: Path) -> None:
    async with Emulator() as emu:
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(project12, backends=(emu.url,), dry_run=True)
        )
        assert summary.counts["planned"] == 12
        assert emu.executed_prompt_ids == []
    assert records(load_project(project12)) == []


async def test_an_emulator_that_says_so_is_recorded_as_placeholders(tmp_path: Path) -> None:
    """`storycore comfyui start --mock` runs an emulator that marks its frames: never real."""
    root = make_project(tmp_path, 2)
    async with Emulator(EmulatorOptions(mark_placeholders=True)) as emu:
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(emu.url,))
        )
    assert summary.mock and summary.counts["placeholder"] == 2 and summary.exit_code == 9
    assert all(r.placeholder for r in records(load_project(root)))
