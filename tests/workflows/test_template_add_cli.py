"""``storycore template add`` in a child process: import a bundled ComfyUI workflow into a fresh
project, then ``preflight`` and a render of one panel with it against the emulator; refusals;
the storycore.toml edit keeps the user's comments and layout."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import aiohttp
import pytest

from storycore._config_edit import add_template_entry
from storycore.emulator import Emulator, EmulatorOptions
from storycore.emulator._nodedefs import DEFAULT_MODELS
from storycore.errors import ConfigError
from tests.engine.conftest import make_project, run_cli

from ._support import EXAMPLES_DIR, REPO_ROOT

BUNDLED = REPO_ROOT / "tests" / "data" / "workflows" / "bundled"
FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
}
NOWHERE = {"STORYCORE_COMFYUI__PORT": "9", "STORYCORE_COMFYUI__HOST": "127.0.0.1"}


def _models() -> dict[str, tuple[str, ...]]:
    """The emulator's model lists plus the files the bundled workflows load."""
    models = dict(DEFAULT_MODELS)
    models["checkpoints"] = (*models["checkpoints"], "v1-5-pruned-emaonly-fp16.safetensors")
    models["diffusion_models"] = ("flux1-dev.safetensors",)
    models["text_encoders"] = ("clip_l.safetensors", "t5xxl_fp16.safetensors")
    models["vae"] = (*models["vae"], "ae.safetensors")
    return models


# workflow, the node inputs that must hold the shot's prompt in the submitted graph, and other
# values the submitted graph must hold (node, input, value)
CASES = {
    "sd15": (
        "sd15_default.ui.json",
        [("6", "text")],
        [("4", "ckpt_name", "v1-5-pruned-emaonly-fp16.safetensors"), ("3", "steps", 3)],
    ),
    "flux": (
        "flux_dev_full.ui.json",
        [("41", "clip_l"), ("41", "t5xxl")],
        [("41", "guidance", 7.0), ("31", "cfg", 1), ("38", "unet_name", "flux1-dev.safetensors")],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_add_then_preflight_then_render(tmp_path: Path, name: str) -> None:
    file_name, prompt_inputs, values = CASES[name]
    root = make_project(tmp_path, 1)
    workflow = BUNDLED / file_name
    async with Emulator(EmulatorOptions(models=_models())) as emu:
        code, out, err = await run_cli(
            "template", "add", str(workflow), "--name", name, "-p", str(root),
            "--backend", emu.url, "--json",
        )  # fmt: skip
        assert code == 0, err
        result = json.loads(out)
        assert result["catalog"] == emu.url and result["format"] == "ui"
        assert {b["value"] for b in result["bound"]} >= {"prompt", "seed", "width", "height"}
        copied = root / "templates" / f"{name}.ui.json"
        assert copied.read_bytes() == workflow.read_bytes()  # kept as the user gave it
        binding = tomllib.loads((root / "templates" / f"{name}.binding.toml").read_text())
        assert binding["workflow"] == f"{name}.ui.json"
        settings = tomllib.loads((root / "storycore.toml").read_text())
        assert settings["templates"][name] == f"templates/{name}.binding.toml"

        env = {**FAST_ENV, "STORYCORE_RENDER__TEMPLATE": name}
        code, out, err = await run_cli(
            "preflight", "--project", str(root), "--backend", emu.url, "--json", env=env
        )
        report = json.loads(out)
        assert code == 0, err + out
        assert report["ok"] is True and report["errors"] == 0

        code, out, err = await run_cli(
            "generate-images", "-p", str(root), "--backend", emu.url, "--json", env=env
        )
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        done = [e for e in events if e["event"] == "panel_done"]
        assert len(done) == 1 and done[0]["placeholder"] is False
        assert events[-1]["counts"]["rendered"] == 1
        async with aiohttp.ClientSession() as session, session.get(f"{emu.url}/history") as got:
            history = await got.json()
    (entry,) = history.values()
    graph = entry["prompt"][2]  # [number, prompt id, graph, extra data, outputs to execute]
    for node, input_name in prompt_inputs:
        assert "panel number 1, a lighthouse" in graph[node]["inputs"][input_name]
    for node, input_name, value in values:
        assert graph[node]["inputs"][input_name] == value, (node, input_name)
    assert graph["9"]["inputs"]["filename_prefix"].startswith("storycore/")
    images = [p for p in root.rglob("*.png") if "templates" not in p.parts]
    assert images, "no image was written"


async def test_flux_without_a_server_uses_the_shipped_node_list(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    code, out, err = await run_cli(
        "template", "add", str(BUNDLED / "flux_dev_full.ui.json"), "--name", "flux",
        "-p", str(root), "--timeout", "3", env=NOWHERE,
    )  # fmt: skip
    assert code == 0, err
    assert "ComfyUI 0.3.64 shipped with StoryCore" in err
    assert "guidance" in out and "no negative prompt" in out  # the table, both halves
    binding = tomllib.loads((root / "templates" / "flux.binding.toml").read_text())
    assert binding["bindings"]["cfg"] == "CLIPTextEncodeFlux.guidance"
    assert "negative" not in binding["bindings"]


async def test_refusals(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    api = EXAMPLES_DIR / "sdxl_character.api.json"
    args = ("template", "add", str(api), "-p", str(root), "--timeout", "2")
    code, _, err = await run_cli(*args, "--name", "../evil", env=NOWHERE)
    assert code == 2 and "--name" in err
    code, _, err = await run_cli(*args, "--name", "c", "--backend", "http://127.0.0.1:9")
    assert code == 4 and "127.0.0.1:9" in err  # a server asked for by name must answer
    assert not (root / "templates" / "c.binding.toml").exists()
    user = tmp_path / "user.toml"
    user.write_text('[templates]\nmine = "/somewhere/mine.binding.toml"\n')
    code, _, err = await run_cli(*args, "--name", "char", "--config", str(user), env=NOWHERE)
    assert code == 0, err
    assert "mine" in err and "not seen in this project" in err  # the project's table wins
    before = (root / "templates" / "char.binding.toml").read_text()
    code, _, err = await run_cli(*args, "--name", "char", env=NOWHERE)
    assert code == 6 and "already there" in err and "--force" in err
    assert (root / "templates" / "char.binding.toml").read_text() == before
    code, _, err = await run_cli(*args, "--name", "char", "--force", env=NOWHERE)
    assert code == 0, err
    broken = tmp_path / "broken.json"
    graph = json.loads(api.read_text())
    broken.write_text(json.dumps({k: v for k, v in graph.items() if v["class_type"] != "KSampler"}))
    code, _, err = await run_cli(
        "template", "add", str(broken), "--name", "b", "-p", str(root), "--timeout", "2",
        env=NOWHERE,
    )  # fmt: skip
    assert code == 6 and "no sampler node" in err and str(broken) in err
    assert not (root / "templates" / "b.binding.toml").exists()
    notjson = tmp_path / "x.json"
    notjson.write_text("{")
    code, _, err = await run_cli(
        "template", "add", str(notjson), "--name", "x", "-p", str(root), env=NOWHERE
    )
    assert code == 6 and "not valid JSON" in err and "Traceback" not in err


def test_settings_edit_keeps_comments_and_layout(tmp_path: Path) -> None:
    config = tmp_path / "storycore.toml"
    original = (
        "# my project\n"
        "[render]\n"
        'sampler = "euler"  # keep\n'
        "\n"
        "[templates]\n"
        '# the old one\nold = "templates/old.binding.toml"\n'
        "\n"
        "[assets]\n"
        "keep_versions = 3\n"
    )
    config.write_text(original)
    assert add_template_entry(config, "new", "templates/new.binding.toml", inside=tmp_path) == (
        "added"
    )
    text = config.read_text()
    assert text == original.replace(
        'old.binding.toml"\n', 'old.binding.toml"\nnew = "templates/new.binding.toml"\n'
    )
    assert add_template_entry(config, "new", "templates/new.binding.toml", inside=tmp_path) == (
        "unchanged"
    )
    with pytest.raises(ConfigError, match="already registered"):
        add_template_entry(config, "new", "templates/other.toml", inside=tmp_path)
    inline = tmp_path / "inline.toml"
    inline.write_text('templates = { a = "x.toml" }\n')
    with pytest.raises(ConfigError, match="add this line under"):
        add_template_entry(inline, "b", "templates/b.toml", inside=tmp_path)
    assert inline.read_text() == 'templates = { a = "x.toml" }\n'
    shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
    fresh = tmp_path / "fresh" / "storycore.toml"
    fresh.parent.mkdir()
    add_template_entry(fresh, "a", "templates/a.binding.toml", inside=fresh.parent)
    assert tomllib.loads(fresh.read_text()) == {"templates": {"a": "templates/a.binding.toml"}}


async def test_a_subgraphed_bundled_workflow_renders(tmp_path: Path) -> None:
    from storycore.errors import TemplateError
    from storycore.workflows._ui_format import ui_to_api
    from tests.workflows._support import catalog_all

    workflow = BUNDLED / "flux_dev_subgraph.ui.json"
    try:
        ui_to_api(json.loads(workflow.read_text()), catalog_all(), str(workflow))
    except TemplateError as err:
        if "subgraph" in str(err):
            pytest.skip("the UI converter does not expand subgraphs yet")
        raise
    root = make_project(tmp_path, 1)
    env = {**FAST_ENV, "STORYCORE_RENDER__TEMPLATE": "flux"}
    async with Emulator(EmulatorOptions(models=_models())) as emu:
        code, _, err = await run_cli(
            "template", "add", str(workflow), "--name", "flux", "-p", str(root),
            "--backend", emu.url,
        )  # fmt: skip
        assert code == 0, err
        code, out, err = await run_cli(
            "preflight", "--project", str(root), "--backend", emu.url, "--json", env=env
        )
        assert code == 0 and json.loads(out)["ok"] is True, err + out
        code, out, err = await run_cli(
            "generate-images", "-p", str(root), "--backend", emu.url, "--json", env=env
        )
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["counts"]["rendered"] == 1
        async with aiohttp.ClientSession() as session, session.get(f"{emu.url}/history") as got:
            history = await got.json()
    (entry,) = history.values()
    by_class = {node["class_type"]: node["inputs"] for node in entry["prompt"][2].values()}
    assert "panel number 1, a lighthouse" in by_class["CLIPTextEncode"]["text"]
    assert by_class["KSampler"]["cfg"] == 1 and by_class["KSampler"]["steps"] == 3
    assert by_class["EmptySD3LatentImage"]["width"] != 1024  # the panel's size, not the saved one
