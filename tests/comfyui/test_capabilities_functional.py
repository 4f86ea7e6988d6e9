"""Server capabilities against inline servers shaped like each ComfyUI generation, and against
the emulator's two profiles: detected once, cached, and a hostile answer means "not there".

Shapes: today's answers from ComfyUI server.py @ 5e14d797 (system_stats, get_features, get_jobs)
and comfy_api/feature_flags.py @ 1924b05e; 0.3.64 from the recordings (one device, two flags,
no /api/jobs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from storycore.comfyui import ClientTimeouts, ComfyUIClient
from storycore.comfyui._capabilities import parse_features, parse_system_stats
from storycore.errors import ServerUnreachable

Serve = Callable[[web.Application], Awaitable[str]]
FAST = ClientTimeouts(connect=2, read=2, request_deadline=5)

CURRENT_STATS: dict[str, Any] = {
    "system": {
        "os": "linux",
        "ram_total": 68719476736,
        "ram_free": 60000000000,
        "comfyui_version": "0.4.2",
        "required_frontend_version": "1.30.1",
        "installed_templates_version": "0.3.1",
        "required_templates_version": "0.3.1",
        "comfy_package_versions": [
            {"name": "comfyui-frontend-package", "installed": "1.30.1", "required": "1.30.1"},
            {"name": "comfyui-workflow-templates", "installed": None, "required": "0.3.1"},
        ],
        "python_version": "3.12.3",
        "pytorch_version": "2.9.1+cu128",
        "embedded_python": False,
        "deploy_environment": "local-git",
        "argv": ["main.py"],
    },
    "devices": [
        {
            "name": "cuda:0 NVIDIA H200 : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": 150 << 30,
            "vram_free": 140 << 30,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        },
        {
            "name": "cuda:1 NVIDIA H200 : cudaMallocAsync",
            "type": "cuda",
            "index": 1,
            "vram_total": 150 << 30,
            "vram_free": 149 << 30,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        },
    ],
}
CURRENT_FEATURES = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,
}
OLD_STATS = {
    "system": {"os": "posix", "comfyui_version": "0.3.64", "python_version": "3.11.7"},
    "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 1, "vram_free": 1}],
}


def generation_app(current: bool, hits: list[str], **override: Any) -> web.Application:
    """An inline ComfyUI of one generation; ``override`` replaces a route's handler."""

    async def stats(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.json_response(CURRENT_STATS if current else OLD_STATS)

    async def features(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        flags = CURRENT_FEATURES if current else {"supports_preview_metadata": True}
        return web.json_response(flags)

    async def jobs(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if not current:
            raise web.HTTPNotFound()
        limit = int(request.query.get("limit", "0")) or None
        page = {"offset": 0, "limit": limit, "total": 0, "has_more": False}
        return web.json_response({"jobs": [], "pagination": page})

    handlers = {"/system_stats": stats, "/features": features, "/api/jobs": jobs}
    handlers.update({"/" + k.replace("__", "/"): v for k, v in override.items()})
    app = web.Application()
    for route, handler in handlers.items():
        app.router.add_get(route, handler)
    return app


async def test_current_server_detected_once(serve: Serve) -> None:
    hits: list[str] = []
    url = await serve(generation_app(True, hits))
    async with ComfyUIClient(url, FAST) as client:
        caps = await client.capabilities()
        again = await asyncio.gather(*(client.capabilities() for _ in range(5)))
    assert all(c is caps for c in again)
    assert sorted(hits) == ["/api/jobs", "/features", "/system_stats"]  # once, not six times
    assert caps.jobs_api and caps.generation == "current" and caps.version == "0.4.2"
    assert [d.index for d in caps.system.gpus] == [0, 1]
    assert caps.system.gpus[1].vram_free == 149 << 30
    assert caps.system.deploy_environment == "local-git"
    assert caps.system.package_versions[1] == ("comfyui-workflow-templates", None, "0.3.1")
    assert caps.feature("node_replacements") is True
    assert caps.feature("extension") == {"manager": {"supports_v4": True}}
    assert caps.notes == ()
    assert "jobs API: yes" in caps.summary() and "GPUs: 2" in caps.summary()
    assert caps.to_dict()["devices"][0]["name"].startswith("cuda:0")


async def test_old_server_falls_back(serve: Serve) -> None:
    hits: list[str] = []
    url = await serve(generation_app(False, hits))
    async with ComfyUIClient(url, FAST) as client:
        caps = await client.capabilities()
        refreshed = await client.capabilities(refresh=True)
    assert refreshed is not caps and hits.count("/system_stats") == 2
    assert not caps.jobs_api and caps.generation == "0.3.64" and caps.version == "0.3.64"
    assert caps.system.gpus == () and caps.system.devices[0].type == "cpu"
    assert caps.system.deploy_environment is None and caps.system.package_versions == ()
    assert any(n.startswith("/api/jobs: HTTP 404") for n in caps.notes), caps.notes
    assert "jobs API: no" in caps.summary()


async def hostile_html(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>login</html>", content_type="text/html")


async def hostile_list(request: web.Request) -> web.StreamResponse:
    return web.json_response([1, 2, 3])


async def hostile_deep(request: web.Request) -> web.StreamResponse:
    return web.Response(text="[" * 5000 + "]" * 5000, content_type="application/json")


async def hostile_500(request: web.Request) -> web.StreamResponse:
    return web.Response(status=500, text="Traceback (most recent call last): ...")


@pytest.mark.parametrize(
    "features, jobs",
    [
        (hostile_html, hostile_list),
        (hostile_deep, hostile_500),
        (hostile_500, hostile_html),
        (hostile_list, hostile_deep),
    ],
)
async def test_hostile_answers_mean_not_there(serve: Serve, features: Any, jobs: Any) -> None:
    url = await serve(generation_app(True, [], features=features, api__jobs=jobs))
    async with ComfyUIClient(url, FAST) as client:
        caps = await client.capabilities()
    assert not caps.jobs_api and caps.version == "0.4.2"  # /system_stats was fine
    assert dict(caps.features) == {}
    assert {n.split(":")[0] for n in caps.notes} == {"/features", "/api/jobs"}, caps.notes


async def test_hostile_system_stats_is_noted_not_raised(serve: Serve) -> None:
    url = await serve(generation_app(True, [], system_stats=hostile_html))
    async with ComfyUIClient(url, FAST) as client:
        caps = await client.capabilities()
    assert caps.version is None and caps.system.devices == ()
    assert caps.jobs_api  # the rest was probed all the same
    assert caps.notes[-1].startswith("/system_stats")


async def test_slow_probe_is_bounded(serve: Serve) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response({})

    url = await serve(generation_app(True, [], api__jobs=stall))
    timeouts = ClientTimeouts(connect=1, read=1, request_deadline=1.5)
    async with ComfyUIClient(url, timeouts) as client:
        started = asyncio.get_running_loop().time()
        caps = await client.capabilities()
        took = asyncio.get_running_loop().time() - started
    assert took < 5 and not caps.jobs_api and caps.notes[0].startswith("/api/jobs")


async def test_unreachable_raises_and_nothing_is_kept(unused_tcp_port: int) -> None:
    async with ComfyUIClient(f"http://127.0.0.1:{unused_tcp_port}", FAST) as client:
        with pytest.raises(ServerUnreachable):
            await client.capabilities()
        assert client._capabilities is None


def test_parsers_bound_what_they_keep() -> None:
    flags = {f"flag{i}": {"a": {"b": {"c": {"d": 1}}}} for i in range(500)}
    flags["text"] = "x" * 10_000  # type: ignore[assignment]
    parsed = parse_features(flags)
    assert len(parsed) == 64
    assert parsed["flag0"] == {"a": {"b": "(not shown)"}}  # flag, then two levels below
    stats = {
        "system": {"comfyui_version": {"nested": 1}, "comfy_package_versions": "nope"},
        "devices": [{"name": "gpu", "type": "cuda", "index": True}] * 1000 + ["junk"],
    }
    info = parse_system_stats(stats)
    assert info.version is None and info.package_versions == ()
    assert len(info.devices) == 64 and info.devices[0].index is None
    assert parse_system_stats("not a dict").devices == ()


@pytest.mark.parametrize("profile, jobs_api", [("0.3.64", False), ("current", True)])
async def test_emulator_profiles(profile: str, jobs_api: bool) -> None:
    from storycore.emulator import Emulator, EmulatorOptions

    async with (
        Emulator(EmulatorOptions(profile=profile)) as emu,
        ComfyUIClient(emu.url, FAST) as client,
    ):
        caps = await client.capabilities()
    assert caps.jobs_api is jobs_api
    assert caps.generation == profile
    assert caps.feature("supports_preview_metadata") is True
    assert caps.system.devices, "the emulator reports at least one device"
    if jobs_api:
        assert caps.system.deploy_environment is not None
        assert caps.feature("node_replacements") is True


@pytest.mark.parametrize("profile", ["current", "0.3.64"])
async def test_doctor_and_status_show_capabilities(profile: str) -> None:
    """Through the CLI, as a child process: ``doctor`` (text and --json) and ``comfyui status``."""
    from storycore.emulator import Emulator, EmulatorOptions
    from tests.engine.conftest import run_cli

    async with Emulator(EmulatorOptions(profile=profile)) as emu:
        code, out, err = await run_cli("doctor", "--backend", emu.url)
        json_code, json_out, _ = await run_cli("doctor", "--backend", emu.url, "--json")
        status_code, status_out, status_err = await run_cli(
            "comfyui", "status", "--host", "127.0.0.1", "--port", str(emu.port)
        )
    assert code in (0, 1) and json_code == code, err[-2000:]
    caps = json.loads(json_out)["server"]["capabilities"]
    assert status_code == 0, status_err[-2000:]
    if profile == "current":
        assert "capabilities: today's ComfyUI API, jobs API yes (/api/jobs)" in out
        assert "node_replacements" in out and "packages: comfyui-frontend-package" in out
        assert "jobs API yes" in status_out
        assert caps["jobs_api"] is True and caps["generation"] == "current"
    else:
        assert "capabilities: 0.3.64 ComfyUI API, jobs API no (/queue and /history)" in out
        assert "jobs API no" in status_out
        assert caps["jobs_api"] is False and caps["package_versions"] == []
    assert "GPUs: 0 (CPU only)" in out and "GPUs: 0 (CPU only)" in status_out


async def test_doctor_lists_several_gpus(serve: Serve) -> None:
    from tests.engine.conftest import run_cli

    url = await serve(generation_app(True, []))
    code, out, err = await run_cli("doctor", "--backend", url)
    assert code == 4, err[-2000:]  # no /object_info: incomplete, but its capabilities show
    assert "GPUs: 2 (cuda:0 NVIDIA H200 : cudaMallocAsync 150 GiB; cuda:1 NVIDIA H200" in out
    assert "deployed as local-git" in out and "jobs API yes" in out


async def test_doctor_says_an_old_server_has_no_jobs_api(serve: Serve) -> None:
    from tests.engine.conftest import run_cli

    url = await serve(generation_app(False, []))
    code, out, err = await run_cli("doctor", "--backend", url, "--json")
    assert code == 4, err[-2000:]
    report = json.loads(out)
    assert report["server"]["capabilities"]["jobs_api"] is False
    found = {p["code"]: p for p in report["problems"]}
    assert found["no_jobs_api"]["severity"] == "info"
    assert "prompts in flight then render again" in found["no_jobs_api"]["message"]
    assert "comfy_package_version" not in found


async def test_doctor_names_a_package_that_is_not_the_pinned_one(serve: Serve) -> None:
    from tests.engine.conftest import run_cli

    url = await serve(generation_app(True, []))
    code, out, _ = await run_cli("doctor", "--backend", url, "--json")
    assert code == 4  # no /object_info
    problems = [p for p in json.loads(out)["problems"] if p["code"] == "comfy_package_version"]
    assert [p["message"] for p in problems] == ["comfyui-workflow-templates is not installed"]
    assert problems[0]["fix"].endswith("pip install comfyui-workflow-templates==0.3.1")
