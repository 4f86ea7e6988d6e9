"""The rules behind the project-trust attacks, in process: every setting is classified, each
forbidden one is refused by name from a project file and accepted from the user's own layers,
paths are judged by where they really lead, [trust] is never taken from a project."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from storycore._project_trust import (
    PROJECT_SETTINGS,
    USER_ONLY_SETTINGS,
    outside_reach,
    server_trusted,
)
from storycore.config import Settings, resolve_settings
from storycore.errors import ConfigError, OutsideProjectError, TemplateError
from storycore.panels import panels_from_project
from storycore.project import load_project
from storycore.workflows import load_template
from tests.security._trust_support import edit_shot, received_project, secret_png


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            names += _fields(sub, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


def _covered(names: Any, dotted: str) -> bool:
    return any(dotted == n or dotted.startswith(n + ".") for n in names)


@pytest.mark.parametrize("dotted", _fields(Settings))
def test_every_setting_says_whether_a_project_may_set_it(dotted: str) -> None:
    """A new setting must be put in USER_ONLY_SETTINGS (with why) or PROJECT_SETTINGS
    (storycore/_project_trust.py): one that picks a program, its arguments, a folder outside
    the project, a server or a credential is the user's only."""
    user_only, project = _covered(USER_ONLY_SETTINGS, dotted), _covered(PROJECT_SETTINGS, dotted)
    assert user_only != project, f"{dotted}: classify it in storycore/_project_trust.py"


def _project_value(dotted: str) -> str:
    values = {
        "comfyui.extra_args": '["--x"]',
        "comfyui.gpu": "false",
        "comfyui.vram_mode": '"low"',
        "comfyui.max_response_mb": "{ other = 1 }",
        "backends": '["http://a:8188"]',
        "trust": '{ project_servers = ["http://a:8188"] }',
        "trust.project_servers": '["http://a:8188"]',
        "trust.reference_folders": '["/"]',
    }
    for number in ("port", "cuda_device", "prometheus_port"):
        if dotted.endswith(number):
            return "9000"
    if dotted.endswith(("_gb", "_mb", "deadline")):
        return "1.0"
    return values.get(dotted, '"/tmp/x"')


@pytest.mark.parametrize(
    "dotted", sorted(k for k in _fields(Settings) if _covered(USER_ONLY_SETTINGS, k))
)
def test_each_user_only_setting_is_refused_from_a_project_by_name(
    tmp_path: Path, dotted: str
) -> None:
    head, _, key = dotted.rpartition(".")
    line = f"{key} = {_project_value(dotted)}\n"
    root = received_project(tmp_path, f"[{head}]\n{line}" if head else line)
    with pytest.raises(ConfigError) as caught:
        resolve_settings(project_dir=root, env={}, read_user_config=False)
    assert caught.value.exit_code == 2
    assert f"`{dotted}`" in caught.value.message
    assert caught.value.where == f"project {root / 'storycore.toml'}"
    assert "storycore config path" in (caught.value.hint or "")
    # and the environment (the user's own) may still set it
    env = {
        "backends": "http://a:8188",
        "trust.project_servers": "a",
        "trust.reference_folders": "/",
    }
    if dotted in env:
        variable = "STORYCORE_" + dotted.upper().replace(".", "__")
        resolve_settings(env={variable: env[dotted]}, read_user_config=False)


def test_trust_is_taken_from_the_users_layers_only(tmp_path: Path) -> None:
    root = received_project(tmp_path, 'backends = ["http://farm:8188"]\n')
    env = {"STORYCORE_TRUST__PROJECT_SERVERS": "farm, http://other:9"}
    settings = resolve_settings(project_dir=root, env=env, read_user_config=False).settings
    assert [b.url for b in settings.backends] == ["http://farm:8188"]
    with pytest.raises(ConfigError, match="project_servers"):
        resolve_settings(
            project_dir=root,
            env={"STORYCORE_TRUST__PROJECT_SERVERS": "farm:1"},
            read_user_config=False,
        )
    bad = tmp_path / "bad.toml"
    bad.write_text('[trust]\nproject_servers = ["ftp://x"]\nreference_folders = ["rel"]\n')
    with pytest.raises(ConfigError) as caught:
        resolve_settings(project_dir=root, user_config=bad, env={})
    assert "trust.project_servers" in caught.value.message
    assert "trust.reference_folders" in caught.value.message and "absolute" in caught.value.message


@pytest.mark.parametrize(
    ("url", "trusted", "expected"),
    [
        ("http://farm:8188", ["http://farm:8188/"], True),
        ("http://FARM:8188/", ["http://farm:8188"], True),
        ("http://farm:8189", ["http://farm:8188"], False),
        ("https://farm:8188", ["http://farm:8188"], False),
        ("http://farm", ["http://farm:80"], True),
        ("http://farm:1234", ["farm"], True),
        ("http://farm:1234", ["farm:8188"], False),
        ("http://farm.evil:1234", ["farm"], False),
        ("http://[::1]:8188", ["::1"], False),
        ("http://[::1]:8188", ["[::1]:8188"], True),
        ("https://studio/comfy", ["https://studio/comfy"], True),
        ("https://studio/other", ["https://studio/comfy"], False),
    ],
)
def test_which_servers_a_trust_entry_covers(url: str, trusted: list[str], expected: bool) -> None:
    assert server_trusted(url, trusted) is expected


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_paths_are_judged_by_where_they_really_lead(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "refs").mkdir(parents=True)
    outside = secret_png(tmp_path / "x.png")
    (root / "refs" / "in.png").write_bytes(b"x")
    (root / "refs" / "out.png").symlink_to(outside)
    (root / "linked").symlink_to(tmp_path)
    (root / "refs" / "inner.png").symlink_to(root / "refs" / "in.png")
    assert outside_reach(root, root / "refs" / "in.png") is None
    assert outside_reach(root, root / "refs" / "inner.png") is None  # a link that stays inside
    assert outside_reach(root, root / "refs" / "out.png") == (
        str(outside),
        root / "refs" / "out.png",
    )
    assert outside_reach(root, root / "linked" / "x.png") == (str(outside), root / "linked")
    assert outside_reach(root, root / ".." / "x.png") == (str(outside), None)
    assert outside_reach(root, outside, [tmp_path]) is None


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
@pytest.mark.parametrize(
    ("references", "field"),
    [
        ({"characters": ["assets/ok.png", "../secret.png"]}, "references.characters[1]"),
        ({"controls": [{"kind": "pose", "path": "SECRET"}]}, "references.controls[0].path"),
        ({"init_image": "assets/link.png"}, "references.init_image"),
    ],
)
def test_every_kind_of_reference_image_is_checked(
    tmp_path: Path, references: dict[str, Any], field: str
) -> None:
    secret = secret_png(tmp_path / "secret.png")
    root = received_project(tmp_path)
    secret_png(root / "assets" / "ok.png")
    (root / "assets" / "link.png").symlink_to(secret)
    if "controls" in references:
        references["controls"][0]["path"] = str(secret)
    edit_shot(root, references=references)
    project = load_project(root)
    settings = resolve_settings(project_dir=root, env={}, read_user_config=False).settings
    with pytest.raises(OutsideProjectError) as caught:
        panels_from_project(project, settings)
    assert caught.value.exit_code == 3
    assert field in (caught.value.where or "") and "shot_01" in (caught.value.where or "")
    assert "reference_folders" in (caught.value.hint or "")
    allowed = resolve_settings(
        project_dir=root,
        env={"STORYCORE_TRUST__REFERENCE_FOLDERS": str(tmp_path)},
        read_user_config=False,
    ).settings
    assert panels_from_project(project, allowed)[0].shot_id == "shot_01"


def test_a_project_file_setting_only_what_it_may_is_read_as_before(tmp_path: Path) -> None:
    root = received_project(
        tmp_path,
        "log_level = 'info'\n[comfyui]\n[render]\nsteps = 7\n[controlnet.models]\npose = 'p.pth'\n"
        "[comfyui.nothing]\n[templates]\nmine = 'templates/t.binding.toml'\n",
    )
    with pytest.raises(ConfigError) as caught:  # a typo is still a typo, not a refusal
        resolve_settings(project_dir=root, env={}, read_user_config=False)
    assert "[comfyui] has no setting `nothing`" in caught.value.message
    text = (root / "storycore.toml").read_text().replace("[comfyui.nothing]\n", "")
    (root / "storycore.toml").write_text(text)
    settings = resolve_settings(project_dir=root, env={}, read_user_config=False).settings
    assert settings.render.steps == 7 and settings.controlnet.models == {"pose": "p.pth"}
    assert settings.templates == {"mine": Path("templates/t.binding.toml")}
    (root / "storycore.toml").write_text("comfyui = 5\n")
    with pytest.raises(ConfigError, match="`comfyui` is a section"):
        resolve_settings(project_dir=root, env={}, read_user_config=False)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("t.binding.toml", "x = " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("t.binding.json", "[" * 100_000 + "]" * 100_000),
        ("wf.json", '{"a": ' * 100_000 + "1" + "}" * 100_000),
    ],
)
def test_a_deeply_nested_template_file_is_a_template_error(
    tmp_path: Path, name: str, text: str
) -> None:
    binding = tmp_path / "t.binding.toml"
    binding.write_text('workflow = "wf.json"\n', encoding="utf-8")
    (tmp_path / "wf.json").write_text("{}", encoding="utf-8")
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        load_template(tmp_path / (name if "binding" in name else "t.binding.toml"))
    assert "nested too deeply" in caught.value.message
    assert name in (caught.value.where or "")
