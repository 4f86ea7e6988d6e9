"""Takes and profiles, the pure parts: which takes a run plans, which render becomes active,
panel keys, seeds, and what a profile overrides (the shot's own values included)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from storycore._profiles import profile_names, resolve_profile
from storycore.config import resolve_settings
from storycore.engine._takes import ActiveTakes, TakeRequest, plan_takes, run_order, shown_takes
from storycore.errors import ConfigError
from storycore.manifest import AssetRecord
from storycore.panels import MAX_SEED, Panel, panel_key, panels_from_project, split_key, take_seed
from storycore.project import load_project
from tests.engine.conftest import make_project


def _record(shot: str, render: int, take: int = 1, **values: object) -> AssetRecord:
    base: dict[str, object] = {
        "asset_id": f"{shot}_v1_r{render:03d}",
        "shot_id": shot,
        "version": 1,
        "render": render,
        "path": f"assets/images/generated/{shot}/{shot}_v1_r{render:03d}.png",
        "sha256": "0" * 64,
        "size": 1,
        "width": 8,
        "height": 8,
        "placeholder": False,
        "created_at": "",
        "take": take,
        "workflow_sha256": f"key-{shot}-{take}",
        "seed": 100 + take - 1,
    }
    base.update(values)
    return AssetRecord.from_dict(base)


@pytest.fixture
def panels(tmp_path: Path) -> list[Panel]:
    root = make_project(tmp_path, 3)
    settings = resolve_settings(env={}, read_user_config=False).settings
    return panels_from_project(load_project(root), settings)


def test_keys_and_seeds() -> None:
    assert panel_key("S01", 1) == "S01" and panel_key("S01", 3) == "S01#3"
    assert split_key("S01#3") == ("S01", 3) and split_key("S01") == ("S01", 1)
    assert split_key("S01#x") == ("S01#x", 1) and split_key("#3") == ("#3", 1)
    assert take_seed(7, 1) == 7 and take_seed(7, 3) == 9
    assert take_seed(MAX_SEED, 2) == 0  # wraps, never past what a KSampler takes


def test_plan_takes_numbers_takes_and_new_takes(panels: list[Panel]) -> None:
    plan = plan_takes(panels[:1], [], {}, TakeRequest(takes=3))
    assert [p.key for p in plan.panels] == ["shot_01", "shot_01#2", "shot_01#3"]
    assert [p.seed for p in plan.panels] == [take_seed(panels[0].seed, k) for k in (1, 2, 3)]
    made = [_record("shot_01", 1, 1), _record("shot_01", 2, 4), _record("shot_01", 3, 2)]
    more = plan_takes(panels[:1], made, {}, TakeRequest(new_takes=2))
    assert [p.take for p in more.panels] == [5, 6]  # after the highest take, not the count


def test_plan_takes_rejected_and_approved(panels: list[Panel]) -> None:
    made = [
        _record("shot_01", 1, rejected=True),
        _record("shot_02", 1),
        _record("shot_02", 2, 2, approved=True, seed=555),
    ]
    active = {"shot_01": "shot_01_v1_r001", "shot_02": "shot_02_v1_r001"}
    rejected = plan_takes(panels, made, active, TakeRequest(rejected=True))
    assert [p.key for p in rejected.panels] == ["shot_01#2", "shot_03"]
    assert rejected.skipped == {"shot_02": "its active take is not rejected"}
    promote = plan_takes(panels, made, active, TakeRequest(approved=True))
    assert [(p.key, p.seed) for p in promote.panels] == [("shot_02#2", 555)]  # its own seed
    assert set(promote.skipped) == {"shot_01", "shot_03"}
    order = run_order(panels, promote.panels, promote.skipped)
    assert order == ["shot_01", "shot_02#2", "shot_03"]


def test_shown_takes_are_looked_up_only_when_not_rendered(panels: list[Panel]) -> None:
    made = [_record("shot_01", 1, 1), _record("shot_01", 2, 2)]
    plan = plan_takes(panels[:1], made, {}, TakeRequest(new_takes=1))
    shown = shown_takes(panels[:1], plan.panels, made, {"shot_01": "shot_01_v1_r002"})
    assert [(p.key, p.seed) for p in shown] == [("shot_01#2", take_seed(panels[0].seed, 2))]
    again = plan_takes(panels[:1], made, {}, TakeRequest(takes=2))
    assert shown_takes(panels[:1], again.panels, made, {"shot_01": "shot_01_v1_r002"}) == []


def test_active_takes_keeps_a_current_pick_and_prefers_the_lowest_new_take() -> None:
    picked = _record("S", 2, 2)
    chooser = ActiveTakes({"S": {"key-S-1", "key-S-2", "key-S-3"}})
    assert not chooser.should_activate(picked, _record("S", 3, 3))  # the pick stays
    assert chooser.should_activate(picked, _record("S", 4, 2))  # the same take made again
    stale = _record("S", 1, 1, workflow_sha256="old")
    chooser = ActiveTakes({"S": {"key-S-1", "key-S-2"}})
    two, one = _record("S", 5, 2), _record("S", 6, 1)
    assert chooser.should_activate(stale, two)  # the stale one gives way
    assert chooser.should_activate(two, one)  # take 1 landed later: it wins
    assert not chooser.should_activate(one, _record("S", 7, 2))
    assert chooser.should_activate(None, _record("T", 1, 5))
    assert chooser.should_activate(_record("S", 1, 1, rejected=True), _record("S", 8, 9))
    placeholder = _record("S", 1, 1, placeholder=True)
    assert chooser.should_activate(placeholder, _record("S", 9, 2))


def test_profiles_override_the_shot_and_project_tables_extend_them(
    tmp_path: Path,
    panels: list[Panel],
) -> None:
    root = make_project(tmp_path / "p", 1)
    (root / "storycore.toml").write_text(
        '[profiles.draft]\nsteps = 4\n[profiles.look]\ncfg = 2.5\nsampler = "dpmpp_2m"\n'
    )
    settings = resolve_settings(project_dir=root, env={}, read_user_config=False).settings
    assert profile_names(settings) == ["draft", "final", "look"]
    draft = resolve_profile(settings, "draft")
    assert (draft.steps, draft.render_long_side) == (4, 512)  # the built-in's size is kept
    board = (root / "storyboard.json").read_text().replace('"steps": null', '"steps": 33')
    (root / "storyboard.json").write_text(board)
    project = load_project(root)
    (own,) = panels_from_project(project, settings)
    (fast,) = panels_from_project(project, settings, profile=("draft", draft))
    assert own.steps == 33 and fast.steps == 4 and fast.profile == "draft"
    assert max(fast.width, fast.height) == 512 and own.profile is None
    (look,) = panels_from_project(
        project, settings, profile=("look", resolve_profile(settings, "look"))
    )
    assert (look.cfg, look.sampler, look.steps) == (2.5, "dpmpp_2m", 33)
    assert replace(look, profile=None, cfg=own.cfg, sampler=own.sampler) == own
    with pytest.raises(ConfigError, match="there is no render profile 'lok'"):
        resolve_profile(settings, "lok")
