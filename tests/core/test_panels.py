"""Panels: prompts, sizes, stable seeds (identical across processes), references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storycore.config import resolve_settings
from storycore.errors import ProjectError
from storycore.panels import derive_shot_seed, panels_from_project, render_size
from storycore.project import load_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def _settings(**cli: object):  # type: ignore[no-untyped-def]
    return resolve_settings(env={}, read_user_config=False, cli=cli).settings


def test_example_panels() -> None:
    project = load_project(EXAMPLE)
    panels = panels_from_project(project, _settings())
    first = panels[0]
    assert first.shot_id == "shot_01"
    assert (first.width, first.height) == (768, 432)
    assert (first.target_width, first.target_height) == (1920, 1080)
    assert first.seed == 42 and first.seed_source == "shot"
    assert "lighthouse" in first.positive and "golden hour" in first.positive
    assert "light from the left" in first.positive  # coherence anchor
    assert first.negative.startswith("low quality")
    derived = panels[1]
    assert derived.seed_source == "derived"
    assert derived.seed == derive_shot_seed(project.global_seed, "shot_02")


def test_seed_policies() -> None:
    project = load_project(EXAMPLE)
    derived = panels_from_project(project, _settings(**{"render.seed_policy": "derived"}))
    assert derived[0].seed == derive_shot_seed(project.global_seed, "shot_01")
    glob = panels_from_project(project, _settings(**{"render.seed_policy": "global"}))
    assert {p.seed for p in glob} == {project.global_seed}


def test_shot_selection_and_unknown_shot() -> None:
    project = load_project(EXAMPLE)
    chosen = panels_from_project(project, _settings(), ["shot_04", "shot_02", "shot_04"])
    assert [p.shot_id for p in chosen] == ["shot_02", "shot_04"]
    with pytest.raises(ProjectError, match="has no shot 'shot_99'"):
        panels_from_project(project, _settings(), ["shot_99"])


def test_seeds_are_identical_in_two_separate_processes() -> None:
    code = (
        "import json,sys; from pathlib import Path;"
        "from storycore.config import resolve_settings;"
        "from storycore.panels import panels_from_project;"
        "from storycore.project import load_project;"
        "s=resolve_settings(env={}, read_user_config=False).settings;"
        f"p=load_project(Path({str(EXAMPLE)!r}));"
        "print(json.dumps([x.seed for x in panels_from_project(p, s)]))"
    )
    runs = []
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
        )
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == len(runs[0])


@given(
    w=st.integers(16, 8192),
    h=st.integers(16, 8192),
    long_side=st.integers(64, 2048),
    multiple=st.sampled_from([8, 16, 64]),
)
def test_render_size_is_a_multiple_and_within_bounds(
    w: int, h: int, long_side: int, multiple: int
) -> None:
    (rw, rh), target = render_size(f"{w}x{h}", None, long_side, multiple)
    assert target == (w, h)
    assert rw % multiple == 0 and rh % multiple == 0
    assert max(rw, rh) <= max(long_side, max(w, h) if max(w, h) < long_side else 0) + multiple
    assert rw >= multiple and rh >= multiple


@given(a=st.integers(0, 2**31 - 1), shot=st.text(min_size=1, max_size=20))
def test_derived_seed_is_stable_and_in_range(a: int, shot: str) -> None:
    assert derive_shot_seed(a, shot) == derive_shot_seed(a, shot)
    assert 0 <= derive_shot_seed(a, shot) < 2**31


RENDER_DEFAULTS = """
[render]
steps = 33
cfg = 3.5
sampler = "dpmpp_2m"
scheduler = "karras"
checkpoint = "toml.safetensors"
negative_prompt = "toml negative"
img2img_denoise = 0.4
render_long_side = 512
template = "toml_template"
"""

OWN = {
    "seed": 99,
    "aspect_ratio": "1:1",
    "resolution": None,
    "steps": 12,
    "cfg_scale": 9.0,
    "sampler": "euler_ancestral",
    "scheduler": "exponential",
    "checkpoint": "shot.safetensors",
    "negative_prompt": "shot negative",
    "denoise": 0.5,
}


def _precedence_project(tmp_path: Path):  # type: ignore[no-untyped-def]
    from storycore.project import init_project

    root = init_project("Precedence", tmp_path)
    (root / "storycore.toml").write_text(RENDER_DEFAULTS)
    board = json.loads((root / "storyboard.json").read_text())
    own, bare, img2img = board["shots"]
    own["prompt_modules"]["technical"] = dict(OWN)
    own["template"] = "shot_template"
    bare["prompt_modules"]["technical"] = {"sampler": ""}  # empty text gives way to the default
    img2img["prompt_modules"]["technical"] = {}
    img2img["references"] = {"init_image": "rough.png"}
    (root / "storyboard.json").write_text(json.dumps(board))
    project = load_project(root)
    resolved = resolve_settings(project_dir=root, env={}, read_user_config=False)
    return root, project, resolved


def test_a_shots_own_values_win_over_the_render_defaults(tmp_path: Path) -> None:
    _, project, resolved = _precedence_project(tmp_path)
    own, bare, img2img = panels_from_project(project, resolved.settings)
    # The shot's own value wins, for every value a shot can set.
    assert (own.steps, own.cfg, own.sampler, own.scheduler) == (
        12,
        9.0,
        "euler_ancestral",
        "exponential",
    )
    assert (own.checkpoint, own.negative, own.denoise, own.seed) == (
        "shot.safetensors",
        "shot negative",
        0.5,
        99,
    )
    assert own.template == "shot_template"
    # Its aspect ratio wins over project.json's target_resolution (1920x1080).
    assert (own.width, own.height) == (512, 512)
    # Without them: [render] from storycore.toml, then project.json's config for the size.
    assert (bare.steps, bare.cfg, bare.sampler, bare.scheduler) == (33, 3.5, "dpmpp_2m", "karras")
    assert (bare.checkpoint, bare.negative, bare.denoise) == (
        "toml.safetensors",
        "toml negative",
        1.0,
    )
    assert (bare.width, bare.height) == (512, 288) and bare.template == "toml_template"
    assert bare.seed_source == "derived"
    assert img2img.denoise == 0.4


def test_panel_sources_say_where_each_value_came_from(tmp_path: Path) -> None:
    from storycore.panels import panel_sources

    root, project, resolved = _precedence_project(tmp_path)
    panels = panels_from_project(project, resolved.settings)
    table = [
        panel_sources(project, s, p, resolved) for s, p in zip(project.shots, panels, strict=True)
    ]
    fields = {
        "size",
        "seed",
        "steps",
        "cfg",
        "sampler",
        "scheduler",
        "checkpoint",
        "negative_prompt",
        "denoise",
        "template",
    }
    for sources, panel in zip(table, panels, strict=True):
        assert set(sources) == fields
        # Each value shown is the panel's own.
        assert sources["steps"].value == panel.steps and sources["cfg"].value == panel.cfg
        assert sources["sampler"].value == panel.sampler
        assert sources["scheduler"].value == panel.scheduler
        assert sources["checkpoint"].value == panel.checkpoint
        assert sources["negative_prompt"].value == panel.negative
        assert sources["denoise"].value == panel.denoise and sources["seed"].value == panel.seed
        assert sources["size"].value == f"{panel.width}x{panel.height}"
        assert sources["template"].value == panel.template
    own, bare, img2img = table
    assert {k: v.source for k, v in own.items()} == dict.fromkeys(fields, "shot")
    assert own["steps"].detail == "prompt_modules.technical.steps"
    assert own["size"].detail.startswith("prompt_modules.technical.aspect_ratio")
    toml = f"project {root / 'storycore.toml'}"
    for key, dotted in [
        ("steps", "render.steps"),
        ("cfg", "render.cfg"),
        ("sampler", "render.sampler"),
        ("scheduler", "render.scheduler"),
        ("checkpoint", "render.checkpoint"),
        ("negative_prompt", "render.negative_prompt"),
        ("template", "render.template"),
    ]:
        assert (bare[key].source, bare[key].detail) == ("project default", f"{dotted} from {toml}")
    assert bare["size"].source == "project default"
    assert bare["size"].detail.startswith("project.json config.target_resolution")
    assert bare["denoise"].source == "built-in default"
    assert bare["seed"].source == "built-in default" and "global_seed" in bare["seed"].detail
    assert img2img["denoise"].source == "project default"
    assert img2img["denoise"].detail == f"render.img2img_denoise from {toml}"


def test_built_in_defaults_are_named_as_such(tmp_path: Path) -> None:
    from storycore.panels import panel_sources

    _, project, resolved = _precedence_project(tmp_path)
    (project.root / "storycore.toml").unlink()
    resolved = resolve_settings(
        project_dir=project.root,
        env={"STORYCORE_RENDER__SEED_POLICY": "global"},
        read_user_config=False,
    )
    shot = project.shots[1]
    panel = panels_from_project(project, resolved.settings, [shot.shot_id])[0]
    sources = panel_sources(project, shot, panel, resolved)
    assert (sources["steps"].value, sources["steps"].source) == (20, "built-in default")
    assert sources["steps"].detail == "render.steps"
    assert sources["seed"].source == "project default"
    assert "environment STORYCORE_RENDER__SEED_POLICY" in sources["seed"].detail
    assert sources["seed"].value == project.global_seed
