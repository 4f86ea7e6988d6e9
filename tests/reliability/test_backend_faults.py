"""Servers that die, restart, drop or stall their WebSockets, answer 500 or time out.

Every scenario renders a real board with the Image Engine and ends with an account: faults
injected, panels finished, lost and rendered twice (see conftest). Lost and twice must be 0.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import (
    BackendChanged,
    EngineEvent,
    ImageEngine,
    PanelDone,
    PanelProgress,
    PanelSubmitted,
    RenderRequest,
)
from storycore.journal import Journal
from tests.engine.conftest import Recorder, fast_settings, make_project
from tests.reliability._proxy import Proxy, proxy_for
from tests.reliability.conftest import Account, account, emulator_process, shot_ids

Report = Callable[[Account], None]


def _assert_clean(acc: Account, panels: int) -> None:
    assert acc.lost == 0, acc
    assert acc.twice == 0, acc
    assert acc.finished == panels, acc
    assert acc.open_prompts == 0, acc


async def test_backend_process_killed_with_sigkill_mid_batch(
    tmp_path: Path, report: Report
) -> None:
    root = make_project(tmp_path / "p", 12)
    async with (
        emulator_process(tmp_path / "victim", 0.05) as victim,
        emulator_process(tmp_path / "survivor", 0.05) as survivor,
    ):
        killed_after: list[str] = []
        on_victim: list[str] = []  # victim panels in submission order
        landed: set[str] = set()

        def hook(event: EngineEvent) -> None:
            # Kill the victim mid-sampling, once every earlier victim panel is in the project:
            # an image finished but not yet fetched would die with it (that case has its own
            # scenario below), and this one must count 0 rendered twice.
            if isinstance(event, PanelSubmitted) and event.backend == victim.url:
                on_victim.append(event.shot_id)
            elif isinstance(event, PanelDone) and event.backend == victim.url:
                landed.add(event.shot_id)
            elif (
                isinstance(event, PanelProgress)
                and event.step == 2
                and landed
                and not killed_after
                and event.shot_id in on_victim
                and set(on_victim[: on_victim.index(event.shot_id)]) <= landed
            ):
                killed_after.append(event.shot_id)
                victim.kill9()

        recorder = Recorder(hook)
        summary = await ImageEngine(fast_settings(), on_event=recorder).render(
            RenderRequest(root, backends=(victim.url, survivor.url))
        )
        await victim.proc.wait()
    acc = account(
        "backend SIGKILL mid-batch",
        root,
        shot_ids(12),
        [victim.output_dir, survivor.output_dir],
        faults=len(killed_after),
        counts=summary.counts,
    )
    report(acc)
    assert killed_after and victim.proc.returncode == -9
    assert any(
        isinstance(e, BackendChanged) and e.url == victim.url and e.state == "unhealthy"
        for e in recorder.events
    )
    _assert_clean(acc, 12)


async def test_a_server_that_dies_before_its_image_is_fetched(
    tmp_path: Path, report: Report
) -> None:
    """The victim renders a panel, then dies while the image is on its way: the panel is
    rendered again on the survivor (a hole in the board is worse than a second render), and
    the victim's prompt is closed in the journal as lost."""
    root = make_project(tmp_path / "p", 6)
    view_held = asyncio.Event()

    def hold_first_view(method: str, path: str) -> float:
        if path.endswith("/view") and not view_held.is_set():
            view_held.set()
            return 30.0  # cut short when the proxy goes away
        return 0.0

    async with (
        emulator_process(tmp_path / "victim", 0.05) as victim,
        emulator_process(tmp_path / "survivor", 0.05) as survivor,
        proxy_for(Proxy(victim.url, delay=hold_first_view)) as proxy,
    ):

        async def kill_when_held() -> None:
            async with asyncio.timeout(30):
                await view_held.wait()
            victim.kill9()
            assert proxy.stop is not None
            await proxy.stop()

        killer = asyncio.create_task(kill_when_held())
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(proxy.url, survivor.url))
        )
        await killer
        await victim.proc.wait()
    acc = account(
        "server dies before its image is fetched",
        root,
        shot_ids(6),
        [victim.output_dir, survivor.output_dir],
        faults=1,
        counts=summary.counts,
    )
    report(acc)
    assert acc.lost == 0 and acc.finished == 6 and acc.open_prompts == 0, acc
    # the one image that died with its server was rendered again: the only second render
    assert acc.twice == 1 and acc.server_renders == 7, acc
    lost = [e for e in Journal(root).events() if e["event"] == "lost"]
    assert len(lost) >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_websockets_dropped_and_stalled_at_random_points(
    tmp_path: Path, report: Report, seed: int
) -> None:
    rng = random.Random(seed)
    root = make_project(tmp_path, 12)
    faults: list[str] = []
    async with Emulator(EmulatorOptions(step_seconds=0.02)) as emu:

        async def chaos() -> None:
            for _ in range(8):
                await asyncio.sleep(rng.uniform(0.02, 0.25))
                if rng.random() < 0.5:
                    emu.faults.drop_websockets()
                    faults.append("drop")
                else:
                    seconds = round(rng.uniform(0.1, 0.8), 2)
                    emu.faults.stall_websockets(seconds)
                    faults.append(f"stall {seconds}")

        task = asyncio.create_task(chaos())
        try:
            summary = await ImageEngine(fast_settings()).render(
                RenderRequest(root, backends=(emu.url,))
            )
        finally:
            task.cancel()
        acc = account(
            f"websocket drops/stalls seed={seed}",
            root,
            shot_ids(12),
            [emu.output_dir],
            faults=len(faults),
            counts=summary.counts,
            faults_list=faults,
            executed=len(emu.executed_prompt_ids),
        )
        report(acc)
        assert len(set(emu.executed_prompt_ids)) == len(emu.executed_prompt_ids) == 12
    assert faults
    _assert_clean(acc, 12)


async def test_server_restart_that_forgets_history_mid_batch(
    tmp_path: Path, report: Report
) -> None:
    root = make_project(tmp_path, 12)
    async with Emulator(EmulatorOptions(step_seconds=0.03)) as emu:
        restarts: list[asyncio.Task[None]] = []
        done = 0

        def hook(event: EngineEvent) -> None:
            nonlocal done
            if isinstance(event, PanelDone):
                done += 1
                # One restart: each costs ~10 s, the tracker's lost_grace (ClientTimeouts default;
                # engine/_backends.py client_timeouts does not map it from the settings).
                if done == 4:
                    restarts.append(asyncio.get_running_loop().create_task(emu.restart()))

        summary = await ImageEngine(fast_settings(), on_event=Recorder(hook)).render(
            RenderRequest(root, backends=(emu.url,))
        )
        await asyncio.gather(*restarts)
        acc = account(
            "server restart forgets history",
            root,
            shot_ids(12),
            [emu.output_dir],
            faults=len(restarts),
            counts=summary.counts,
            started=len(emu.executed_prompt_ids),
            seconds=round(summary.elapsed, 2),
        )
        report(acc)
    assert len(restarts) == 1
    _assert_clean(acc, 12)


# /view and /system_stats have their own deterministic tests below (they expose engine bugs).
ROUTES = [("POST", "/prompt"), ("GET", "/history/*"), ("GET", "/queue")]


@pytest.mark.parametrize("seed", [1, 2])
async def test_http_500s_on_random_calls(tmp_path: Path, report: Report, seed: int) -> None:
    rng = random.Random(seed)
    root = make_project(tmp_path, 12)
    injected: list[str] = []
    async with Emulator(EmulatorOptions(step_seconds=0.02)) as emu:

        def hook(event: EngineEvent) -> None:
            if isinstance(event, PanelDone) and len(injected) < 10:
                method, path = rng.choice(ROUTES)
                status = rng.choice([500, 502, 503])
                emu.faults.fail_route(method, path, status, times=rng.randint(1, 2))
                injected.append(f"{method} {path} {status}")

        summary = await ImageEngine(
            fast_settings(**{"comfyui.max_retries": 6}), on_event=Recorder(hook)
        ).render(RenderRequest(root, backends=(emu.url,)))
        acc = account(
            f"HTTP 5xx on random calls seed={seed}",
            root,
            shot_ids(12),
            [emu.output_dir],
            faults=len(injected),
            counts=summary.counts,
            faults_list=injected,
        )
        report(acc)
    assert injected
    _assert_clean(acc, 12)


@pytest.mark.parametrize(
    "route",
    [
        "POST /prompt",
        "GET /history",  # read when the WebSocket is not there (refused here) or had a gap
        "GET /system_stats",  # health probes (the engine reads /queue only when it must)
        "GET /view",
    ],
)
async def test_timeouts_on_calls_that_reached_the_server(
    tmp_path: Path, report: Report, route: str
) -> None:
    """The answer is held past the read timeout after the server did the work."""
    root = make_project(tmp_path, 6)
    method, prefix = route.split()
    left = [2]
    # The first /system_stats is the connection probe: a named server that does not answer it
    # stops the run (exit 4) rather than being replaced by placeholders. Delay later ones.
    connect_probe = [route == "GET /system_stats"]

    def delay(m: str, path: str) -> float:
        if m == method and path.startswith(prefix) and connect_probe[0]:
            connect_probe[0] = False
            return 0.0
        if m == method and path.startswith(prefix) and left[0] > 0:
            left[0] -= 1
            return 1.6
        return 0.0

    settings = fast_settings(**{"comfyui.read_timeout": 1.0, "comfyui.max_retries": 4})
    async with (
        Emulator(EmulatorOptions(step_seconds=0.02)) as emu,
        proxy_for(Proxy(emu.url, delay=delay, websocket=route != "GET /history")) as proxy,
    ):
        summary = await ImageEngine(settings).render(RenderRequest(root, backends=(proxy.url,)))
        acc = account(
            f"timeouts on {route}",
            root,
            shot_ids(6),
            [emu.output_dir],
            faults=len(proxy.delayed),
            counts=summary.counts,
            delayed=proxy.delayed,
        )
        report(acc)
    assert proxy.delayed
    _assert_clean(acc, 6)


async def test_one_500_on_a_download_renders_nothing_twice(tmp_path: Path, report: Report) -> None:
    root = make_project(tmp_path, 6)
    async with Emulator(EmulatorOptions(step_seconds=0.02)) as emu:
        injected: list[str] = []

        def hook(event: EngineEvent) -> None:
            if isinstance(event, PanelDone) and not injected:
                emu.faults.fail_route("GET", "/view", 500)
                injected.append("GET /view 500")

        summary = await ImageEngine(fast_settings(), on_event=Recorder(hook)).render(
            RenderRequest(root, backends=(emu.url,))
        )
        acc = account(
            "one HTTP 500 on /view",
            root,
            shot_ids(6),
            [emu.output_dir],
            faults=len(injected),
            counts=summary.counts,
        )
        report(acc)
    _assert_clean(acc, 6)


async def test_failed_health_probes_on_a_busy_server_render_nothing_twice(
    tmp_path: Path, report: Report
) -> None:
    root = make_project(tmp_path, 4)
    async with Emulator(EmulatorOptions(step_seconds=0.15)) as emu:
        injected: list[str] = []

        def hook(event: EngineEvent) -> None:
            if isinstance(event, PanelSubmitted) and not injected:
                emu.faults.fail_route("GET", "/system_stats", 500, times=2)
                injected.append("GET /system_stats 500 x2")

        summary = await ImageEngine(fast_settings(), on_event=Recorder(hook)).render(
            RenderRequest(root, backends=(emu.url,))
        )
        acc = account(
            "two failed health probes",
            root,
            shot_ids(4),
            [emu.output_dir],
            faults=len(injected),
            counts=summary.counts,
        )
        report(acc)
    _assert_clean(acc, 4)
