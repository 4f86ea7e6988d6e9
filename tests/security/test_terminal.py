"""What StoryCore shows cannot be forged: server and project text reaches the terminal inert.

A hostile server puts escape sequences (clear the screen, move the cursor, an OSC 8 hyperlink),
a carriage return, a bell, text-direction overrides and rich markup (``[bold green]done[/]``,
``[link=...]``) into every text it controls: its version, device names, error messages, node
class names. A received project does the same in its prompts and key names. Every command runs
in a child process; its stdout and stderr must hold none of those characters raw, and the
markup must show as the literal text it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from storycore.emulator import EmulatorOptions
from tests._recordings import load_reference_json
from tests.engine.conftest import make_project
from tests.security._support import ChildResult, hostile_comfyui, run_storycore

# The attacker's text: clear screen + home, a carriage return over a fake "done", an OSC 8
# hyperlink, a bell, a right-to-left override, rich markup and a rich emoji code.
MARKUP = "[bold green]done[/]"
EVIL = (
    "\x1b[2J\x1b[Hrendered\rdone \x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 "
    "\u202egnp.exe\u202c " + MARKUP + " [link=http://evil.example]here[/link] :warning:\x9b31m"
)
RAW = ("\x1b", "\r", "\x07", "\u202e", "\u202c", "\x9b")

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "2",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "64",
    "STORYCORE_COMFYUI__MAX_RETRIES": "0",
}


def _env(tmp_path: Path) -> dict[str, str]:
    return {**FAST_ENV, "XDG_STATE_HOME": str(tmp_path / "state")}


def assert_inert(result: ChildResult, *, link: str = "[link=http://evil.example]") -> None:
    """No raw control, escape or direction character; the markup is shown as written."""
    for char in RAW:
        assert char not in result.output, (
            f"raw {char!r} reached the terminal:\n{result.output[-3000:]!r}"
        )
    assert MARKUP in result.output, result.output[-3000:]
    assert link in result.output
    assert "\u26a0" not in result.output  # ":warning:" stays text, not an emoji
    assert "Traceback" not in result.output
    result.assert_bounded(seconds=60)


def _stats_body() -> dict[str, Any]:
    body: dict[str, Any] = load_reference_json("system_stats.json")["body"]
    body["system"]["comfyui_version"] = EVIL
    body["system"]["os"] = EVIL
    body["devices"][0]["name"] = EVIL
    body["devices"][0]["type"] = EVIL
    return body


async def _evil_stats(_request: web.Request) -> web.Response:
    return web.json_response(_stats_body())


def _options(tmp_path: Path) -> EmulatorOptions:
    return EmulatorOptions(
        output_dir=tmp_path / "server-output",
        input_dir=tmp_path / "server-input",
        temp_dir=tmp_path / "server-tmp",
    )


async def test_comfyui_status_shows_a_hostile_version_and_devices_inert(tmp_path: Path) -> None:
    async with hostile_comfyui({"GET /system_stats": _evil_stats}, tmp=tmp_path) as (url, _):
        port = url.rsplit(":", 1)[1]
        result = await run_storycore(
            "comfyui", "status", "--host", "127.0.0.1", "--port", port, env=_env(tmp_path)
        )
    assert result.rc == 0, result.output
    assert "running" in result.stdout
    assert_inert(result)


async def test_doctor_and_preflight_show_hostile_server_text_inert(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    async with hostile_comfyui({"GET /system_stats": _evil_stats}, tmp=tmp_path) as (url, _):
        doctor = await run_storycore("doctor", "--backend", url, env=_env(tmp_path))
        preflight = await run_storycore(
            "preflight", "-p", str(root), "--backend", url, env=_env(tmp_path)
        )
    assert doctor.rc in (0, 1), doctor.output
    assert_inert(doctor)
    assert preflight.rc in (0, 6), preflight.output
    assert_inert(preflight)


async def test_generate_images_shows_a_hostile_error_text_inert(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)

    async def refuse(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "error": {"type": EVIL, "message": EVIL, "details": EVIL, "extra_info": {}},
                "node_errors": {
                    "3": {
                        "errors": [{"type": EVIL, "message": EVIL, "details": EVIL}],
                        "dependent_outputs": ["9"],
                        "class_type": EVIL,
                    }
                },
            },
            status=400,
        )

    async with hostile_comfyui(
        {"POST /prompt": refuse}, tmp=tmp_path, options=_options(tmp_path)
    ) as (url, _):
        result = await run_storycore(
            "generate-images", "-p", str(root), "--backend", url, "-v", env=_env(tmp_path)
        )
    assert result.rc not in (0, 9), result.output  # the panel failed, and said so
    assert "DEBUG storycore" in result.stderr  # the debug log lines are checked too
    assert "failed" in result.output
    assert_inert(result)


def _hostile_project(tmp_path: Path) -> Path:
    root = make_project(tmp_path, 1)
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text())
    shot = board["shots"][0]
    shot["title"] = EVIL
    shot["prompt_modules"]["subject"] = EVIL
    shot["prompt_modules"]["technical"]["negative_prompt"] = EVIL
    shot["prompt_modules"]["technical"][EVIL] = 3  # an unknown key: warned about by name
    board_path.write_text(json.dumps(board))
    return root


async def test_validate_and_the_plan_show_hostile_project_text_inert(tmp_path: Path) -> None:
    root = _hostile_project(tmp_path)
    validate = await run_storycore("validate", "-p", str(root), env=_env(tmp_path))
    assert validate.rc == 0, validate.output
    assert "unknown key" in validate.stderr
    assert_inert(validate)
    plan = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=_env(tmp_path))
    assert plan.rc == 0, plan.output
    assert "prompt:" in plan.stdout
    assert_inert(plan)


async def test_json_output_escapes_control_and_direction_characters(tmp_path: Path) -> None:
    root = _hostile_project(tmp_path)
    result = await run_storycore("validate", "-p", str(root), "--json", env=_env(tmp_path))
    assert result.rc == 0, result.output
    for char in RAW:
        assert char not in result.stdout
    document = json.loads(result.stdout)  # still valid JSON, and the value is unchanged
    values = document["panels"][0]["values"]
    assert values["negative_prompt"]["value"] == EVIL
    result.assert_bounded(seconds=60)


async def test_a_panel_error_naming_hostile_project_text_is_inert(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text())
    # A reference image that is not there: the panel's error names the path as written.
    board["shots"][0]["references"] = {"init_image": f"assets/{EVIL}.png"}
    board_path.write_text(json.dumps(board))
    result = await run_storycore(
        "generate-images", "-p", str(root), "--dry-run", env=_env(tmp_path)
    )
    assert result.rc == 8, result.output  # the panel cannot be built, and says so
    assert "cannot be built" in result.stdout
    assert_inert(result, link="[link=http:/evil.example]")  # a path: `//` reads as `/`
