"""A received project cannot choose what runs or where its data goes (issue 15, section 1).

Each test plants the attack in a project's own ``storycore.toml`` or storyboard, runs the real
CLI in a bounded child, and checks that the attack did not happen (no trace of a program, no
request at the hostile server, no secret bytes uploaded) and that the error names the setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiohttp import web

from tests._recordings import load_reference_json
from tests.security._support import ChildResult, Handler, hostile_comfyui, run_storycore, serve
from tests.security._trust_support import (
    SECRET_TEXT,
    Recorder,
    child_env,
    edit_shot,
    fake_install,
    received_project,
    secret_png,
    shell_script,
    user_config,
)

pytestmark = pytest.mark.skipif(
    os.name != "posix", reason="fake installs are POSIX shell scripts and venv layouts"
)


def _assert_refused(result: ChildResult, setting: str, toml: Path) -> None:
    assert result.rc == 2, result.output
    assert f"`{setting}`" in result.stderr, result.stderr
    assert str(toml) in result.stderr
    assert "storycore config path" in result.stderr and "STORYCORE_" in result.stderr
    assert "Traceback" not in result.output
    result.assert_bounded(seconds=30)


# --- programs, arguments, folders ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "toml"),
    [
        ("comfyui.install_path", '[comfyui]\ninstall_path = "tools/comfy"\n'),
        ("comfyui.python_executable", '[comfyui]\npython_executable = "tools/python"\n'),
        ("comfyui.extra_args", '[comfyui]\nextra_args = ["--output-directory", "/tmp/x"]\n'),
        ("comfyui.host", '[comfyui]\nhost = "0.0.0.0"\n'),
        ("state_dir", 'state_dir = "STATE"\n'),
    ],
)
async def test_a_project_file_cannot_choose_the_program_or_its_arguments(
    tmp_path: Path, setting: str, toml: str
) -> None:
    # The user has a ComfyUI install of their own (its main.py writes a trace when it runs).
    user_trace = tmp_path / "user-comfyui-ran.json"
    user_install = fake_install(tmp_path / "my-comfyui", user_trace)
    env = child_env() | user_config(tmp_path, f'[comfyui]\ninstall_path = "{user_install}"\n')
    # The project carries its own "ComfyUI" and a "python" that leave a trace too.
    outside_state = tmp_path / "outside-state"
    root = received_project(tmp_path, toml.replace("STATE", str(outside_state)))
    project_trace = tmp_path / "project-program-ran"
    fake_install(root / "tools" / "comfy", project_trace)
    shell_script(root / "tools" / "python", project_trace)

    result = await run_storycore("generate-images", "-p", str(root), env=env, cwd=root)

    _assert_refused(result, setting, root / "storycore.toml")
    assert not project_trace.exists(), "the project's own program ran"
    assert not user_trace.exists(), "ComfyUI was started with the project's choices"
    assert not outside_state.exists(), "StoryCore wrote into the project's chosen folder"


async def test_the_same_settings_from_the_user_config_still_apply(tmp_path: Path) -> None:
    trace = tmp_path / "ran.json"
    install = fake_install(tmp_path / "my-comfyui", trace)
    state = tmp_path / "my-state"
    env = child_env() | user_config(
        tmp_path,
        f'state_dir = "{state}"\n[comfyui]\ninstall_path = "{install}"\n'
        'extra_args = ["--preview-method", "auto"]\n',
    )
    root = received_project(tmp_path, "[render]\nsteps = 1\n")
    result = await run_storycore(
        "generate-images", "-p", str(root), "--fallback", "fail", env=env, cwd=root
    )
    assert result.rc == 4, result.output  # the fake exits at once: no server
    argv = json.loads(trace.read_text(encoding="utf-8"))
    assert "--preview-method" in argv
    assert list(state.glob("comfyui/*/comfyui.log"))
    result.assert_bounded(seconds=45)


# --- servers ------------------------------------------------------------------------------------


async def test_an_empty_backends_list_cannot_hide_the_users_servers(tmp_path: Path) -> None:
    recorder = Recorder()
    async with serve(recorder.app()) as mine:
        env = child_env() | user_config(tmp_path, f'backends = ["{mine}"]\n')
        root = received_project(tmp_path, "backends = []\n")
        result = await run_storycore("generate-images", "-p", str(root), env=env)
    _assert_refused(result, "backends", root / "storycore.toml")
    assert "would hide the servers you chose" in result.stderr


@pytest.mark.parametrize(
    "entry",
    [
        'backends = ["URL"]\n',
        '[[backends]]\nurl = "URL"\n',
        'backends = "URL"\n',
        '[[backends]]\nurl = "URL"\nheaders = { X-Api-Key = "planted" }\n',
    ],
)
async def test_a_project_cannot_send_the_render_to_its_own_server(
    tmp_path: Path, entry: str
) -> None:
    hostile = Recorder()
    async with serve(hostile.app()) as url:
        env = child_env() | user_config(
            tmp_path,
            '[[backends]]\nurl = "http://127.0.0.1:9"\ntoken = "user-token-1234"\n'
            'headers = { X-Api-Key = "user-key-5678" }\n',
        )
        root = received_project(tmp_path, entry.replace("URL", url))
        result = await run_storycore("generate-images", "-p", str(root), env=env)
    _assert_refused(result, "backends", root / "storycore.toml")
    assert url in result.stderr and "project_servers" in result.stderr
    assert hostile.requests == [], "the project's server was contacted"


async def test_credentials_in_a_project_file_are_refused_even_for_a_trusted_server(
    tmp_path: Path,
) -> None:
    hostile = Recorder()
    async with serve(hostile.app()) as url:
        env = child_env() | user_config(tmp_path, f'[trust]\nproject_servers = ["{url}"]\n')
        for key, value in [
            ("token", '"planted-token"'),
            ("headers", '{ X-Api-Key = "planted-key" }'),
            ("username", '"me"\npassword = "planted-pw"'),
        ]:
            root = received_project(
                tmp_path / key, f'[[backends]]\nurl = "{url}"\n{key} = {value}\n'
            )
            result = await run_storycore("generate-images", "-p", str(root), env=env)
            _assert_refused(result, f"backends.{key}", root / "storycore.toml")
            assert "planted" not in result.output
    assert hostile.requests == []


async def test_opting_in_lets_a_project_name_trusted_servers_with_the_users_credentials(
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []
    stats_body = load_reference_json("system_stats.json")["body"]

    async def stats(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(stats_body)

    hostile = Recorder()
    async with (
        hostile_comfyui({"GET /system_stats": stats}, tmp=tmp_path) as (farm, _emulator),
        serve(hostile.app()) as other,
    ):
        trusted = (
            f'[trust]\nproject_servers = ["{farm}"]\n'
            f'[[backends]]\nurl = "{farm}"\ntoken = "farm-token-1234"\n'
            '[[backends]]\nurl = "http://127.0.0.1:9"\ntoken = "other-token-5678"\n'
        )
        env = child_env() | user_config(tmp_path, trusted)
        root = received_project(tmp_path, f'backends = ["{farm}/"]\n')
        result = await run_storycore("generate-images", "-p", str(root), env=env)
        assert result.rc == 0, result.output
        assert seen and set(seen) == {"Bearer farm-token-1234"}

        # A server on the same host but not listed: refused, and never contacted.
        root2 = received_project(tmp_path / "two", f'backends = ["{farm}", "{other}"]\n')
        refused = await run_storycore("generate-images", "-p", str(root2), env=env)
        _assert_refused(refused, "backends", root2 / "storycore.toml")
        assert other in refused.stderr and farm not in refused.stderr.split("project_servers")[0]
        assert hostile.requests == []

        # Trusting a host by name: any port there, but a credential only for its own URL.
        by_host = child_env() | user_config(
            tmp_path / "host",
            '[trust]\nproject_servers = ["127.0.0.1"]\n'
            f'[[backends]]\nurl = "{farm}"\ntoken = "farm-token-1234"\n',
        )
        root3 = received_project(tmp_path / "three", f'backends = ["{other}"]\n')
        await run_storycore("generate-images", "-p", str(root3), "--fallback", "fail", env=by_host)
        assert hostile.requests, "a trusted host was not used"
        for _method, _path, headers, _body in hostile.requests:
            assert "farm-token-1234" not in json.dumps(dict(headers))
    result.assert_bounded(seconds=60)


# --- reference images ---------------------------------------------------------------------------


def _upload_recorder() -> tuple[list[bytes], Handler]:
    bodies: list[bytes] = []

    async def upload(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({"error": "recorded"}, status=400)

    return bodies, upload


@pytest.mark.parametrize("how", ["dotdot", "absolute", "link"])
async def test_a_reference_image_outside_the_project_is_never_uploaded(
    tmp_path: Path, how: str
) -> None:
    secret = secret_png(tmp_path / "secret.png")
    root = received_project(tmp_path / "inbox")
    if how == "dotdot":
        given = "../../secret.png"
    elif how == "absolute":
        given = str(secret)
    else:
        (root / "assets" / "refs").mkdir(parents=True, exist_ok=True)
        (root / "assets" / "refs" / "rough.png").symlink_to(secret)
        given = "assets/refs/rough.png"
    edit_shot(root, references={"init_image": given})
    bodies, upload = _upload_recorder()
    async with hostile_comfyui({"POST /upload/image": upload}, tmp=tmp_path) as (url, _emu):
        result = await run_storycore(
            "generate-images", "-p", str(root), "--backend", url, env=child_env()
        )
    assert result.rc == 3, result.output
    assert given in result.stderr and "shot_01" in result.stderr
    assert "references.init_image" in result.stderr
    assert "reference_folders" in result.stderr
    if how == "link":
        assert str(secret) in result.stderr  # where the link leads
    assert not any(SECRET_TEXT in body for body in bodies), "the secret image was uploaded"
    assert "Traceback" not in result.output
    result.assert_bounded(seconds=30)


async def test_a_reference_folder_the_user_allowed_is_read(tmp_path: Path) -> None:
    library = tmp_path / "shared" / "refs"
    secret_png(library / "mara.png")
    root = received_project(tmp_path / "inbox")
    (root / "assets").mkdir(exist_ok=True)
    (root / "assets" / "library").symlink_to(library)
    edit_shot(root, references={"init_image": "assets/library/mara.png"})
    env = child_env() | user_config(tmp_path, f'[trust]\nreference_folders = ["{library}"]\n')
    async with hostile_comfyui({}, tmp=tmp_path) as (url, _emu):
        result = await run_storycore("generate-images", "-p", str(root), "--backend", url, env=env)
    assert result.rc == 0, result.output
    uploaded = list((tmp_path / "server-input").rglob("*.png"))
    assert any(SECRET_TEXT in p.read_bytes() for p in uploaded)
    result.assert_bounded(seconds=30)


# --- templates ----------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"


def _template_files(folder: Path, workflow: str = "sdxl_character.api.json") -> Path:
    """The example SDXL template (binding + API workflow) copied to ``folder``; the binding
    names ``workflow``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = EXAMPLES / "sdxl_character.api.json"
    (folder / "sdxl_character.api.json").write_bytes(source.read_bytes())
    text = (EXAMPLES / "sdxl_character.binding.toml").read_text(encoding="utf-8")
    binding = folder / "t.binding.toml"
    binding.write_text(
        text.replace('workflow = "sdxl_character.api.json"', f'workflow = "{workflow}"'),
        encoding="utf-8",
    )
    return binding


async def test_a_project_template_outside_the_project_is_refused(tmp_path: Path) -> None:
    outside = _template_files(tmp_path / "elsewhere")
    root = received_project(tmp_path / "inbox", f'[templates]\nx = "{outside}"\n')
    edit_shot(root, template="x")
    result = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=child_env())
    _assert_refused(result, "templates.x", root / "storycore.toml")
    assert "reference_folders" in result.stderr


async def test_a_binding_in_the_project_cannot_name_a_workflow_outside(tmp_path: Path) -> None:
    _template_files(tmp_path / "elsewhere")
    toml = '[templates]\nx = "templates/t.binding.toml"\n[render]\ntemplate = "x"\n'
    root = received_project(tmp_path / "inbox", toml)
    _template_files(root / "templates", "../../../elsewhere/sdxl_character.api.json")
    result = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=child_env())
    assert result.rc == 6, result.output
    assert "../../../elsewhere/sdxl_character.api.json" in result.stderr
    assert "reference_folders" in result.stderr and "t.binding.toml" in result.stderr
    # a binding file that is a link out of the project: refused as the setting itself
    (root / "templates" / "t.binding.toml").unlink()
    (root / "templates" / "t.binding.toml").symlink_to(tmp_path / "elsewhere" / "t.binding.toml")
    linked = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=child_env())
    _assert_refused(linked, "templates.x", root / "storycore.toml")
    assert str(tmp_path / "elsewhere" / "t.binding.toml") in linked.stderr
    # the same relative path declared in the user config still goes through the project
    (root / "storycore.toml").write_text('[render]\ntemplate = "x"\n', encoding="utf-8")
    env = child_env() | user_config(tmp_path, '[templates]\nx = "templates/t.binding.toml"\n')
    through = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=env)
    assert through.rc == 6, through.output
    assert "templates.x" in through.stderr and "reference_folders" in through.stderr
    through.assert_bounded(seconds=30)


async def test_the_users_own_templates_may_live_anywhere(tmp_path: Path) -> None:
    mine = _template_files(tmp_path / "my-templates")
    env = child_env() | user_config(tmp_path, f'[templates]\nx = "{mine}"\n')
    root = received_project(tmp_path / "inbox", '[render]\ntemplate = "x"\n')
    result = await run_storycore("generate-images", "-p", str(root), "--dry-run", env=env)
    assert result.rc == 0, result.output
