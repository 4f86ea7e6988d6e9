"""Credentials are never shown (issue 15, section 6) and a deeply nested settings file is a clear
error (section 5): ``config show``, ``doctor --json`` and log lines mask every token, password,
header value and URL password, even when a server echoes one back; a storycore.toml or user
config nested 100000 deep gives one paragraph naming the file, never a traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from aiohttp import web

from storycore._redact import forget_all_secrets, redact
from storycore.config import resolve_settings
from tests._recordings import load_reference_json
from tests.security._support import Handler, hostile_comfyui, run_storycore
from tests.security._trust_support import child_env, received_project

KEY = "xk-4f1e9b7c-echoed-key"
TOKEN = "tok-98a7b6c5d4"
URL_PASSWORD = "p@ss-word-9"  # an "@" inside the password


def _echoing_stats() -> Handler:
    """``/system_stats`` that puts the X-Api-Key it received where StoryCore shows text."""
    body = load_reference_json("system_stats.json")["body"]

    async def stats(request: web.Request) -> web.Response:
        answer = copy.deepcopy(body)
        echoed = request.headers.get("X-Api-Key", "")
        answer["system"]["comfyui_version"] = f"0.3.64 {echoed}"
        answer["system"]["argv"] = ["main.py", "--api-key", echoed]
        answer["devices"][0]["name"] = f"cuda:0 {echoed}"
        return web.json_response(answer)

    return stats


async def test_doctor_and_logs_never_show_a_header_value_a_server_echoes(tmp_path: Path) -> None:
    async with hostile_comfyui({"GET /system_stats": _echoing_stats()}, tmp=tmp_path) as (url, _e):
        config = tmp_path / "mine.toml"
        config.write_text(
            f'[[backends]]\nurl = "{url}"\nheaders = {{ X-Api-Key = "{KEY}" }}\n',
            encoding="utf-8",
        )
        root = received_project(tmp_path / "inbox")
        runs = [
            await run_storycore("doctor", "--json", "--config", str(config), env=child_env()),
            await run_storycore("doctor", "-v", "--config", str(config), env=child_env()),
            await run_storycore(
                "generate-images", "-v", "-p", str(root), "--config", str(config), env=child_env()
            ),
            await run_storycore("config", "show", "--config", str(config), env=child_env()),
            await run_storycore(
                "config", "show", "--json", "--config", str(config), env=child_env()
            ),
        ]
    report = json.loads(runs[0].stdout)
    assert report["server"]["reachable"] is True
    assert report["server"]["version"] == "0.3.64 ***"  # the echo arrived, and was masked
    assert runs[2].rc == 0, runs[2].output
    for result in runs:
        assert KEY not in result.output, result.output
        assert "Traceback" not in result.output
        result.assert_bounded(seconds=60)
    shown = json.loads(runs[4].stdout)["settings"]["backends"][0]["headers"]
    assert shown == {"X-Api-Key": "***"}


async def test_a_password_in_a_url_is_masked_everywhere(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        f'[[backends]]\nurl = "http://me:{URL_PASSWORD}@127.0.0.1:9"\n', encoding="utf-8"
    )
    for args in (("config", "show"), ("config", "show", "--json"), ("doctor", "--json")):
        result = await run_storycore(*args, "--config", str(config), env=child_env())
        for part in (URL_PASSWORD, "ss-word-9"):
            assert part not in result.output, result.output
        assert "me:***@127.0.0.1:9" in result.stdout, result.output
        result.assert_bounded(seconds=60)


def test_every_credential_the_settings_hold_is_remembered_for_redaction(tmp_path: Path) -> None:
    forget_all_secrets()
    config = tmp_path / "mine.toml"
    config.write_text(
        f'[[backends]]\nurl = "https://me:{URL_PASSWORD}@a.example"\ntoken = "{TOKEN}"\n'
        f'[[backends]]\nurl = "http://b:8188"\nusername = "me"\npassword = "hunter22"\n'
        f'headers = {{ X-Api-Key = "{KEY}" }}\n',
        encoding="utf-8",
    )
    try:
        resolve_settings(user_config=config, env={})
        echoed = f"bad key {KEY}, token {TOKEN}, password hunter22, url {URL_PASSWORD}"
        assert redact(echoed) == "bad key ***, token ***, password ***, url ***"
    finally:
        forget_all_secrets()


# --- deep nesting -------------------------------------------------------------------------------

DEPTH = 100_000
NESTED = {
    "arrays": "x = " + "[" * DEPTH + "]" * DEPTH + "\n",
    "inline tables": "x = " + "{ a = " * DEPTH + "1" + " }" * DEPTH + "\n",
    "table header": "[" + ".".join(["a"] * DEPTH) + "]\n",
    "dotted key": ".".join(["a"] * DEPTH) + " = 1\n",
}


@pytest.mark.parametrize("shape", sorted(NESTED))
@pytest.mark.parametrize("layer", ["project", "user config"])
async def test_a_deeply_nested_settings_file_is_a_clear_error(
    tmp_path: Path, shape: str, layer: str
) -> None:
    if layer == "project":
        root = received_project(tmp_path, NESTED[shape])
        toml = root / "storycore.toml"
        args: tuple[str, ...] = ("config", "show", "-p", str(root))
    else:
        toml = tmp_path / "mine.toml"
        toml.write_text(NESTED[shape], encoding="utf-8")
        args = ("config", "show", "--config", str(toml))
    result = await run_storycore(*args, env=child_env(), limit_s=60)
    assert result.rc == 2, result.output[-2000:]
    assert str(toml) in result.stderr and "nested" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one paragraph
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    result.assert_bounded(seconds=20)
