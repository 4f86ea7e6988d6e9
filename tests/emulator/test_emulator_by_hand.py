"""The emulator run by hand leaves nothing behind: its folders live in a temporary folder that is
removed when Ctrl-C stops it, unless the user named them (real child processes, real SIGINT)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from storycore.emulator.__main__ import started_by_hand
from tests.manager._support import free_port

from ._support import trivial_prompt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a child")


@dataclass
class _Child:
    proc: asyncio.subprocess.Process
    url: str
    stderr: list[str] = field(default_factory=list)

    def said(self, words: str) -> str | None:
        return next((line for line in self.stderr if words in line), None)


async def _read(child: _Child) -> None:
    assert child.proc.stderr is not None
    async for raw in child.proc.stderr:
        child.stderr.append(raw.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def _running(args: list[str], cwd: Path, tmpdir: Path, port: int) -> AsyncIterator[_Child]:
    """Start ``python args`` in ``cwd`` with TMPDIR=``tmpdir``; stop it with SIGINT."""
    env = {**os.environ, "TMPDIR": str(tmpdir), "COLUMNS": "400"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    child = _Child(proc, f"http://127.0.0.1:{port}")
    reader = asyncio.create_task(_read(child))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{child.url}/system_stats") as resp:
                        if resp.status == 200:
                            break
                assert proc.returncode is None, "\n".join(child.stderr)
                await asyncio.sleep(0.05)
        yield child
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(15):
                await proc.wait()
                await reader
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _render_and_upload(url: str) -> None:
    """One saved image in output/, one upload in input/, like a real client."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        form = aiohttp.FormData()
        form.add_field("image", b"\x89PNG not really", filename="ref.png")
        async with http.post(f"{url}/upload/image", data=form) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"{url}/prompt", json={"prompt": trivial_prompt()}) as resp:
            assert resp.status == 200, await resp.text()
            prompt_id = (await resp.json())["prompt_id"]
        for _ in range(200):
            async with http.get(f"{url}/history/{prompt_id}") as resp:
                if prompt_id in await resp.json():
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("the prompt never finished")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "storycore.emulator"],
        ["-m", "storycore", "comfyui", "emulate"],
    ],
    ids=["python -m storycore.emulator", "storycore comfyui emulate"],
)
async def test_run_by_hand_leaves_the_folder_empty(tmp_path: Path, command: list[str]) -> None:
    cwd, tmpdir = tmp_path / "empty", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    port = free_port()
    async with _running([*command, "--port", str(port)], cwd, tmpdir, port) as child:
        await _render_and_upload(child.url)
        line = child.said("Images go to ")
        assert line is not None, child.stderr
        assert "temporary folder removed on exit" in line
        (scratch,) = list(tmpdir.iterdir())
        assert str(scratch / "output") in line
        made = _files(scratch)
        assert "input/ref.png" in made
        assert any(name.startswith("output/storycore_test_") for name in made)
    assert child.proc.returncode in (0, 130), child.stderr
    assert list(cwd.iterdir()) == []
    assert list(tmpdir.iterdir()) == []  # the temporary folder is gone
    assert not any("Traceback" in line for line in child.stderr)


async def test_an_output_dir_given_is_kept_and_the_rest_removed(tmp_path: Path) -> None:
    cwd, tmpdir = tmp_path / "work", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    port = free_port()
    args = ["-m", "storycore", "comfyui", "emulate", "--port", str(port), "--output-dir", "renders"]
    async with _running(args, cwd, tmpdir, port) as child:
        await _render_and_upload(child.url)
        line = child.said("Images go to ")
        assert line is not None and str(cwd / "renders") in line
        (scratch,) = list(tmpdir.iterdir())
        assert "input/ref.png" in _files(scratch)
    assert [p.name for p in cwd.iterdir()] == ["renders"]
    assert _files(cwd / "renders")[0].startswith("storycore_test_")
    assert list(tmpdir.iterdir()) == []


async def test_as_a_comfyui_main_py_it_keeps_comfyuis_layout(tmp_path: Path) -> None:
    """A fake install's main.py running the module: output/, input/ and temp/ in its folder."""
    install, tmpdir = tmp_path / "ComfyUI", tmp_path / "tmp"
    install.mkdir()
    tmpdir.mkdir()
    (install / "main.py").write_text(
        "import runpy\n"
        "runpy.run_module('storycore.emulator', run_name='__main__', alter_sys=True)\n",
        encoding="utf-8",
    )
    port = free_port()
    async with _running(["main.py", "--port", str(port)], install, tmpdir, port) as child:
        await _render_and_upload(child.url)
        assert child.said(f"Images go to {install / 'output'}") is not None, child.stderr
    assert {p.name for p in install.iterdir()} >= {"main.py", "output", "input", "temp"}
    assert "ref.png" in _files(install / "input")
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python", "-m", "storycore.emulator", "--port", "1"], True),
        (["python", "-X", "utf8", "-W", "error", "-m", "storycore.emulator"], True),
        (["python", "-mstorycore.emulator"], True),
        (["python", "-s", "ComfyUI/main.py", "--port", "1"], False),
        (["python", "main.py"], False),
        (["python", "-m", "storycore", "comfyui", "emulate"], False),
        (["python", "-c", "import x"], False),
    ],
)
def test_started_by_hand(argv: list[str], expected: bool) -> None:
    assert started_by_hand(argv) is expected
