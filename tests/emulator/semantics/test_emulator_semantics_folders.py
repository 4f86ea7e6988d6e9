"""Model lists come from the emulator's own models folder, so a missing model is
``value_not_in_list`` exactly as the recording validation_errors.json shows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp

from storycore.emulator import Emulator, EmulatorOptions
from storycore.emulator._nodedefs import DEFAULT_MODELS

from .._support import load_reference_json


async def test_removed_checkpoint_is_value_not_in_list_as_recorded(
    emu_options: EmulatorOptions, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    rec = load_reference_json("validation_errors.json")["checkpoint_not_in_list"]
    models = tmp_path / "models"
    options = dataclasses.replace(
        emu_options,
        models_dir=models,
        models={"checkpoints": ["tiny-random-sd15.safetensors", "nope.safetensors"]},
    )
    async with Emulator(options) as emu:
        ok = await http.post(f"{emu.url}/prompt", json={"prompt": rec["request_prompt"]})
        assert ok.status == 200  # the file is there: the prompt is accepted
        (models / "checkpoints" / "nope.safetensors").unlink()
        resp = await http.post(f"{emu.url}/prompt", json={"prompt": rec["request_prompt"]})
        body = await resp.json()
    assert resp.status == rec["status"]
    assert body["node_errors"] == rec["body"]["node_errors"]
    assert body["error"]["type"] == rec["body"]["error"]["type"]


async def test_lists_follow_the_folder(
    emu_options: EmulatorOptions, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    models = tmp_path / "models"
    async with Emulator(dataclasses.replace(emu_options, models_dir=models)) as emu:
        first = await (await http.get(f"{emu.url}/models/checkpoints")).json()
        assert first == sorted(DEFAULT_MODELS["checkpoints"])  # made with the default names
        (models / "checkpoints" / "sdxl").mkdir()
        (models / "checkpoints" / "sdxl" / "base.safetensors").write_bytes(b"")
        (models / "checkpoints" / "notes.txt").write_text("not a model")
        (models / "loras" / "storycore-style.safetensors").unlink()
        info = await (await http.get(f"{emu.url}/object_info/CheckpointLoaderSimple")).json()
        loras = await (await http.get(f"{emu.url}/models/loras")).json()
    listed = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert listed == sorted([*DEFAULT_MODELS["checkpoints"], "sdxl/base.safetensors"])
    assert loras == []


async def test_own_scratch_folders_get_a_models_folder(http: aiohttp.ClientSession) -> None:
    async with Emulator(EmulatorOptions()) as emu:
        assert emu.models_dir is not None
        assert (emu.models_dir / "vae" / DEFAULT_MODELS["vae"][0]).is_file()
        (emu.models_dir / "vae" / DEFAULT_MODELS["vae"][0]).unlink()
        vae = await (await http.get(f"{emu.url}/models/vae")).json()
    assert vae == []


async def test_fixed_model_names_still_work(emu: Emulator, http: aiohttp.ClientSession) -> None:
    # Folders given and no models_dir: the fixed default names, nothing on disk.
    assert emu.models_dir is None
    ckpts = await (await http.get(f"{emu.url}/models/checkpoints")).json()
    assert ckpts == sorted(DEFAULT_MODELS["checkpoints"])


def test_process_flags_name_the_models_folder(tmp_path: Path) -> None:
    from storycore.emulator.__main__ import parse_args

    opts = parse_args(["--base-directory", str(tmp_path)])[0]
    assert opts.models_dir == tmp_path / "models"
    opts = parse_args(["--models-directory", str(tmp_path / "m")], scratch_default=True)[0]
    assert opts.models_dir == tmp_path / "m"
    assert parse_args([], scratch_default=True)[0].models_dir is None
