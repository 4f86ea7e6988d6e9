"""ComfyUIClient over loopback against inline aiohttp servers (functional style)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from storycore.comfyui import (
    CancelOutcome,
    ClientState,
    ClientTimeouts,
    ComfyUIClient,
    MediaKind,
    OutputFile,
    ServerAddress,
)
from storycore.errors import (
    AssetError,
    ChecksumMismatch,
    ComfyUIError,
    ConfigError,
    PromptRejected,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    UnsafePathError,
)
from tests._recordings import recording_text

Serve = Callable[[web.Application], Awaitable[str]]

STATS = {"system": {"comfyui_version": "0.3.64"}, "devices": []}
FAST = ClientTimeouts(connect=2, read=2)


def _load(name: str) -> Any:
    return json.loads(recording_text(name))


def recording_app(seen: list[web.Request], prefix: str = "") -> web.Application:
    app = web.Application()

    async def stats(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(STATS)

    async def ws(request: web.Request) -> web.WebSocketResponse:
        seen.append(request)
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_json(
            {
                "type": "status",
                "data": {
                    "status": {"exec_info": {"queue_remaining": 0}},
                    "sid": request.query["clientId"],
                },
            }
        )
        await sock.close()
        return sock

    app.router.add_get(prefix + "/system_stats", stats)
    app.router.add_get(prefix + "/ws", ws)
    return app


# ---------------------------------------------------------------- address / timeouts / state
def test_server_address_validation_and_redaction() -> None:
    address = ServerAddress("http://127.0.0.1:8188/comfy/", token="s3cret", headers={"X-Key": "k"})
    assert address.url == "http://127.0.0.1:8188/comfy"
    assert str(address.http_url("/prompt")) == "http://127.0.0.1:8188/comfy/prompt"
    assert str(address.ws_url("abc")) == "ws://127.0.0.1:8188/comfy/ws?clientId=abc"
    assert "s3cret" not in repr(address) and "X-Key" not in repr(address)
    assert address.auth_headers() == {"X-Key": "k", "Authorization": "Bearer s3cret"}
    assert str(ServerAddress("https://h").ws_url("x")).startswith("wss://h/ws")
    same = ServerAddress("http://127.0.0.1:8188/comfy", token="s3cret", headers={"X-Key": "k"})
    assert same == address and {address: 1}[same] == 1  # usable as a per-server key
    basic = ServerAddress("http://h:1", basic_auth=("u", "p")).auth_headers()
    assert basic == {"Authorization": "Basic dTpw"}
    for bad in ["ftp://h", "127.0.0.1:8188", "http://", "http://u:p@h", "http://h/?q=1"]:
        with pytest.raises(ConfigError):
            ServerAddress(bad)
    with pytest.raises(ConfigError, match="Origin"):
        ServerAddress("http://h", headers={"Origin": "http://h"})
    with pytest.raises(ConfigError):
        ServerAddress("http://h", token="t", basic_auth=("u", "p"))
    with pytest.raises(ConfigError):
        ServerAddress("http://h", basic_auth=("u",))  # type: ignore[arg-type]


def test_client_timeouts_validated_and_replaced() -> None:
    timeouts = ClientTimeouts()
    longer = timeouts.replace(prompt_deadline=None, idle_timeout=900)
    assert longer.prompt_deadline is None and longer.idle_timeout == 900
    assert timeouts.idle_timeout == 300
    for bad in [{"read": 0}, {"connect": -1}, {"watchdog": float("nan")}, {"lost_grace": "5"}]:
        with pytest.raises(ConfigError):
            ClientTimeouts(**bad)
    with pytest.raises(ConfigError):
        timeouts.replace(reconnect_initial=20, reconnect_max=1)


async def test_state_is_visible(serve: Serve) -> None:
    seen: list[web.Request] = []
    url = await serve(recording_app(seen))
    client = ComfyUIClient(url, FAST)
    assert client.state is ClientState.UNOPENED
    with pytest.raises(ComfyUIError, match="not open"):
        await client.system_stats()
    async with client:
        assert client.state is ClientState.OPEN
        assert (await client.system_stats())["system"]["comfyui_version"] == "0.3.64"
    assert client.state is ClientState.CLOSED
    with pytest.raises(ComfyUIError):
        await client.open()


# ---------------------------------------------------------------- auth / origin / prefix
async def test_auth_on_http_and_ws_handshake_never_origin(serve: Serve) -> None:
    seen: list[web.Request] = []
    url = await serve(recording_app(seen, prefix="/comfy"))
    address = ServerAddress(url + "/comfy", token="tok", headers={"X-Proxy-Key": "abc"})
    async with ComfyUIClient(address, FAST) as client:
        await client.system_stats()
        ws = await client.transport.ws_connect(client.client_id)
        message = await ws.receive_json(timeout=2)
        await ws.close()
    assert message["data"]["sid"] == client.client_id
    assert [r.path for r in seen] == ["/comfy/system_stats", "/comfy/ws"]
    for request in seen:
        assert request.headers["Authorization"] == "Bearer tok"
        assert request.headers["X-Proxy-Key"] == "abc"
        assert "Origin" not in request.headers


async def test_redirect_to_other_origin_drops_credentials(serve: Serve) -> None:
    other_seen: list[web.Request] = []
    other = await serve(recording_app(other_seen))
    seen: list[web.Request] = []
    app = web.Application()

    async def moved(request: web.Request) -> web.Response:
        seen.append(request)
        raise web.HTTPFound(other + "/system_stats")

    async def same(request: web.Request) -> web.Response:
        seen.append(request)
        raise web.HTTPTemporaryRedirect("/real_stats")

    async def real(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(STATS)

    app.router.add_get("/system_stats", moved)
    app.router.add_get("/same/system_stats", same)
    app.router.add_get("/real_stats", real)
    url = await serve(app)
    address = ServerAddress(url, basic_auth=("me", "pw"), headers={"X-Proxy-Key": "abc"})
    async with ComfyUIClient(address, FAST) as client:
        assert (await client.system_stats())["system"]
    assert seen[0].headers["Authorization"].startswith("Basic ")
    assert len(other_seen) == 1
    assert "Authorization" not in other_seen[0].headers
    assert "X-Proxy-Key" not in other_seen[0].headers
    # A same-origin redirect keeps them.
    async with ComfyUIClient(ServerAddress(url + "/same", token="t"), FAST) as client:
        await client.system_stats()
    assert seen[-1].path == "/real_stats"
    assert seen[-1].headers["Authorization"] == "Bearer t"


async def test_proxy_refusing_credentials_is_a_clear_error(serve: Serve) -> None:
    app = web.Application()

    async def guarded(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer right":
            return web.Response(status=401, text="no")
        return web.json_response(STATS)

    app.router.add_get("/system_stats", guarded)
    url = await serve(app)
    async with ComfyUIClient(ServerAddress(url, token="wrong"), FAST) as client:
        with pytest.raises(ServerResponseError) as info:
            await client.system_stats()
    assert info.value.status == 401
    assert "token" in str(info.value)


# ---------------------------------------------------------------- errors / timeouts
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_refused_connection_is_server_unreachable() -> None:
    async with ComfyUIClient(f"http://127.0.0.1:{_free_port()}", FAST) as client:
        with pytest.raises(ServerUnreachable) as info:
            await client.system_stats()
    assert "127.0.0.1" in str(info.value)
    assert isinstance(info.value, OSError)


async def test_slow_server_is_server_timeout(serve: Serve) -> None:
    app = web.Application()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 5)
        return web.json_response(STATS)

    app.router.add_get("/system_stats", slow)
    url = await serve(app)
    async with ComfyUIClient(url, ClientTimeouts(connect=1, read=0.2)) as client:
        with pytest.raises(ServerTimeout):
            await client.system_stats()
    release.set()


async def test_non_json_and_wrong_server(serve: Serve) -> None:
    app = web.Application()

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>")

    async def boom(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app.router.add_get("/system_stats", html)
    app.router.add_get("/queue", boom)
    url = await serve(app)
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(ServerResponseError, match="not JSON"):
            await client.system_stats()
        with pytest.raises(ServerResponseError) as info:
            await client.queue()
        assert info.value.status == 500


# ---------------------------------------------------------------- submit
def prompt_app(received: list[dict[str, Any]]) -> web.Application:
    cases = _load("validation_errors.json")
    app = web.Application()

    async def prompt(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        case = cases[body["prompt"]["case"]["inputs"]["name"]]
        if case["content_type"].startswith("text/plain"):
            return web.Response(status=case["status"], text=case["body"])
        answer = dict(case["body"])
        if case["status"] == 200:
            answer["prompt_id"] = body["prompt_id"]
        return web.json_response(answer, status=case["status"])

    app.router.add_post("/prompt", prompt)
    return app


def _graph(case: str) -> dict[str, Any]:
    return {"case": {"class_type": "Case", "inputs": {"name": case}}}


async def test_submit_sends_ids_and_extra_data(serve: Serve) -> None:
    received: list[dict[str, Any]] = []
    url = await serve(prompt_app(received))
    async with ComfyUIClient(url, FAST) as client:
        result = await client.submit(
            _graph("float_for_int"),
            prompt_id="sc-1",
            extra_data={"extra_pnginfo": {"a": 1}},
            front=True,
        )
    assert result.prompt_id == "sc-1" and result.number == 176 and not result.node_errors
    assert received[0]["client_id"] == client.client_id
    assert received[0]["extra_data"] == {"extra_pnginfo": {"a": 1}}
    assert received[0]["front"] is True


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        (
            "checkpoint_not_in_list",
            ["node 1 (CheckpointLoaderSimple)", "'nope.safetensors'", "tiny-random-sd15"],
        ),
        (
            "missing_required_input",
            ["node 1 (EmptyImage) input 'width'", "Required input is missing"],
        ),
        ("unknown_class_type", ["NoSuchNode does not exist", "#1"]),
        ("no_output_node", ["Prompt has no outputs"]),
        ("link_type_mismatch", ["node 2 (SaveImage) input 'images'", "LATENT"]),
    ],
)
async def test_rejections_list_every_node_error(
    serve: Serve, case: str, needles: list[str]
) -> None:
    url = await serve(prompt_app([]))
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(PromptRejected) as info:
            await client.submit(_graph(case))
    text = str(info.value)
    for needle in needles:
        assert needle in text
    assert info.value.where and info.value.where.endswith("/prompt")
    expected = _load("validation_errors.json")[case]["body"]
    assert info.value.node_errors == expected["node_errors"]
    assert info.value.error == expected["error"]


async def test_200_with_node_errors_is_reported(serve: Serve) -> None:
    url = await serve(prompt_app([]))
    async with ComfyUIClient(url, FAST) as client:
        result = await client.submit(_graph("one_bad_output_one_good"))
    assert [(e.node_id, e.class_type) for e in result.node_errors] == [("3", "LoadImage")]


async def test_500_text_is_server_response_error(serve: Serve) -> None:
    url = await serve(prompt_app([]))
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(ServerResponseError) as info:
            await client.submit(_graph("malformed_json_body"))
    assert info.value.status == 500


# ---------------------------------------------------------------- object_info cache
async def test_object_info_cached_and_invalidated(serve: Serve) -> None:
    hits: list[str] = []
    app = web.Application()

    async def whole(request: web.Request) -> web.Response:
        hits.append("all")
        return web.json_response({"SaveImage": {"name": "SaveImage"}})

    async def one(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits.append(name)
        return web.json_response({name: {"name": name}} if name == "KSampler" else {})

    app.router.add_get("/object_info", whole)
    app.router.add_get("/object_info/{name}", one)
    url = await serve(app)
    async with ComfyUIClient(url, FAST) as client:
        assert (await client.object_info("KSampler")) == {"name": "KSampler"}
        assert (await client.object_info("KSampler")) == {"name": "KSampler"}
        assert await client.object_info("Nope") is None
        assert hits == ["KSampler", "Nope"]
        await client.object_info()
        await client.object_info()
        assert (await client.object_info("SaveImage")) == {"name": "SaveImage"}
        assert hits == ["KSampler", "Nope", "all"]
        client.invalidate_object_info()
        await client.object_info()
        await client.object_info(refresh=True)
        assert hits.count("all") == 3


# ---------------------------------------------------------------- upload
async def test_upload_dedupes_and_uses_server_name(serve: Serve) -> None:
    uploads: list[tuple[str, bytes, dict[str, str]]] = []
    app = web.Application()

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        field = form["image"]
        assert isinstance(field, web.FileField)
        data = field.file.read()
        fields = {k: str(v) for k, v in form.items() if k != "image"}
        uploads.append((field.filename, data, fields))
        name = field.filename if len(uploads) == 1 else field.filename.replace(".png", " (1).png")
        return web.json_response(
            {"name": name, "subfolder": fields.get("subfolder", ""), "type": "input"}
        )

    app.router.add_post("/upload/image", upload)
    url = await serve(app)
    png = b"\x89PNG\r\n\x1a\n" + b"a" * 100
    async with ComfyUIClient(url, FAST) as client:
        first = await client.upload_image(png, "shot.png", subfolder="storycore")
        again = await client.upload_image(png, "shot.png", subfolder="storycore")
        other = await client.upload_image(png + b"b", "shot.png", subfolder="storycore")
    assert first is again
    assert len(uploads) == 2
    assert first.sha256 == hashlib.sha256(png).hexdigest()
    assert first.reference == "storycore/shot.png"
    assert other.name == "shot (1).png"  # the server's answer, not ours
    assert uploads[0][2] == {"type": "input", "subfolder": "storycore"}


# ---------------------------------------------------------------- download
def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def _png(width: int, height: int, *, noise: bool = False) -> bytes:
    """A real PNG (downloads are checked as images); with ``noise`` it does not compress."""
    from io import BytesIO

    from PIL import Image

    pixels = (
        os.urandom(width * height * 3)
        if noise
        else bytes(range(256)) * (width * height * 3 // 256 + 1)
    )
    image = Image.frombytes("RGB", (width, height), pixels[: width * height * 3])
    out = BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def view_app(files: dict[str, bytes], requests: list[web.Request]) -> web.Application:
    app = web.Application()

    async def view(request: web.Request) -> web.StreamResponse:
        requests.append(request)
        name = request.query["filename"]
        if name == "short.png":
            response = web.StreamResponse(
                headers={"Content-Length": "100", "Content-Type": "image/png"}
            )
            await response.prepare(request)
            await response.write(b"x" * 10)
            raise ConnectionResetError  # cut the connection
        if name not in files:
            return web.Response(status=404)
        return web.Response(body=files[name], content_type="image/png")

    app.router.add_get("/view", view)
    return app


async def test_download_atomic_with_checksum(serve: Serve, tmp_path: Path) -> None:
    data = _png(64, 48)
    requests: list[web.Request] = []
    url = await serve(view_app({"shot_00001_.png": data}, requests))
    ref = OutputFile(
        "shot_00001_.png",
        "sub",
        "output",
        kind=MediaKind.IMAGE,
    )
    async with ComfyUIClient(url, FAST) as client:
        got = await client.download(ref, tmp_path, expected_sha256=hashlib.sha256(data).hexdigest())
        assert got.path == tmp_path / "sub" / "shot_00001_.png"
        assert got.path.read_bytes() == data and got.size == len(data)
        with pytest.raises(ChecksumMismatch):
            await client.download(ref, tmp_path / "b", expected_sha256="0" * 64)
        with pytest.raises(ServerResponseError) as info:
            await client.download({"filename": "gone.png"}, tmp_path / "c")
        assert info.value.status == 404
        with pytest.raises((ServerResponseError, ServerUnreachable)):
            await client.download({"filename": "short.png"}, tmp_path / "d")
    assert requests[0].query["subfolder"] == "sub" and requests[0].query["type"] == "output"
    leftovers = _files(tmp_path)
    assert leftovers == ["shot_00001_.png"]


async def test_a_large_download_is_hashed_and_written_in_order(
    serve: Serve, tmp_path: Path
) -> None:
    """Several MiB: many batches through the hash and write workers, periodic syncs."""
    data = _png(1800, 1800, noise=True)
    assert len(data) > 9 << 20
    url = await serve(view_app({"big.png": data}, []))
    async with ComfyUIClient(url, FAST) as client:
        got = await client.download({"filename": "big.png"}, tmp_path)
    assert got.sha256 == hashlib.sha256(data).hexdigest() and got.size == len(data)
    assert got.path.read_bytes() == data
    assert _files(tmp_path) == ["big.png"]


async def test_fetch_into_memory_is_bounded(serve: Serve) -> None:
    data = b"\x89PNG" + bytes(range(256)) * 400
    url = await serve(view_app({"a.png": data}, []))
    async with ComfyUIClient(url, FAST) as client:
        assert await client.fetch({"filename": "a.png"}) == data
        with pytest.raises(AssetError, match="larger than 1000 bytes"):
            await client.fetch({"filename": "a.png"}, max_bytes=1000)
        with pytest.raises(ServerResponseError) as info:
            await client.fetch({"filename": "gone.png"})
        assert info.value.status == 404
        with pytest.raises((ServerResponseError, ServerUnreachable)):
            await client.fetch({"filename": "short.png"})


@pytest.mark.parametrize(
    ("subfolder", "filename"),
    [
        ("", "../evil.png"),
        ("", "../../etc/passwd"),
        ("", "/etc/passwd"),
        ("", "C:\\Windows\\evil.png"),
        ("../..", "x.png"),
        ("/abs", "x.png"),
        ("ok/../../..", "x.png"),
        ("", ""),
        ("", "."),
        ("", "a\x00b.png"),
    ],
)
async def test_hostile_names_never_leave_dest(
    serve: Serve, tmp_path: Path, subfolder: str, filename: str
) -> None:
    requests: list[web.Request] = []
    url = await serve(view_app({}, requests))
    dest = tmp_path / "dest"
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(UnsafePathError):
            await client.download({"filename": filename, "subfolder": subfolder}, dest)
    assert requests == []
    assert _files(tmp_path) == []


async def test_symlink_escape_refused(serve: Serve, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    url = await serve(view_app({"x.png": b"x"}, []))
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(UnsafePathError):
            await client.download({"filename": "x.png", "subfolder": "link"}, dest)
    assert list(outside.iterdir()) == []


# ---------------------------------------------------------------- cancel
async def test_cancel_deletes_pending_and_interrupts_running(serve: Serve) -> None:
    queue = {"queue_running": [[1, "run", {}, {}, []]], "queue_pending": [[2, "wait", {}, {}, []]]}
    calls: list[tuple[str, Any]] = []
    app = web.Application()

    async def get_queue(request: web.Request) -> web.Response:
        return web.json_response(queue)

    async def post_queue(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(("queue", body))
        queue["queue_pending"] = [
            i for i in queue["queue_pending"] if i[1] not in body.get("delete", [])
        ]
        return web.Response()

    async def interrupt(request: web.Request) -> web.Response:
        calls.append(("interrupt", await request.json() if request.can_read_body else None))
        return web.Response()

    app.router.add_get("/queue", get_queue)
    app.router.add_post("/queue", post_queue)
    app.router.add_post("/interrupt", interrupt)
    url = await serve(app)
    async with ComfyUIClient(url, FAST) as client:
        assert await client.cancel("wait") is CancelOutcome.DELETED
        assert await client.cancel("run") is CancelOutcome.INTERRUPTED
        assert await client.cancel("gone") is CancelOutcome.NOT_FOUND
        assert await client.cancel("run", allow_global_interrupt=True) is CancelOutcome.INTERRUPTED
    assert calls == [
        ("queue", {"delete": ["wait"]}),
        ("interrupt", {"prompt_id": "run"}),
        ("interrupt", {"prompt_id": "run"}),
        ("interrupt", None),
    ]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (TimeoutError(), ServerTimeout),
        (ConnectionRefusedError(111, "refused"), ServerUnreachable),
        (json.JSONDecodeError("bad", "x", 0), ServerResponseError),
        (ServerTimeout("kept", where="w"), ServerTimeout),
    ],
)
def test_translate_errors_maps_each_family(
    raised: BaseException, expected: type[Exception]
) -> None:
    from storycore.comfyui import translate_errors

    with pytest.raises(expected) as info, translate_errors("http://h/x"):
        raise raised
    assert info.value.where in ("http://h/x", "w")
    assert "Traceback" not in str(info.value)


def test_translate_errors_aiohttp_classes() -> None:
    import aiohttp

    from storycore.comfyui import translate_errors

    cases: list[tuple[BaseException, type[Exception]]] = [
        (aiohttp.ServerDisconnectedError(), ServerUnreachable),
        (aiohttp.ClientPayloadError("cut"), ServerResponseError),
        (aiohttp.ServerTimeoutError("slow"), ServerTimeout),
        (aiohttp.ClientConnectionError("x"), ServerUnreachable),
        (aiohttp.InvalidURL("bad"), ComfyUIError),
    ]
    for raised, expected in cases:
        with pytest.raises(expected), translate_errors("http://h"):
            raise raised
    with pytest.raises(asyncio.CancelledError), translate_errors("http://h"):
        raise asyncio.CancelledError


async def test_errors_are_told_in_words_without_the_body_or_the_library(serve: Serve) -> None:
    app = web.Application()

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html>Not Found</html>", content_type="text/html")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>a router's login page</html>", content_type="text/html")

    app.router.add_get("/system_stats", missing)
    app.router.add_get("/object_info", page)
    url = await serve(app)
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(ServerResponseError) as info:
            await client.system_stats()
        assert info.value.message == (
            "HTTP 404 from /system_stats: this is not a ComfyUI server "
            "(check the URL and its path prefix)"
        )
        assert info.value.body is not None and "<html>" in info.value.body  # kept, not shown
        with pytest.raises(ServerResponseError) as info:
            await client.object_info()
        assert "an HTML page" in info.value.message and "not a ComfyUI server" in info.value.message
        assert "<html" not in info.value.paragraph()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with ComfyUIClient(closed, FAST) as client:
        with pytest.raises(ServerUnreachable) as refused:
            await client.system_stats()
    assert refused.value.message == "nothing answers (connection refused)"
    async with ComfyUIClient("http://no-such-host.invalid:8188", FAST) as client:
        with pytest.raises(ServerUnreachable) as unknown:
            await client.system_stats()
    assert unknown.value.message == (
        "the host name no-such-host.invalid is not known (DNS lookup failed)"
    )
    for err in (refused.value, unknown.value):
        assert "Errno" not in err.paragraph() and "ClientConnector" not in err.paragraph()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_https_and_wss_with_self_signed_certificate(self_signed: tuple[Path, Path]) -> None:
    import ssl

    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[web.Request] = []
    runner = web.AppRunner(recording_app(seen), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}"
    try:
        async with ComfyUIClient(ServerAddress(url, token="t"), FAST) as client:
            with pytest.raises(ServerUnreachable, match="verify_tls"):
                await client.system_stats()
        address = ServerAddress(url, token="t", verify_tls=False)
        async with ComfyUIClient(address, FAST) as client:
            assert (await client.system_stats())["system"]
            ws = await client.transport.ws_connect(client.client_id)
            assert (await ws.receive_json(timeout=2))["type"] == "status"
            await ws.close()
    finally:
        await runner.cleanup()
    assert [r.path for r in seen] == ["/system_stats", "/ws"]
    assert all(r.secure and r.headers["Authorization"] == "Bearer t" for r in seen)


async def test_local_write_failure_is_an_asset_error(serve: Serve, tmp_path: Path) -> None:
    from storycore.errors import AssetError

    url = await serve(view_app({"x.png": b"x" * 10}, []))
    blocker = tmp_path / "file"
    await asyncio.to_thread(blocker.write_bytes, b"")
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(AssetError) as info:
            await client.download({"filename": "x.png", "subfolder": "sub"}, blocker)
    assert not isinstance(info.value, ServerUnreachable)


async def test_upload_missing_file_is_an_asset_error(tmp_path: Path) -> None:
    from storycore.errors import AssetError

    async with ComfyUIClient("http://127.0.0.1:9", FAST) as client:
        with pytest.raises(AssetError, match="cannot read"):
            await client.upload_image(tmp_path / "missing.png")
