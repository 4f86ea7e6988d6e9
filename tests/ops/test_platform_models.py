"""Model folders with real safetensors headers: scan, family from the header, extra paths."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from storycore.errors import ConfigError
from storycore.platform import (
    guess_model,
    parse_extra_model_paths,
    read_safetensors_header,
    scan_models,
)
from storycore.platform._extra_paths import load_extra_model_paths

from ._safetensors_factory import (
    CLIP_VISION,
    ESRGAN,
    FLUX_DEV_UNET,
    FLUX_SCHNELL_UNET,
    SD2_CHECKPOINT,
    SD3_CHECKPOINT,
    SD15_CHECKPOINT,
    SD15_CONTROLNET,
    SD15_IPADAPTER,
    SD15_LORA,
    SDXL_CHECKPOINT,
    SDXL_LORA,
    VAE,
    write_safetensors,
)


@pytest.mark.parametrize(
    ("tensors", "kind", "family"),
    [
        (SD15_CHECKPOINT, "checkpoint", "sd15"),
        (SD2_CHECKPOINT, "checkpoint", "sd2"),
        (SDXL_CHECKPOINT, "checkpoint", "sdxl"),
        (SD3_CHECKPOINT, "checkpoint", "sd3"),
        (FLUX_DEV_UNET, "diffusion_model", "flux"),
        (FLUX_SCHNELL_UNET, "diffusion_model", "flux_schnell"),
        (SDXL_LORA, "lora", "sdxl"),
        (SD15_LORA, "lora", "sd15"),
        (SD15_CONTROLNET, "controlnet", "sd15"),
        (SD15_IPADAPTER, "ipadapter", "sd15"),
        (CLIP_VISION, "clip_vision", "unknown"),
        (VAE, "vae", "unknown"),
        (ESRGAN, "upscale", "unknown"),
    ],
)
def test_family_comes_from_the_header(
    tmp_path: Path, tensors: dict[str, list[int]], kind: str, family: str
) -> None:
    # The name lies on purpose: only the header may decide.
    path = write_safetensors(tmp_path / "flux-sdxl-sd15-whatever.safetensors", tensors)
    guess = guess_model(read_safetensors_header(path))
    assert (guess.kind, guess.family) == (kind, family)
    assert guess.dtype == "F16"
    assert guess.parameters == sum(_product(shape) for shape in tensors.values())


def _product(shape: list[int]) -> int:
    out = 1
    for dim in shape:
        out *= dim
    return out


def test_metadata_is_only_a_fallback(tmp_path: Path) -> None:
    odd = write_safetensors(
        tmp_path / "x.safetensors",
        {"some.unknown.weight": [4, 4]},
        metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base"},
    )
    guess = guess_model(read_safetensors_header(odd))
    assert (guess.family, guess.source) == ("sdxl", "metadata")
    lying = write_safetensors(
        tmp_path / "y.safetensors",
        SD15_CHECKPOINT,
        metadata={"modelspec.architecture": "flux-1-dev"},
    )
    assert guess_model(read_safetensors_header(lying)).family == "sd15"


def test_only_the_header_is_read(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", SD15_CHECKPOINT)
    with path.open("ab") as handle:
        handle.write(b"\xff" * 1_000_000)  # garbage after the header is never touched
    assert "first_stage_model.decoder.conv_in.weight" in read_safetensors_header(path)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x02",
        struct.pack("<Q", 10**12) + b"{}",
        struct.pack("<Q", 40) + b"{}",
        struct.pack("<Q", 4) + b"[1] ",
    ],
)
def test_bad_headers_raise_value_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        read_safetensors_header(path)


def _models_folder(root: Path) -> Path:
    models = root / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "dreamy.safetensors", SDXL_CHECKPOINT)
    write_safetensors(models / "checkpoints" / "sub" / "old.safetensors", SD15_CHECKPOINT)
    (models / "checkpoints" / "legacy.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    (models / "checkpoints" / "put_checkpoints_here").write_text("")
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"\x05\x00")
    write_safetensors(models / "loras" / "style.safetensors", SDXL_LORA)
    write_safetensors(models / "controlnet" / "canny.safetensors", SD15_CONTROLNET)
    write_safetensors(models / "clip_vision" / "CLIP-ViT-H.safetensors", CLIP_VISION)
    write_safetensors(models / "ipadapter" / "ip-adapter_sd15.safetensors", SD15_IPADAPTER)
    write_safetensors(models / "upscale_models" / "4x.safetensors", ESRGAN)
    write_safetensors(models / "vae" / "vae.safetensors", VAE)
    write_safetensors(models / "unet" / "flux1-dev.safetensors", FLUX_DEV_UNET)
    (models / "embeddings").mkdir()
    (models / "embeddings" / "easyneg.pt").write_bytes(b"\0" * 10)
    return models


def test_scan_lists_models_like_comfyui(tmp_path: Path) -> None:
    models = _models_folder(tmp_path)
    inventory = scan_models(models)
    assert inventory.names("checkpoints") == [
        "broken.safetensors",
        "dreamy.safetensors",
        "legacy.ckpt",
        "sub/old.safetensors",
    ]
    dreamy = inventory.find("checkpoints", "dreamy.safetensors")
    assert dreamy is not None and dreamy.family == "sdxl"
    assert dreamy.size == (models / "checkpoints" / "dreamy.safetensors").stat().st_size
    old = inventory.find("checkpoints", "sub\\old.safetensors")
    assert old is not None and old.family == "sd15"
    broken = inventory.find("checkpoints", "broken.safetensors")
    assert broken is not None and broken.error and broken.family == "unknown"
    legacy = inventory.find("checkpoints", "legacy.ckpt")
    assert legacy is not None and legacy.guess is None
    assert inventory.names("diffusion_models") == ["flux1-dev.safetensors"]  # legacy unet/
    assert inventory.find("loras", "style.safetensors").family == "sdxl"  # type: ignore[union-attr]
    assert inventory.names("embeddings") == ["easyneg.pt"]
    assert inventory.as_names()["ipadapter"] == ["ip-adapter_sd15.safetensors"]
    assert inventory.total_bytes == sum(
        p.stat().st_size
        for p in models.rglob("*")
        if p.is_file() and p.name != "put_checkpoints_here"
    )


def test_symlink_loops_end(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_safetensors(models / "loras" / "a.safetensors", SD15_LORA)
    (models / "loras" / "loop").symlink_to(models / "loras", target_is_directory=True)
    assert scan_models(models, folders=["loras"]).names("loras") == ["a.safetensors"]


EXTRA_YAML = """\
# Like ComfyUI's extra_model_paths.yaml.example
a111:
    base_path: ../webui/   # relative to this file

    checkpoints: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
comfyui:
    base_path: "{shared}"
    is_default: true
    checkpoints: shared_ckpts/
    clip: |
        text/
"""


def test_extra_model_paths_are_scanned(tmp_path: Path) -> None:
    models = _models_folder(tmp_path)
    shared = tmp_path / "shared"
    write_safetensors(shared / "shared_ckpts" / "sd3.safetensors", SD3_CHECKPOINT)
    write_safetensors(tmp_path / "webui" / "models" / "LyCORIS" / "ly.safetensors", SD15_LORA)
    yaml_path = tmp_path / "ComfyUI" / "extra_model_paths.yaml"
    yaml_path.write_text(EXTRA_YAML.replace("{shared}", str(shared)), encoding="utf-8")
    folders = parse_extra_model_paths(yaml_path.read_text(), yaml_path.parent)
    assert folders["loras"] == [
        tmp_path / "webui" / "models" / "Lora",
        tmp_path / "webui" / "models" / "LyCORIS",
    ]
    assert folders["clip"] == [shared / "text"]
    assert "base_path" not in folders and "is_default" not in folders
    inventory = scan_models(models, extra_paths_yaml=yaml_path)
    assert "sd3.safetensors" in inventory.names("checkpoints")
    assert inventory.find("checkpoints", "sd3.safetensors").family == "sd3"  # type: ignore[union-attr]
    assert inventory.names("loras") == ["ly.safetensors", "style.safetensors"]
    assert shared / "text" in inventory.searched["text_encoders"]


def test_unreadable_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_extra_model_paths("a111:\n    base_path: x\n    just words\n", tmp_path, "e.yaml")
    assert caught.value.where == "e.yaml:3"  # the line without its colon
    assert "not valid YAML" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        parse_extra_model_paths("checkpoints: models\n", tmp_path, "e.yaml")
    assert caught.value.where == "e.yaml:1"


def _paths(text: str, yaml_dir: Path) -> dict[str, list[Path]]:
    return parse_extra_model_paths(text, yaml_dir, "extra_model_paths.yaml")


def test_extra_paths_read_quoted_scalars_as_yaml_does(tmp_path: Path) -> None:
    # A hand-written reader kept the backslashes and the quote mark; YAML does not.
    text = (
        "win:\n"
        '    base_path: "C:\\\\AI\\\\webui"\n'
        "    checkpoints: 'it''s here'\n"
        '    vae: "tab\\there"   # comment after a quoted value\n'
        "    loras: plain # comment\n"
    )
    folders = _paths(text, tmp_path)
    base = Path(os.path.normpath(os.path.join(os.path.abspath(tmp_path), "C:\\AI\\webui")))
    assert folders["checkpoints"] == [base / "it's here"]
    assert folders["vae"] == [base / "tab\there"]
    assert folders["loras"] == [base / "plain"]


def test_extra_paths_read_flow_maps_and_anchors(tmp_path: Path) -> None:
    text = (
        "shared: {base_path: /srv/models, checkpoints: ckpt, loras: lora}\n"
        "copy:\n"
        "    <<: {base_path: /mnt/x}\n"
        "    vae: v\n"
    )
    folders = _paths(text, tmp_path)
    assert folders == {
        "checkpoints": [Path("/srv/models/ckpt")],
        "loras": [Path("/srv/models/lora")],
        "vae": [Path("/mnt/x/v")],
    }


def test_extra_paths_multi_line_values_split_on_newlines(tmp_path: Path) -> None:
    text = (
        "a:\n"
        "    base_path: /base\n"
        "    loras: |\n"
        "        one\n"
        "\n"
        "        two/sub\n"
        '    vae: "first\\nsecond"\n'
        "    embeddings: /absolute/stays\n"
    )
    folders = _paths(text, tmp_path)
    assert folders["loras"] == [Path("/base/one"), Path("/base/two/sub")]
    assert folders["vae"] == [Path("/base/first"), Path("/base/second")]
    assert folders["embeddings"] == [Path("/absolute/stays")]


def test_extra_paths_base_path_is_relative_to_the_file(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working folder must not matter
    yaml_dir = tmp_path / "ComfyUI"
    monkeypatch.setenv("MODELS_ROOT", str(tmp_path / "env"))
    text = (
        "rel:\n    base_path: ../webui\n    checkpoints: models/sd\n"
        "nobase:\n    loras: my_loras\n"
        "home:\n    base_path: ~/m\n    vae: v\n"
        "env:\n    base_path: $MODELS_ROOT/x\n    clip: c\n"
        "empty:\n"
    )
    folders = _paths(text, yaml_dir)
    assert folders["checkpoints"] == [tmp_path / "webui" / "models" / "sd"]
    assert folders["loras"] == [yaml_dir / "my_loras"]
    assert folders["vae"] == [Path.home() / "m" / "v"]
    assert folders["clip"] == [tmp_path / "env" / "x" / "c"]


def test_is_default_folders_come_first_as_in_comfyui(tmp_path: Path) -> None:
    models = tmp_path / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "same.safetensors", SD15_CHECKPOINT)
    write_safetensors(tmp_path / "first" / "same.safetensors", SDXL_CHECKPOINT)
    write_safetensors(tmp_path / "last" / "same.safetensors", SD3_CHECKPOINT)
    yaml_path = tmp_path / "ComfyUI" / "extra_model_paths.yaml"
    yaml_path.write_text(
        f"d:\n    is_default: true\n    checkpoints: {tmp_path / 'first'}\n"
        f"n:\n    checkpoints: {tmp_path / 'last'}\n",
        encoding="utf-8",
    )
    inventory = scan_models(models, extra_paths_yaml=yaml_path, folders=["checkpoints"])
    assert inventory.searched["checkpoints"] == [
        tmp_path / "first",
        models / "checkpoints",
        tmp_path / "last",
    ]
    assert inventory.find("checkpoints", "same.safetensors").family == "sdxl"  # type: ignore[union-attr]
    entries = load_extra_model_paths(yaml_path)
    assert [e.is_default for e in entries] == [True, False]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a:\n    checkpoints: [x, y\n", 3, "not valid YAML"),
        ("a:\n  b: 1\n c: 2\n", 3, "not valid YAML"),
        ("a:\n    checkpoints: 'unclosed\n", 2, "not valid YAML"),
        ("a:\n    checkpoints:\n", 2, "`a.checkpoints` must be a path"),
        ("a:\n    base_path: [1]\n    vae: v\n", 2, "`a.base_path` must be a folder"),
        ("- a\n- b\n", 1, "the top level must be sections"),
    ],
)
def test_malformed_extra_paths_name_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    yaml_path = tmp_path / "extra_model_paths.yaml"
    yaml_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        scan_models(None, extra_paths_yaml=yaml_path)
    assert caught.value.where == f"{yaml_path}:{line}"
    assert words in caught.value.message
    assert "Traceback" not in caught.value.paragraph()


def test_missing_or_empty_extra_paths_add_nothing(tmp_path: Path) -> None:
    assert load_extra_model_paths(tmp_path / "absent.yaml") == []
    (tmp_path / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    assert load_extra_model_paths(tmp_path / "empty.yaml") == []
