"""Golden graphs: each variant is byte-stable, matches its golden file and passes the preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storycore.panels import ControlImage, LoraSpec, Panel
from storycore.workflows import (
    BuiltGraph,
    GraphOptions,
    build_panel_graph,
    load_template,
    validate_graph,
)

from ._support import EXAMPLES_DIR, MODELS, catalog_all, check_golden, panel

REF = Path("refs/keeper.png")


def _controls(*kinds: str, **kw: Any) -> tuple[ControlImage, ...]:
    return tuple(ControlImage(kind, Path(f"guides/{kind}.png"), **kw) for kind in kinds)  # type: ignore[arg-type]


VARIANTS: dict[str, tuple[Panel, GraphOptions]] = {
    "txt2img": (panel(), GraphOptions()),
    "img2img": (panel(init_image=Path("frames/s010_rough.png")), GraphOptions()),
    "img2img_denoise": (
        panel(init_image=Path("frames/s010_rough.png"), denoise=0.45),
        GraphOptions(),
    ),
    "lora_vae": (
        panel(
            loras=(
                LoraSpec("ink_style.safetensors", 0.8, 0.6),
                LoraSpec("film_grain.safetensors", 0.5, 0.5),
            ),
            vae="vae-ft-mse-840000-ema-pruned.safetensors",
        ),
        GraphOptions(),
    ),
    "controlnet_pose": (panel(controls=_controls("pose")), GraphOptions()),
    "controlnet_depth": (panel(controls=_controls("depth")), GraphOptions()),
    "controlnet_lineart": (panel(controls=_controls("lineart")), GraphOptions()),
    "controlnet_canny": (panel(controls=_controls("canny")), GraphOptions()),
    "controlnet_stacked": (
        panel(
            controls=(
                ControlImage("pose", Path("guides/pose.png"), strength=1.0),
                ControlImage("depth", Path("guides/depth.png"), 0.6, 0.1, 0.8),
            )
        ),
        GraphOptions(controlnet_strength=0.7),
    ),
    "controlnet_preprocessed": (
        panel(controls=_controls("pose", "depth", "lineart", "canny", preprocess=True)),
        GraphOptions(depth_preprocessor="DepthAnythingV2Preprocessor"),
    ),
    "ipadapter_unified": (panel(references=(REF,)), GraphOptions()),
    "ipadapter_files_multi": (
        panel(references=(REF, Path("refs/lighthouse.jpg"))),
        GraphOptions(ipadapter_mode="files", ipadapter_noise=0.25, ipadapter_weight=0.6),
    ),
    "everything": (
        panel(
            loras=(LoraSpec("ink_style.safetensors"),),
            references=(REF,),
            controls=_controls("pose", "canny"),
            init_image=Path("frames/s010_rough.png"),
        ),
        GraphOptions(),
    ),
}


def _build(name: str) -> BuiltGraph:
    p, options = VARIANTS[name]
    return build_panel_graph(p, options, node_classes=catalog_all())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_matches_golden_and_passes_preflight(name: str) -> None:
    built = _build(name)
    check_golden(name, built.graph)
    assert validate_graph(built.graph, catalog_all(), MODELS, shot_id="s010") == []


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_panel_gives_byte_identical_json(name: str) -> None:
    first, second = _build(name), _build(name)
    assert first.json_bytes() == second.json_bytes()
    assert first.sha256 == second.sha256
    assert len(first.sha256) == 64


def test_every_upload_placeholder_is_listed_once() -> None:
    built = _build("everything")
    roles = sorted((u.role, u.local_path.name) for u in built.uploads)
    assert roles == [
        ("control", "canny.png"),
        ("control", "pose.png"),
        ("init", "s010_rough.png"),
        ("reference", "keeper.png"),
    ]
    for upload in built.uploads:
        assert built.graph[upload.node_id]["class_type"] == "LoadImage"
        assert built.graph[upload.node_id]["inputs"][upload.input_name] == upload.placeholder


def _template_graph(binding: str, p: Panel) -> BuiltGraph:
    template = load_template(EXAMPLES_DIR / binding, catalog_all())
    return build_panel_graph(
        p, GraphOptions(), templates={template.name: template}, node_classes=catalog_all()
    )


def test_template_api_golden() -> None:
    p = panel(template="sdxl-character", width=1216, height=832, references=(REF,))
    built = _template_graph("sdxl_character.binding.toml", p)
    check_golden("template_api", built.graph)
    assert built.template == "sdxl-character"
    assert validate_graph(built.graph, catalog_all(), MODELS, shot_id="s010") == []
    assert [u.role for u in built.uploads] == ["reference"]


def test_template_ui_golden() -> None:
    p = panel(template="sd15-pose", controls=_controls("pose"))
    built = _template_graph("sd15_pose.binding.json", p)
    check_golden("template_ui", built.graph)
    assert validate_graph(built.graph, catalog_all(), MODELS, shot_id="s010") == []
    assert built.graph["9"]["inputs"]["filename_prefix"] == "storycore/lighthouse/s010/v1"
