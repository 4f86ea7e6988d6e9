"""Newer /object_info fields in the preflight: ``deprecated`` is a warning naming the node (id,
class, title), ``api_node`` (a paid online service) is refused unless the user, never a
project, set ``comfyui.allow_api_nodes``. The flags are those of ComfyUI server.py @ 5e14d797
``node_info`` (and V3's NodeInfoV1, which always says ``api_node``); the recorded 0.3.64
/object_info already carries them, the emulator's ``current`` profile too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from storycore.comfyui import ClientTimeouts, ComfyUIClient
from storycore.config import resolve_settings
from storycore.errors import ConfigError
from storycore.workflows import (
    BuiltGraph,
    GraphOptions,
    NodeCatalog,
    build_panel_graph,
    preflight_graphs,
)

from ._support import MODELS, load_reference_json, object_info_all, panel


def _graph_with(built: BuiltGraph) -> BuiltGraph:
    """The panel's graph plus a deprecated node and a paid API node, each with a title."""
    graph: dict[str, Any] = dict(built.graph)
    graph["90"] = {
        "class_type": "ControlNetApply",
        "inputs": {},
        "_meta": {"title": "Old pose control"},
    }
    graph["91"] = {
        "class_type": "OpenAIDalle3",
        "inputs": {"prompt": "a lighthouse"},
        "_meta": {"title": "Paid backdrop"},
    }
    return replace(built, graph=graph)


def _mine(report: Any) -> list[tuple[str, str, str | None, str | None, str]]:
    return [
        (p.code, p.severity, p.node_id, p.class_type, p.message)
        for p in report.problems
        if p.code in ("deprecated_node", "paid_api_node")
    ]


def test_node_flags_are_parsed_from_the_recorded_object_info() -> None:
    catalog = NodeCatalog(load_reference_json("object_info.json"))
    assert catalog["ControlNetApply"].deprecated
    assert catalog["OpenAIDalle3"].api_node and not catalog["KSampler"].api_node
    assert catalog["LoadImageOutput"].experimental
    assert not catalog["KSampler"].deprecated and not catalog["KSampler"].dev_only


def test_flags_only_count_when_true_and_aliases_are_bounded() -> None:
    catalog = NodeCatalog(
        {
            "Odd": {"deprecated": "yes", "api_node": 1, "search_aliases": ["x" * 500] * 100},
            "V3": {"api_node": False, "dev_only": True, "search_aliases": "not a list"},
        }
    )
    odd, v3 = catalog["Odd"], catalog["V3"]
    assert not odd.deprecated and not odd.api_node
    assert len(odd.search_aliases) == 32 and len(odd.search_aliases[0]) == 100
    assert v3.dev_only and not v3.api_node and v3.search_aliases == ()


@pytest.mark.parametrize("allow", [False, True])
def test_deprecated_warns_and_paid_api_nodes_are_refused(allow: bool) -> None:
    catalog = NodeCatalog(object_info_all())
    built = build_panel_graph(panel(shot_id="s1"), GraphOptions(), node_classes=catalog)
    report = preflight_graphs(
        [_graph_with(built)], catalog, MODELS, check_files=False, allow_api_nodes=allow
    )
    found = _mine(report)
    deprecated = [f for f in found if f[0] == "deprecated_node"]
    assert deprecated == [
        (
            "deprecated_node",
            "warning",
            "90",
            "ControlNetApply",
            "ControlNetApply, titled 'Old pose control', is deprecated on this server: a later "
            "ComfyUI may drop it",
        )
    ]
    paid = [f for f in found if f[0] == "paid_api_node"]
    if allow:
        assert paid == []
    else:
        assert [(c, s, n, k) for c, s, n, k, _ in paid] == [
            ("paid_api_node", "error", "91", "OpenAIDalle3")
        ]
        assert "'Paid backdrop'" in paid[0][4] and "bills your comfy.org account" in paid[0][4]
        problem = next(p for p in report.errors if p.code == "paid_api_node")
        assert "comfyui.allow_api_nodes = true" in (problem.hint or "")
        assert problem.paragraph().startswith("shot s1, node 91 (OpenAIDalle3): ")
    # the panel's own graph uses neither
    clean = preflight_graphs([built], catalog, MODELS, check_files=False)
    assert _mine(clean) == []


async def test_against_the_emulators_current_object_info() -> None:
    from storycore.emulator import Emulator, EmulatorOptions

    async with (
        Emulator(EmulatorOptions(profile="current")) as emu,
        ComfyUIClient(emu.url, ClientTimeouts(connect=2, read=5)) as client,
    ):
        info = await client.object_info()
    assert info is not None and "search_aliases" in info["KSampler"]  # today's shape
    catalog = NodeCatalog(info)
    built = build_panel_graph(panel(shot_id="s1"), GraphOptions(), node_classes=catalog)
    report = preflight_graphs([_graph_with(built)], catalog, MODELS, check_files=False)
    assert [(c, n) for c, _, n, _, _ in _mine(report)] == [
        ("deprecated_node", "90"),
        ("paid_api_node", "91"),
    ]


def test_only_the_user_may_allow_paid_api_nodes(tmp_path: Path) -> None:
    project = tmp_path / "received"
    project.mkdir()
    (project / "storycore.toml").write_text("[comfyui]\nallow_api_nodes = true\n")
    with pytest.raises(ConfigError) as info:
        resolve_settings(project_dir=project, env={}, read_user_config=False)
    assert "comfyui.allow_api_nodes" in info.value.paragraph()
    assert "paid online services" in info.value.paragraph()
    user = tmp_path / "user.toml"
    user.write_text("[comfyui]\nallow_api_nodes = true\n")
    allowed = resolve_settings(user_config=user, env={})
    assert allowed.settings.comfyui.allow_api_nodes is True
    default = resolve_settings(env={}, read_user_config=False).settings
    assert default.comfyui.allow_api_nodes is False
