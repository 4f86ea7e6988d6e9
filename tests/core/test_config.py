"""Settings: precedence, sources, validation errors that name the field and the source."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storycore.config import Settings, resolve_settings
from storycore.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    resolved = resolve_settings(env={}, user_config=tmp_path / "none.toml")
    assert resolved.settings.comfyui.port == 8188
    assert resolved.settings.comfyui.host == "127.0.0.1"
    assert resolved.settings.comfyui.startup_timeout == 60
    assert resolved.source_of("comfyui.port") == "default"
    assert resolved.settings.comfyui.install_path == Path.home() / "comfyui_portable"


def test_precedence_user_project_env_cli(tmp_path: Path) -> None:
    user = _write(tmp_path / "user.toml", "[comfyui]\nport = 8001\nhost = '10.0.0.5'\n")
    project = tmp_path / "proj"
    _write(project / "storycore.toml", "[comfyui]\nport = 8002\n[render]\nsteps = 9\n")
    env = {"STORYCORE_COMFYUI__PORT": "8003", "STORYCORE_RENDER__CFG": "4.5"}
    resolved = resolve_settings(
        project_dir=project, env=env, user_config=user, cli={"comfyui.port": 8004}
    )
    s = resolved.settings
    assert (s.comfyui.port, s.comfyui.host, s.render.steps, s.render.cfg) == (
        8004,
        "10.0.0.5",
        9,
        4.5,
    )
    assert resolved.source_of("comfyui.port") == "command line"
    assert resolved.source_of("comfyui.host") == f"user config {user}"
    assert resolved.source_of("render.steps").startswith("project ")
    assert resolved.source_of("render.cfg") == "environment STORYCORE_RENDER__CFG"


def test_the_user_config_comes_from_the_platform_config_dir(tmp_path: Path) -> None:
    # the autouse fixture points XDG_CONFIG_HOME into a private home
    import os

    config_home = Path(os.environ["XDG_CONFIG_HOME"])
    _write(config_home / "storycore" / "config.toml", "log_level = 'DEBUG'\n")
    resolved = resolve_settings(env={})
    assert resolved.settings.log_level == "debug"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"STORYCORE_COMFYUI__PORT": "70000"}, "comfyui.port"),
        ({"STORYCORE_COMFYUI__PORT": "http"}, "comfyui.port"),
        ({"STORYCORE_COMFYUI__STARTUP_TIMEOUT": "-1"}, "comfyui.startup_timeout"),
        ({"STORYCORE_LOG_LEVEL": "loud"}, "log_level"),
        ({"STORYCORE_CONTROLNET__STRENGTH": "2.5"}, "controlnet.strength"),
        ({"STORYCORE_IPADAPTER__NOISE": "1.5"}, "ipadapter.noise"),
        ({"STORYCORE_COMFYUI__PROT": "1"}, "comfyui.prot"),
        ({"STORYCORE_BACKENDS": "ftp://x"}, "backends.0.url"),
    ],
)
def test_invalid_values_name_the_field_and_the_source(
    tmp_path: Path, env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(env=env, user_config=tmp_path / "none.toml")
    text = str(info.value)
    assert f"'{field}'" in text
    assert "environment STORYCORE_" in text
    assert info.value.exit_code == 2


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = _write(tmp_path / "user.toml", "[comfyui\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        resolve_settings(env={}, user_config=bad)
    assert str(bad) in str(info.value)
    assert "line 1" in str(info.value)


def test_backends_from_env_urls_and_json(tmp_path: Path) -> None:
    none = tmp_path / "none.toml"
    urls = resolve_settings(
        env={"STORYCORE_BACKENDS": "http://a:8188/, http://b:8188"}, user_config=none
    ).settings.backends
    assert [b.url for b in urls] == ["http://a:8188", "http://b:8188"]
    js = resolve_settings(
        env={"STORYCORE_BACKENDS": '[{"url": "https://gpu:443/comfy", "token": "s3cret"}]'},
        user_config=none,
    ).settings.backends
    assert js[0].token is not None and js[0].token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(js[0])


def test_extra_args_from_env_are_split(tmp_path: Path) -> None:
    resolved = resolve_settings(
        env={"STORYCORE_COMFYUI__EXTRA_ARGS": "--preview-method auto --fast"},
        user_config=tmp_path / "none.toml",
    )
    assert resolved.settings.comfyui.extra_args == ("--preview-method", "auto", "--fast")


ports = st.integers(min_value=1, max_value=65535)
timeouts = st.floats(min_value=0.001, max_value=3600, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    port=ports,
    timeout=timeouts,
    steps=st.integers(1, 1000),
    level=st.sampled_from(["debug", "info", "warning", "error", "INFO"]),
)
def test_any_valid_value_round_trips(port: int, timeout: float, steps: int, level: str) -> None:
    env = {
        "STORYCORE_COMFYUI__PORT": str(port),
        "STORYCORE_COMFYUI__STARTUP_TIMEOUT": repr(timeout),
        "STORYCORE_RENDER__STEPS": str(steps),
        "STORYCORE_LOG_LEVEL": level,
    }
    s = resolve_settings(env=env, user_config=Path("/nonexistent/storycore.toml")).settings
    assert (s.comfyui.port, s.comfyui.startup_timeout, s.render.steps) == (port, timeout, steps)
    assert s.log_level == level.lower()
    again = Settings.model_validate(s.model_dump())
    assert again == s


@settings(max_examples=60, deadline=None)
@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_any_invalid_port_is_refused_by_name(port: int) -> None:
    with pytest.raises(ConfigError, match=r"comfyui\.port"):
        resolve_settings(
            cli={"comfyui.port": port}, env={}, user_config=Path("/nonexistent/storycore.toml")
        )


def test_a_nested_env_value_only_claims_its_own_field(tmp_path: Path) -> None:
    resolved = resolve_settings(
        env={"STORYCORE_RENDER__CHECKPOINT": "sdxl.safetensors"},
        user_config=tmp_path / "none.toml",
    )
    assert resolved.settings.render.checkpoint == "sdxl.safetensors"
    assert resolved.source_of("render.checkpoint") == "environment STORYCORE_RENDER__CHECKPOINT"
    assert resolved.source_of("render.steps") == "default"


def test_assets_table_is_a_known_setting(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _write(project / "storycore.toml", "[assets]\nkeep_newest = 2\n")
    resolved = resolve_settings(project_dir=project, env={}, user_config=tmp_path / "n.toml")
    assert resolved.settings.assets.keep_newest == 2
    with pytest.raises(ConfigError, match=r"assets\.keep_newest"):
        resolve_settings(cli={"assets.keep_newest": -1}, env={}, user_config=tmp_path / "n.toml")


def test_tables_and_lists_from_env_are_json(tmp_path: Path) -> None:
    none = tmp_path / "none.toml"
    resolved = resolve_settings(
        env={"STORYCORE_TEMPLATES": '{"sdxl": "t/sdxl.toml"}'}, user_config=none
    )
    assert resolved.settings.templates == {"sdxl": Path("t/sdxl.toml")}
    with pytest.raises(ConfigError, match="STORYCORE_CONTROLNET__MODELS"):
        resolve_settings(env={"STORYCORE_CONTROLNET__MODELS": "{oops"}, user_config=none)
