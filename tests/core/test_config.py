"""Settings: precedence, sources, validation errors that name the field and the source."""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storycore.config import Settings, resolve_settings, toml_value
from storycore.errors import ConfigError

NO_USER_CONFIG: dict[str, Any] = {"read_user_config": False}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _error(**kwargs: Any) -> ConfigError:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        resolve_settings(**kwargs)
    assert info.value.exit_code == 2
    return info.value


def test_defaults_when_nothing_is_set() -> None:
    resolved = resolve_settings(env={}, **NO_USER_CONFIG)
    assert resolved.settings.comfyui.port == 8188
    assert resolved.settings.comfyui.host == "127.0.0.1"
    assert resolved.settings.comfyui.startup_timeout == 60
    assert resolved.source_of("comfyui.port") == "default"
    assert resolved.settings.comfyui.install_path == Path.home() / "comfyui_portable"
    assert resolved.warnings == ()


def test_precedence_user_project_env_cli(tmp_path: Path) -> None:
    user = _write(
        tmp_path / "user.toml",
        "[comfyui]\nport = 8001\nhost = '10.0.0.5'\nstartup_timeout = 10\n[render]\nsteps = 5\n",
    )
    project = tmp_path / "proj"
    # a project may set how it renders (not the server: tests/security/test_project_trust.py)
    _write(project / "storycore.toml", "[comfyui]\nstartup_timeout = 20\n[render]\nsteps = 9\n")
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
    assert s.comfyui.startup_timeout == 20
    assert resolved.source_of("comfyui.port") == "command line"
    assert resolved.source_of("comfyui.host") == f"config file {user}"
    assert resolved.source_of("render.steps").startswith("project ")
    assert resolved.source_of("render.cfg") == "environment STORYCORE_RENDER__CFG"


def _user_config_file() -> Path:
    # the autouse fixture points XDG_CONFIG_HOME into a private home
    return Path(os.environ["XDG_CONFIG_HOME"]) / "storycore" / "config.toml"


def test_the_user_config_comes_from_the_platform_config_dir() -> None:
    _write(_user_config_file(), "log_level = 'DEBUG'\n")
    resolved = resolve_settings(env={})
    assert resolved.settings.log_level == "debug"
    assert resolved.source_of("log_level") == f"user config {_user_config_file()}"
    # --config replaces it; read_user_config=False reads none at all
    assert resolve_settings(env={}, **NO_USER_CONFIG).settings.log_level == "warning"


def test_a_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    err = _error(user_config=missing)
    assert err.where == str(missing)
    assert "does not exist" in err.message and "--config" in err.message
    assert "leave out --config" in (err.hint or "")
    folder = _error(user_config=tmp_path)
    assert "is a folder" in folder.message


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
def test_invalid_values_name_the_field_and_the_source(env: dict[str, str], field: str) -> None:
    err = _error(env=env, **NO_USER_CONFIG)
    assert f"`{field}`" in str(err)
    assert err.where == f"environment {next(iter(env))}"
    assert "default" not in err.message


def test_an_unknown_section_names_its_file_and_the_closest_section(tmp_path: Path) -> None:
    project = tmp_path / "p"
    toml = _write(project / "storycore.toml", "[rendr]\nsteps = 12\n")
    err = _error(project_dir=project, **NO_USER_CONFIG)
    assert err.where == f"project {toml}"
    assert err.message == "[rendr] is not a known section (did you mean [render]?)"
    # an empty table is named by its file too (no value inside it records a source)
    _write(project / "storycore.toml", "[rendr]\n")
    assert _error(project_dir=project, **NO_USER_CONFIG).where == f"project {toml}"
    user = _write(tmp_path / "mine.toml", "[comfyiu]\nport = 1\n")
    from_user = _error(user_config=user)
    assert from_user.where == f"config file {user}"
    assert "did you mean [comfyui]?" in from_user.message
    _write(_user_config_file(), "[metrcs]\n")
    default_user = _error()
    assert default_user.where == f"user config {_user_config_file()}"
    assert "did you mean [metrics]?" in default_user.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[render]\nstpes = 5\n", "[render] has no setting `stpes` (did you mean `steps`?)"),
        ("[comfyui]\nprot = 5\n", "[comfyui] has no setting `prot` (did you mean `port`?)"),
        ("log_levl = 'info'\n", "`log_levl` is not a known setting (did you mean `log_level`?)"),
        ("[render]\nzzz = 1\n", "[render] has no setting `zzz`"),
        (
            "[[backends]]\nurl = 'http://a:8188'\ntokne = 'hunter2'\n",
            "[[backends]] entry 1 has no setting `tokne` (did you mean `token`?)",
        ),
    ],
)
def test_an_unknown_key_names_the_closest_known_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    user = _write(tmp_path / "c.toml", text)
    err = _error(user_config=user)
    assert err.message == expected
    assert err.where == f"config file {user}"
    assert "hunter2" not in str(err)


def test_two_files_with_the_same_typo_are_both_named(tmp_path: Path) -> None:
    user = _write(tmp_path / "c.toml", "[rendr]\n")
    project = tmp_path / "p"
    toml = _write(project / "storycore.toml", "[rendr]\nsteps = 1\n")
    err = _error(user_config=user, project_dir=project)
    assert err.where == f"config file {user} and project {toml}"


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("STORYCORE_FOO", None),
        ("STORYCORE_OUTPUT_DIR", None),
        ("STORYCORE_RENDR__STEPS", "STORYCORE_RENDER__STEPS"),
        ("STORYCORE_RENDR__STPES", "STORYCORE_RENDER__STEPS"),
        ("STORYCORE_COMFYUI_PORT", "STORYCORE_COMFYUI__PORT"),
        ("STORYCORE_LOGLEVEL", "STORYCORE_LOG_LEVEL"),
        ("STORYCORE_PORT", "STORYCORE_COMFYUI__PORT"),
        ("STORYCORE_STEPS", "STORYCORE_RENDER__STEPS"),
        ("STORYCORE_BACKEND", "STORYCORE_BACKENDS"),
    ],
)
def test_a_variable_naming_no_section_is_a_warning(variable: str, suggestion: str | None) -> None:
    resolved = resolve_settings(env={variable: "1"}, **NO_USER_CONFIG)
    assert resolved.settings == Settings()
    (warning,) = resolved.warnings
    assert variable in warning and "ignored" in warning
    if suggestion is None:
        assert "did you mean" not in warning
    else:
        assert warning.endswith(f"did you mean {suggestion}?")


def test_an_unknown_key_in_a_known_section_from_env_stays_an_error() -> None:
    err = _error(env={"STORYCORE_COMFYUI__PROT": "1"}, **NO_USER_CONFIG)
    assert err.where == "environment STORYCORE_COMFYUI__PROT"
    assert "did you mean STORYCORE_COMFYUI__PORT?" in err.message


def test_a_section_given_one_value_says_how_to_set_its_keys(tmp_path: Path) -> None:
    err = _error(env={"STORYCORE_COMFYUI": "1"}, **NO_USER_CONFIG)
    assert "STORYCORE_COMFYUI__" in err.message and "ComfyUISettings" not in str(err)
    user = _write(tmp_path / "c.toml", "render = 5\n")
    assert "write it as a table, [render]" in _error(user_config=user).message


def test_messages_list_allowed_values_and_describe_patterns() -> None:
    err = _error(env={"STORYCORE_LOG_LEVEL": "verbose"}, **NO_USER_CONFIG)
    assert "'debug', 'info', 'warning' or 'error'" in err.message
    assert '(got "verbose")' in err.message
    name = _error(env={"STORYCORE_RENDER__FILENAME_PREFIX_ROOT": "a/b"}, **NO_USER_CONFIG)
    assert "letters, digits and `_ . -`" in name.message and "^[" not in name.message
    url = _error(env={"STORYCORE_BACKENDS": "ftp://gpu:8188"}, **NO_USER_CONFIG)
    assert "http:// or https:// URL" in url.message


def test_problems_from_several_places_each_name_their_own(tmp_path: Path) -> None:
    user = _write(tmp_path / "c.toml", "[render]\nsteps = 0\n")
    err = _error(user_config=user, env={"STORYCORE_COMFYUI__PORT": "0"})
    assert err.where == "settings"
    assert f"config file {user}: `render.steps`" in err.message
    assert "environment STORYCORE_COMFYUI__PORT: `comfyui.port`" in err.message


SECRETS = ("hunter2", "tok-123", "Bearer abc", "sekrit")


@pytest.mark.parametrize(
    "backend",
    [
        "url = 'http://a:8188'\nheaders = 'Bearer abc'\n",
        "url = 'http://a:8188'\nheaders = { Authorization = ['Bearer abc'] }\n",
        "url = 'http://a:8188'\ntoken = ['tok-123']\n",
        "url = 'http://a:8188'\npassword = { x = 'hunter2' }\n",
        "url = 'ftp://me:hunter2@a:8188'\n",
        "url = 'http://a:8188'\napi_key = 'sekrit'\n",
        "url = 'http://a:8188'\ntoken = 'tok-123'\nweight = 0\n",
    ],
)
def test_an_error_never_shows_a_credential(tmp_path: Path, backend: str) -> None:
    user = _write(tmp_path / "c.toml", "[[backends]]\n" + backend)
    err = _error(user_config=user)
    for secret in SECRETS:
        assert secret not in str(err) and secret not in json.dumps(err.to_dict())


def test_explain_and_masked_hide_every_credential(tmp_path: Path) -> None:
    user = _write(
        tmp_path / "c.toml",
        "[[backends]]\nurl = 'https://me:hunter2@studio.example/comfy'\ntoken = 'tok-123'\n"
        "[[backends]]\nurl = 'http://b:8188'\nusername = 'me'\npassword = 'sekrit'\n"
        "headers = { Authorization = 'Bearer abc' }\n",
    )
    resolved = resolve_settings(user_config=user, env={})
    shown = json.dumps(resolved.masked()) + repr(resolved.explain())
    for secret in SECRETS:
        assert secret not in shown
    first, second = resolved.masked()["backends"]
    assert first["url"] == "https://me:***@studio.example/comfy" and first["token"] == "***"
    assert second["headers"] == {"Authorization": "***"} and second["password"] == "***"
    assert second["username"] == "me" and first["password"] is None
    # the settings themselves keep the real values for the client
    assert resolved.settings.backends[1].headers == {"Authorization": "Bearer abc"}


def test_toml_syntax_errors_name_the_file_line_and_column(tmp_path: Path) -> None:
    bad = _write(tmp_path / "user.toml", "[comfyui\nport = 1\n")
    err = _error(user_config=bad)
    assert err.where == str(bad)
    assert "line 1, column" in err.message
    twice = _write(tmp_path / "twice.toml", "[render]\nsteps = 3\nsteps = 4\n")
    assert "line 3, column" in _error(user_config=twice).message
    assert "already set" in _error(user_config=twice).message
    unquoted = _write(tmp_path / "bare.toml", "[render]\nsampler = euler\n")
    assert "text needs quotes" in _error(user_config=unquoted).message


def test_a_byte_order_mark_is_accepted_and_bad_bytes_are_named(tmp_path: Path) -> None:
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[render]\nsteps = 3\n")
    assert resolve_settings(user_config=bom, env={}).settings.render.steps == 3
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[render]\nnegative_prompt = 'caf\xe9'\n")
    err = _error(user_config=latin)
    assert err.where == str(latin) and "not UTF-8" in err.message and "line 2" in err.message


def test_backends_from_env_urls_and_json() -> None:
    urls = resolve_settings(
        env={"STORYCORE_BACKENDS": "http://a:8188/, http://b:8188"}, **NO_USER_CONFIG
    ).settings.backends
    assert [b.url for b in urls] == ["http://a:8188", "http://b:8188"]
    js = resolve_settings(
        env={"STORYCORE_BACKENDS": '[{"url": "https://gpu:443/comfy", "token": "s3cret"}]'},
        **NO_USER_CONFIG,
    ).settings.backends
    assert js[0].token is not None and js[0].token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(js[0])


def test_extra_args_from_env_are_split() -> None:
    resolved = resolve_settings(
        env={"STORYCORE_COMFYUI__EXTRA_ARGS": "--preview-method auto --fast"}, **NO_USER_CONFIG
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
    s = resolve_settings(env=env, **NO_USER_CONFIG).settings
    assert (s.comfyui.port, s.comfyui.startup_timeout, s.render.steps) == (port, timeout, steps)
    assert s.log_level == level.lower()
    again = Settings.model_validate(s.model_dump())
    assert again == s


@settings(max_examples=60, deadline=None)
@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_any_invalid_port_is_refused_by_name(port: int) -> None:
    with pytest.raises(ConfigError, match=r"comfyui\.port"):
        resolve_settings(cli={"comfyui.port": port}, env={}, **NO_USER_CONFIG)


def test_a_nested_env_value_only_claims_its_own_field() -> None:
    resolved = resolve_settings(
        env={"STORYCORE_RENDER__CHECKPOINT": "sdxl.safetensors"}, **NO_USER_CONFIG
    )
    assert resolved.settings.render.checkpoint == "sdxl.safetensors"
    assert resolved.source_of("render.checkpoint") == "environment STORYCORE_RENDER__CHECKPOINT"
    assert resolved.source_of("render.steps") == "default"


def test_assets_table_is_a_known_setting(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _write(project / "storycore.toml", "[assets]\nkeep_newest = 2\n")
    resolved = resolve_settings(project_dir=project, env={}, **NO_USER_CONFIG)
    assert resolved.settings.assets.keep_newest == 2
    with pytest.raises(ConfigError, match=r"assets\.keep_newest"):
        resolve_settings(cli={"assets.keep_newest": -1}, env={}, **NO_USER_CONFIG)


def test_tables_and_lists_from_env_are_json() -> None:
    resolved = resolve_settings(
        env={"STORYCORE_TEMPLATES": '{"sdxl": "t/sdxl.toml"}'}, **NO_USER_CONFIG
    )
    assert resolved.settings.templates == {"sdxl": Path("t/sdxl.toml")}
    with pytest.raises(ConfigError, match="STORYCORE_CONTROLNET__MODELS"):
        resolve_settings(env={"STORYCORE_CONTROLNET__MODELS": "{oops"}, **NO_USER_CONFIG)


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=toml_values)
def test_toml_value_is_read_back_by_tomllib(value: Any) -> None:
    assert tomllib.loads(f"x = {toml_value(value)}")["x"] == value


def test_toml_value_writes_what_people_write() -> None:
    assert toml_value(True) == "true"
    assert toml_value("warning") == '"warning"'
    assert toml_value(("--a", "--b")) == '["--a", "--b"]'
    assert toml_value({"a": "b", "c d": None}) == '{ a = "b" }'
    assert toml_value(Path("C:/x") if os.name != "nt" else Path("C:\\x")).startswith('"C:')
    assert toml_value(math.inf) == "inf" and toml_value("a\tb\x7f") == '"a\\tb\\u007f"'


def test_what_people_naturally_write_is_accepted(tmp_path: Path) -> None:
    user = _write(
        tmp_path / "c.toml",
        'backends = ["http://a:8188", { url = "http://b:8188", weight = 2 }]\n'
        '[comfyui]\nextra_args = "--fast --preview-method auto"\n',
    )
    s = resolve_settings(user_config=user, env={}).settings
    assert [(b.url, b.weight) for b in s.backends] == [("http://a:8188", 1), ("http://b:8188", 2)]
    assert s.comfyui.extra_args == ("--fast", "--preview-method", "auto")
    one = _write(tmp_path / "one.toml", 'backends = "http://c:8188"\n')
    assert resolve_settings(user_config=one, env={}).settings.backends[0].url == "http://c:8188"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "backends = [1]\n",
            "`backends.0` should be a [[backends]] entry (a table with url = ...)",
        ),
        ("[templates]\nx = 1\n", '`templates.x` should be a path, in quotes (e.g. "templates/'),
        ("[comfyui]\nextra_args = 5\n", "`comfyui.extra_args` should be a list"),
        (
            "[comfyui]\nextra_args = '--a \"b'\n",
            "`comfyui.extra_args` is not valid: no closing quotation",
        ),
    ],
)
def test_type_mistakes_are_said_without_python_type_names(
    tmp_path: Path, text: str, expected: str
) -> None:
    err = _error(user_config=_write(tmp_path / "c.toml", text))
    assert expected in err.message
    for python in ("BackendSettings", "pathlib", "<class", "tuple", "dictionary"):
        assert python not in err.message


def test_an_unbalanced_quote_in_extra_args_from_env_is_a_config_error() -> None:
    err = _error(env={"STORYCORE_COMFYUI__EXTRA_ARGS": '--a "b'}, **NO_USER_CONFIG)
    assert err.where == "environment STORYCORE_COMFYUI__EXTRA_ARGS"
    assert "no closing quotation" in err.message and "JSON list" in (err.hint or "")


def test_a_table_declared_twice_is_named_as_a_table(tmp_path: Path) -> None:
    twice = _write(tmp_path / "c.toml", "[render]\nsteps = 1\n[render]\ncfg = 2\n")
    err = _error(user_config=twice)
    assert "line 3, column" in err.message and "cannot declare [render] twice" in err.message
    assert "('render',)" not in err.message


def test_a_tilde_in_a_path_means_the_home_folder(tmp_path: Path) -> None:
    user = _write(
        tmp_path / "c.toml",
        "state_dir = '~/state'\n[comfyui]\ninstall_path = '~/ComfyUI'\n"
        "[templates]\nx = '~/t.toml'\n",
    )
    s = resolve_settings(
        user_config=user, env={"STORYCORE_COMFYUI__PYTHON_EXECUTABLE": "~/py/bin/python"}
    ).settings
    home = Path.home()
    assert s.comfyui.install_path == home / "ComfyUI" and s.state_dir == home / "state"
    assert s.comfyui.python_executable == home / "py" / "bin" / "python"
    assert s.templates == {"x": home / "t.toml"}
