"""Settings: one object, resolved once, with the source of every value.

Precedence (later wins)::

    defaults < user config file < project storycore.toml < STORYCORE_* environment < CLI flags

Two phases, like uvicorn's ``Config``: :func:`resolve_settings` gathers the layers and validates
them into a frozen :class:`Settings`; nothing is read at import time. Every problem becomes a
:class:`~storycore.errors.ConfigError` naming the field and where its value came from.

Environment variables name nested fields with a double underscore:
``STORYCORE_COMFYUI__PORT=8190``, ``STORYCORE_RENDER__STEPS=12``, ``STORYCORE_LOG_LEVEL=debug``.
``STORYCORE_BACKENDS`` takes a JSON list or comma-separated URLs. A ``STORYCORE_*`` variable
that names no section is ignored with a warning (:attr:`ResolvedSettings.warnings`); an unknown
key inside a known section is an error, like an unknown key or section in a file, with the
closest known name ("did you mean ...").

Credentials (a backend's token, password, header values, a password inside a URL) never appear
in :meth:`ResolvedSettings.explain`, :meth:`ResolvedSettings.masked` or an error message, and
every one of them is handed to :func:`storycore._redact.remember_secret` when the settings are
resolved, so a server that echoes one back cannot get it shown or stored.

A project's ``storycore.toml`` is untrusted (a project may come from anyone): it may not set
what picks a program, its arguments, a folder outside the project, a server or a credential.
The declared list, and the ``[trust]`` opt-in that only the user config may give, are in
:mod:`storycore._project_trust`.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)

from storycore._config_layers import env_layer, given_file, read_toml, user_config_path
from storycore._config_text import (
    NAME_PATTERN,
    URL_PATTERN,
    mask_settings,
    settings_error,
    toml_value,
)
from storycore._profiles import ProfileSettings
from storycore._project_trust import check_project_layer, check_trusted_server
from storycore._redact import remember_basic_auth, remember_secret
from storycore.assets._policy import RetentionPolicy

__all__ = [
    "BackendSettings",
    "ComfyUISettings",
    "ControlNetSettings",
    "IPAdapterSettings",
    "MetricsSettings",
    "RenderSettings",
    "ResolvedSettings",
    "Settings",
    "TrustSettings",
    "default_install_path",
    "resolve_settings",
    "toml_value",
    "user_config_path",
]

PROJECT_CONFIG_NAME = "storycore.toml"


def default_install_path() -> Path:
    """Where a ComfyUI portable install is looked for when none is configured."""
    if sys.platform == "win32":
        return Path(r"C:\storycore-engine\comfyui_portable")
    return Path.home() / "comfyui_portable"


# "~/ComfyUI" in a file or a quoted variable means the home folder, as it would in a shell.
UserPath = Annotated[Path, AfterValidator(lambda path: path.expanduser())]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class BackendSettings(_Model):
    """A ComfyUI server to render on: a URL, or a managed local install pinned to a GPU."""

    url: str = Field(pattern=URL_PATTERN)
    name: str | None = None
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    managed: bool = False
    cuda_device: int | None = Field(default=None, ge=0)
    weight: int = Field(default=1, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class ComfyUISettings(_Model):
    """The local ComfyUI server: where it is installed and how it is run and watched."""

    install_path: UserPath = Field(default_factory=default_install_path)
    python_executable: UserPath | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8188, ge=1, le=65535)
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = Field(default=60.0, gt=0, le=3600)
    health_check_interval: float = Field(default=5.0, gt=0, le=3600)
    health_check_timeout: float = Field(default=5.0, gt=0, le=600)
    max_retries: int = Field(default=3, ge=0, le=100)
    failover_grace: float = Field(default=30.0, gt=0, le=3600)
    connect_timeout: float = Field(default=5.0, gt=0, le=600)
    read_timeout: float = Field(default=30.0, gt=0, le=3600)
    prompt_timeout: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    idle_timeout: float = Field(default=300.0, gt=0, le=24 * 3600)
    graceful_shutdown: float = Field(default=30.0, ge=0, le=3600)
    force_kill: float = Field(default=10.0, ge=0, le=3600)
    gpu: bool = True
    cuda_device: int | None = Field(default=None, ge=0)
    vram_mode: Literal["normal", "high", "low", "none"] = "normal"
    reserve_vram_gb: float | None = Field(default=None, ge=0, le=1024)
    # --preview-method of a ComfyUI StoryCore starts (comfy/cli_args.py LatentPreviewMethod).
    preview_method: Literal["none", "auto", "latent2rgb", "taesd"] = "auto"
    memory_limit_gb: float | None = Field(default=None, gt=0, le=4096)
    # What a server may send (storycore.comfyui.ClientLimits): one request's total deadline,
    # the largest answer per endpoint (MiB; unlisted endpoints keep their default), the largest
    # image (MiB) and its pixels (decoding it for the storyboard must stay bounded too).
    request_deadline: float = Field(default=120.0, gt=0, le=24 * 3600)
    max_response_mb: dict[
        Literal["system_stats", "object_info", "models", "history", "queue", "other"],
        Annotated[float, Field(gt=0, le=65536)],
    ] = Field(default_factory=dict)
    max_image_mb: float = Field(default=128.0, gt=0, le=65536)
    max_image_megapixels: float = Field(default=40.0, gt=0, le=10_000)
    # ComfyUI's API nodes call paid online services on the user's comfy.org account: the
    # preflight refuses them unless this is set (user-only: a project must not spend money).
    allow_api_nodes: bool = False

    @field_validator("extra_args", mode="before")
    @classmethod
    def _split_args(cls, value: Any) -> Any:
        """``extra_args = "--fast --preview-method auto"`` is split as a shell would."""
        return shlex.split(value) if isinstance(value, str) else value

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class RenderSettings(_Model):
    """How panels are rendered: models, sampler, size, seeds, pipelining."""

    checkpoint: str = "v1-5-pruned-emaonly.safetensors"
    vae: str | None = None
    sampler: str = "euler"
    scheduler: str = "normal"
    steps: int = Field(default=20, ge=1, le=1000)
    cfg: float = Field(default=7.0, ge=0, le=100)
    render_long_side: int = Field(default=768, ge=64, le=8192)
    size_multiple: int = Field(default=8, ge=1, le=128)
    seed_policy: Literal["shot", "derived", "global"] = "shot"
    negative_prompt: str = "low quality, blurry, distorted, watermark, text"
    img2img_denoise: float = Field(default=0.6, gt=0, le=1)
    queue_depth: int = Field(default=2, ge=1, le=64)
    fallback: Literal["mock", "fail"] = "mock"
    template: str | None = None
    filename_prefix_root: str = Field(default="storycore", pattern=NAME_PATTERN)


class ControlNetSettings(_Model):
    """ControlNet defaults; a panel's own values win."""

    strength: float = Field(default=1.0, ge=0, le=2)
    start_percent: float = Field(default=0.0, ge=0, le=1)
    end_percent: float = Field(default=1.0, ge=0, le=1)
    preprocess: bool = True
    models: dict[str, str] = Field(
        default_factory=lambda: {
            "pose": "control_v11p_sd15_openpose.pth",
            "depth": "control_v11f1p_sd15_depth.pth",
            "lineart": "control_v11p_sd15_lineart.pth",
            "canny": "control_v11p_sd15_canny.pth",
        }
    )


class IPAdapterSettings(_Model):
    """IP-Adapter defaults for character reference images."""

    weight: float = Field(default=0.8, ge=0, le=2)
    noise: float = Field(default=0.0, ge=0, le=1)
    weight_type: str = "linear"
    start_at: float = Field(default=0.0, ge=0, le=1)
    end_at: float = Field(default=1.0, ge=0, le=1)
    preset: str = "PLUS (high strength)"
    model_file: str | None = None
    clip_vision: str | None = None


class MetricsSettings(_Model):
    """Performance monitoring."""

    enabled: bool = True
    interval: float = Field(default=5.0, gt=0, le=3600)
    prometheus_port: int | None = Field(default=None, ge=1, le=65535)


def _absolute_folder(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"{str(path)!r} should be an absolute folder path (e.g. /mnt/shared/refs)")
    return path


class TrustSettings(_Model):
    """What a project's own files may choose beyond the project folder. Honoured from the user
    config, the environment and flags only: a project's storycore.toml may not set it."""

    # URLs ("http://farm-a:8188") or hosts ("render-host", "render-host:8188") a project's
    # `backends` may name; their credentials come from the user's own [[backends]] entries.
    project_servers: tuple[Annotated[str, AfterValidator(check_trusted_server)], ...] = ()
    # Folders outside a project whose reference images and template files a project may read.
    reference_folders: tuple[Annotated[UserPath, AfterValidator(_absolute_folder)], ...] = ()

    @field_validator("project_servers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``STORYCORE_TRUST__PROJECT_SERVERS=http://a:8188,render-host``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("reference_folders", mode="before")
    @classmethod
    def _one_folder(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Settings(_Model):
    """Every StoryCore setting. Build it with :func:`resolve_settings`."""

    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    comfyui: ComfyUISettings = Field(default_factory=ComfyUISettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    controlnet: ControlNetSettings = Field(default_factory=ControlNetSettings)
    ipadapter: IPAdapterSettings = Field(default_factory=IPAdapterSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    backends: tuple[BackendSettings, ...] = ()
    templates: dict[str, UserPath] = Field(default_factory=dict)
    profiles: dict[Annotated[str, StringConstraints(pattern=NAME_PATTERN)], ProfileSettings] = (
        Field(default_factory=dict)
    )
    assets: RetentionPolicy = Field(default_factory=RetentionPolicy)
    state_dir: UserPath | None = None
    trust: TrustSettings = Field(default_factory=TrustSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("backends", mode="before")
    @classmethod
    def _urls_are_backends(cls, value: Any) -> Any:
        """``backends = ["http://a:8188"]`` (or one URL, or one table) is a list of backends."""
        if isinstance(value, str | Mapping):
            value = [value]
        if isinstance(value, list | tuple):
            return [{"url": item} if isinstance(item, str) else item for item in value]
        return value


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings and, for every field set by a layer, which layer set it."""

    settings: Settings
    sources: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def source_of(self, dotted: str) -> str:
        """Where the value at ``dotted`` (e.g. ``comfyui.port``) came from."""
        probe = dotted
        while probe:
            if probe in self.sources:
                return self.sources[probe]
            probe = probe.rpartition(".")[0]
        return "default"

    def masked(self) -> dict[str, Any]:
        """The settings as JSON-ready data, every credential shown as ``"***"``."""
        return mask_settings(self.settings.model_dump(mode="json"))

    def explain(self) -> list[tuple[str, Any, str]]:
        """Every leaf setting as ``(dotted name, value, source)``, credentials masked."""
        rows: list[tuple[str, Any, str]] = []
        _walk(self.masked(), "", rows)
        return [(name, value, self.source_of(name)) for name, value, _ in rows]


def _walk(value: Any, prefix: str, rows: list[tuple[str, Any, str]]) -> None:
    if isinstance(value, dict) and value and prefix not in ("controlnet.models", "templates"):
        for key, sub in value.items():
            _walk(sub, f"{prefix}.{key}" if prefix else key, rows)
    else:
        rows.append((prefix, value, ""))


def resolve_settings(
    *,
    project_dir: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    user_config: Path | None = None,
    read_user_config: bool = True,
) -> ResolvedSettings:
    """Gather every layer, merge them by precedence and validate the result once.

    ``user_config`` is read instead of the user config file (``--config FILE``); it must exist.
    ``read_user_config=False`` reads no user config file at all (tests, benchmarks).
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    tables: dict[str, list[str]] = {}
    user_layer: tuple[dict[str, Any], str] | None = None
    if user_config is not None:
        user_file = given_file(user_config)
        user_layer = (read_toml(user_file), f"config file {user_file}")
    elif read_user_config:
        user_file = user_config_path()
        if user_file.is_file():
            user_layer = (read_toml(user_file), f"user config {user_file}")
    layers: list[tuple[Mapping[str, Any], str]] = [user_layer] if user_layer else []
    variables, warnings = env_layer(os.environ if env is None else env, Settings)
    later = [
        (_nest(dotted, value), f"environment {name}") for dotted, (value, name) in variables.items()
    ]
    later += [
        (_nest(dotted, value), "command line")
        for dotted, value in (cli or {}).items()
        if value is not None
    ]
    if project_dir is not None:
        project_file = project_dir / PROJECT_CONFIG_NAME
        if project_file.is_file():
            trust = _users_trust([*layers, *later])
            layer = check_project_layer(
                read_toml(project_file),
                project_file,
                model=Settings,
                servers=trust.project_servers,
                folders=trust.reference_folders,
                user_backends=user_layer[0].get("backends") if user_layer else None,
            )
            layers.append((layer, f"project {project_file}"))
    for layer_data, origin in [*layers, *later]:
        _merge(merged, sources, tables, layer_data, origin)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise settings_error(exc, Settings, sources, tables) from None
    _remember_credentials(settings)
    return ResolvedSettings(settings=settings, sources=sources, warnings=tuple(warnings))


def _users_trust(layers: list[tuple[Mapping[str, Any], str]]) -> TrustSettings:
    """``[trust]`` as the user's own layers (user config, environment, flags) give it."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    tables: dict[str, list[str]] = {}
    for layer, origin in layers:
        if "trust" in layer:
            _merge(merged, sources, tables, {"trust": layer["trust"]}, origin)
    try:
        return Settings.model_validate({"trust": merged.get("trust", {})}).trust
    except ValidationError as exc:
        raise settings_error(exc, Settings, sources, tables) from None


def _remember_credentials(settings: Settings) -> None:
    """Every credential the settings hold, for :func:`storycore._redact.redact`."""
    for backend in settings.backends:
        password = backend.password.get_secret_value() if backend.password else None
        remember_secret(
            backend.token.get_secret_value() if backend.token else None,
            password,
            *backend.headers.values(),
        )
        if backend.username and password:
            remember_basic_auth(backend.username, password)
        try:
            in_url = urlsplit(backend.url).password
        except ValueError:
            in_url = None
        if in_url:
            remember_secret(in_url, unquote(in_url))


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _merge(
    target: dict[str, Any],
    sources: dict[str, str],
    tables: dict[str, list[str]],
    layer: Mapping[str, Any],
    origin: str,
    prefix: str = "",
) -> None:
    """Merge ``layer`` into ``target``. ``sources`` records who set each value; ``tables`` who
    wrote each table (so an unknown ``[rendr]`` names its file even when it is empty)."""
    for key, value in layer.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        leaf_dict = key in ("headers", "models", "templates") or dotted.startswith("backends")
        if isinstance(value, Mapping) and not leaf_dict:
            writers = tables.setdefault(dotted, [])
            if origin not in writers:
                writers.append(origin)
            if not isinstance(target.get(key), dict):
                target[key] = {}
                sources.pop(dotted, None)
            _merge(target[key], sources, tables, value, origin, dotted)
            continue
        target[key] = dict(value) if isinstance(value, Mapping) else value
        sources[dotted] = origin
        for name in [s for s in sources if s.startswith(dotted + ".")]:
            sources[name] = origin
