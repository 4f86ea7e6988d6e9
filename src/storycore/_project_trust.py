"""What a project's own ``storycore.toml`` may choose, and what only the person running StoryCore
may choose.

A project folder is shared, downloaded, unzipped from a mail: what it holds is untrusted. Its
``storycore.toml`` may tune how its panels render (``[render]``, ``[controlnet]``, ``[ipadapter]``,
its own ``[templates]``, ``[assets]`` retention, timeouts), but a setting that picks a program,
its arguments, a folder outside the project, a server or a credential comes only from the user
config, ``STORYCORE_*`` variables or flags. Such a setting in a project file is a
:class:`~storycore.errors.ConfigError` naming the file, the setting and where it may be set.

:data:`USER_ONLY_SETTINGS` is the declared list (dotted name or table -> why, and the flag that
also sets it); what a project may set is :data:`PROJECT_SETTINGS`. A test checks that every
field of :class:`~storycore.config.Settings` is in exactly one of them, so a new setting is
classified when it is added; a known setting in neither is refused (fail closed).

Opt-in, honoured from the user config, the environment or flags only (``[trust]``):

* ``project_servers``: URLs (``"http://farm-a:8188"``) or host names (``"render-host"``, any
  port; ``"render-host:8188"``) that a project's ``backends`` may name. A project still never
  carries credentials: they come from the user's own ``[[backends]]`` entry with the same URL.
* ``reference_folders``: folders outside a project from which its reference images and template
  files may be read (a shared library, ``/mnt/shared/refs``).

Paths a project names are judged by where they really lead (links followed, ``..`` and absolute
paths resolved): :func:`outside_reach`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from storycore.errors import ConfigError

__all__ = [
    "CREDENTIAL_KEYS",
    "PROJECT_SETTINGS",
    "REFERENCE_HINT",
    "USER_ONLY_SETTINGS",
    "check_project_layer",
    "check_trusted_server",
    "outside_reach",
    "outside_words",
    "project_leaves",
    "server_trusted",
]

_PROGRAM = "it picks the program StoryCore starts"
_ARGUMENTS = "it becomes part of the command line of the ComfyUI StoryCore starts"
_SERVER = (
    "it picks the server StoryCore sends your prompts and images to, and the address a ComfyUI "
    "it starts listens on"
)
_SERVERS = "it picks the servers StoryCore sends your prompts, images and credentials to"
_FOLDER = "it picks a folder outside the project that StoryCore writes to"
_PORT = "it opens a network port on this machine"
_LIMIT = "it loosens a limit that protects you from a dishonest server"
_TRUST = "it decides what projects may do, which only you decide"
_MONEY = "it lets a render call paid online services billed to your account"

# Dotted name (or a whole table) -> (why a project may not set it, a flag that sets it or "").
USER_ONLY_SETTINGS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "comfyui.install_path": (_PROGRAM, "--install-path (storycore comfyui start)"),
        "comfyui.python_executable": (_PROGRAM, ""),
        "comfyui.extra_args": (_ARGUMENTS, ""),
        "comfyui.gpu": (_ARGUMENTS, ""),
        "comfyui.cuda_device": (_ARGUMENTS, ""),
        "comfyui.vram_mode": (_ARGUMENTS, ""),
        "comfyui.reserve_vram_gb": (_ARGUMENTS, ""),
        "comfyui.preview_method": (_ARGUMENTS, ""),
        "comfyui.memory_limit_gb": (_ARGUMENTS, ""),
        "comfyui.host": (_SERVER, "--host (storycore comfyui)"),
        "comfyui.port": (_SERVER, "--port (storycore comfyui)"),
        "comfyui.request_deadline": (_LIMIT, ""),
        "comfyui.max_response_mb": (_LIMIT, ""),
        "comfyui.max_image_mb": (_LIMIT, ""),
        "comfyui.max_image_megapixels": (_LIMIT, ""),
        "comfyui.allow_api_nodes": (_MONEY, ""),
        "backends": (_SERVERS, "--backend"),
        "state_dir": (_FOLDER, ""),
        "metrics.prometheus_port": (_PORT, ""),
        "trust": (_TRUST, ""),
    }
)

# What a project's storycore.toml may set (a name covers the keys below it). ``templates`` only
# inside the project folder or a reference folder.
PROJECT_SETTINGS: frozenset[str] = frozenset(
    {
        "log_level",
        "render",
        "controlnet",
        "ipadapter",
        "templates",
        "profiles",
        "assets",
        "metrics.enabled",
        "metrics.interval",
        "comfyui.startup_timeout",
        "comfyui.health_check_interval",
        "comfyui.health_check_timeout",
        "comfyui.max_retries",
        "comfyui.failover_grace",
        "comfyui.connect_timeout",
        "comfyui.read_timeout",
        "comfyui.prompt_timeout",
        "comfyui.idle_timeout",
        "comfyui.graceful_shutdown",
        "comfyui.force_kill",
    }
)

CREDENTIAL_KEYS: tuple[str, ...] = ("token", "username", "password", "headers")
# Keys of a [[backends]] entry that start a ComfyUI on this machine.
_PROGRAM_KEYS = ("managed", "cuda_device")

REFERENCE_HINT = (
    "Copy the file into the project folder, or, if you trust the folder it is in, add that "
    "folder to [trust] reference_folders in your user config (`storycore config path` shows "
    "the file)"
)


def _covers(names: Iterable[str], dotted: str) -> str | None:
    for name in names:
        if dotted == name or dotted.startswith(name + "."):
            return name
    return None


def project_leaves(layer: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted settings ``layer`` sets, down to the fields of ``model`` (a table that is a
    setting of its own, like ``templates`` or ``controlnet.models``, is one name). Keys the model
    does not know are left out: validation names them with a "did you mean"."""
    found: list[str] = []
    for key, value in layer.items():
        info = model.model_fields.get(str(key))
        if info is None:
            continue
        dotted = f"{prefix}{key}"
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if isinstance(value, Mapping):  # else not a table: validation says so
                found += project_leaves(value, sub, dotted + ".")
        else:
            found.append(dotted)
    return found


# --- trusted servers ----------------------------------------------------------------------------


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _server_parts(text: str) -> tuple[str | None, str, int | None, str | None]:
    """``(scheme, host, port, path)`` of a URL; ``(None, host, port or None, None)`` of a host."""
    if "://" in text:
        url = urlsplit(text.strip())
        scheme = url.scheme.lower()
        return (
            scheme,
            (url.hostname or "").lower(),
            url.port or _default_port(scheme),
            (url.path.rstrip("/")),
        )
    url = urlsplit("//" + text.strip())
    return None, (url.hostname or "").lower(), url.port, None


def check_trusted_server(text: str) -> str:
    """A ``[trust] project_servers`` entry as given, or ``ValueError`` saying what is wrong."""
    try:
        scheme, host, _port, _path = _server_parts(text)
        parsed = urlsplit(text if "://" in text else "//" + text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL or host name ({exc})") from None
    if not host or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} names no host (write e.g. http://farm-a:8188 or farm-a)")
    if scheme not in (None, "http", "https"):
        raise ValueError(f"{text!r} should be an http:// or https:// URL, or a host name")
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise ValueError(f"{text!r} should be a plain URL, without credentials or a query")
    if scheme is None and parsed.path:
        raise ValueError(f"{text!r} should be a host name (or a whole URL with http://)")
    return text.strip()


def server_trusted(url: str, trusted: Sequence[str]) -> bool:
    """Whether ``url`` is one of ``trusted`` (a URL there matches that URL, a host any port on
    it, ``host:port`` that port)."""
    try:
        scheme, host, port, path = _server_parts(url)
    except ValueError:
        return False
    for entry in trusted:
        try:
            t_scheme, t_host, t_port, t_path = _server_parts(entry)
        except ValueError:
            continue
        if t_host != host:
            continue
        if t_scheme is None:
            if t_port is None or t_port == port:
                return True
        elif (t_scheme, t_port, t_path) == (scheme, port, path):
            return True
    return False


def _same_server(a: str, b: str) -> bool:
    try:
        return _server_parts(a) == _server_parts(b)
    except ValueError:
        return False


# --- paths a project names ----------------------------------------------------------------------


def _within(real: str, base: str) -> bool:
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def outside_reach(
    root: Path, path: Path, allowed: Sequence[Path] = ()
) -> tuple[str, Path | None] | None:
    """``None`` when ``path`` really lies (links followed) inside ``root`` or an ``allowed``
    folder; else ``(where it leads, the link inside root that leads there or None)``."""
    real = os.path.realpath(path)
    if any(_within(real, os.path.realpath(base)) for base in (root, *allowed)):
        return None
    real_root = os.path.realpath(root)
    link: Path | None = None
    lexical = Path(os.path.normpath(os.path.abspath(path)))
    try:
        relative = lexical.relative_to(Path(os.path.abspath(root)))
    except ValueError:
        relative = None
    if relative is not None:
        probe = Path(os.path.abspath(root))
        for part in relative.parts:
            probe = probe / part
            if probe.is_symlink() and not _within(os.path.realpath(probe), real_root):
                link = probe
                break
    return real, link


def outside_words(what: str, given: str, root: Path, leads: tuple[str, Path | None]) -> str:
    """``the init image ../x.png is outside the project folder /p (it is /x.png)``, or with the
    link that leads out."""
    real, link = leads
    if link is not None:
        return (
            f"the {what} {given} is outside the project folder {root}: {link} is a link to "
            f"{os.path.realpath(link)}, and a project may read files only inside its own folder"
        )
    return (
        f"the {what} {given} is outside the project folder {root} (it is {real}); a project may "
        "read files only inside its own folder"
    )


# --- the project layer --------------------------------------------------------------------------


def _env_name(dotted: str) -> str:
    return "STORYCORE_" + "__".join(part.upper() for part in dotted.split("."))


def _refusal(
    file: Path, problems: Sequence[tuple[str, str]], hint: str | None = None
) -> ConfigError:
    names = list(dict.fromkeys(name for name, _ in problems))
    if len(problems) == 1:
        name, why = problems[0]
        text = f"`{name}` may not be set in a project's storycore.toml: {why}"
    else:
        listed = "; ".join(f"`{name}` ({why})" for name, why in problems)
        text = f"sets what a project's storycore.toml may not choose: {listed}"
    if hint is None:
        places = []
        for name in names:
            owner = _covers(USER_ONLY_SETTINGS, name)
            flag = USER_ONLY_SETTINGS[owner][1] if owner else ""
            places.append(f"{_env_name(name)}" + (f" or {flag}" if flag else ""))
        hint = (
            "A project may come from anyone, so these settings come only from you: set them in "
            "your user config (`storycore config path` shows the file), as "
            + ", ".join(places)
            + "; then remove them from this file"
        )
    return ConfigError(text, where=f"project {file}", hint=hint)


def check_project_layer(
    layer: Mapping[str, Any],
    file: Path,
    *,
    model: type[BaseModel],
    servers: Sequence[str],
    folders: Sequence[Path],
    user_backends: Any,
) -> dict[str, Any]:
    """``layer`` (a project's storycore.toml) if it sets nothing a project may not choose, with
    the user's credentials added to the servers it names (``servers`` are the user's
    ``trust.project_servers``, ``folders`` the ``trust.reference_folders``, ``user_backends`` the
    user config's ``backends``). Otherwise one :class:`ConfigError` naming every setting."""
    problems: list[tuple[str, str]] = []
    for dotted in project_leaves(layer, model):
        if dotted == "backends" or _covers(PROJECT_SETTINGS, dotted):
            continue
        owner = _covers(USER_ONLY_SETTINGS, dotted)
        why = USER_ONLY_SETTINGS[owner][0] if owner else "it is not one a project may choose"
        problems.append((dotted, why))
    if problems:
        raise _refusal(file, problems)
    checked = dict(layer)
    if "backends" in layer:
        checked["backends"] = _project_backends(layer["backends"], file, servers, user_backends)
    templates = layer.get("templates")
    if isinstance(templates, Mapping):
        _check_templates(templates, file, folders)
    return checked


def _check_templates(templates: Mapping[str, Any], file: Path, folders: Sequence[Path]) -> None:
    root = file.parent
    for name, value in templates.items():
        if not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        leads = outside_reach(root, path if path.is_absolute() else root / path, folders)
        if leads is not None:
            raise ConfigError(
                f"`templates.{name}` may not be set in a project's storycore.toml to a file "
                f"outside the project: {outside_words('template', value, root, leads)}",
                where=f"project {file}",
                hint=f"{REFERENCE_HINT}; a template of your own goes in [templates] of your user "
                "config, or STORYCORE_TEMPLATES",
            )


def _entries(value: Any) -> list[Any] | None:
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        return None
    return [{"url": item} if isinstance(item, str) else item for item in value]


def _project_backends(value: Any, file: Path, servers: Sequence[str], user: Any) -> Any:
    entries = _entries(value)
    if entries is None:
        return value  # not a list: validation says so
    if not entries:
        raise _refusal(
            file,
            [("backends", "an empty list would hide the servers you chose yourself")],
        )
    problems: list[tuple[str, str]] = []
    untrusted: list[str] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for key in CREDENTIAL_KEYS:
            if key in entry:
                problems.append((f"backends.{key}", "a project file may not hold credentials"))
        for key in _PROGRAM_KEYS:
            if key in entry:
                problems.append((f"backends.{key}", "it starts a ComfyUI on this machine"))
        url = entry.get("url")
        if not isinstance(url, str):
            continue
        try:
            parsed = urlsplit(url)
            userinfo = parsed.username is not None or parsed.password is not None
        except ValueError:
            userinfo = False
        if userinfo:
            problems.append(("backends.url", "a URL with a user name or password in it"))
        elif not server_trusted(url, servers):
            untrusted.append(url)
    hints = []
    if problems:
        hints.append(
            "Put credentials in your own [[backends]] entry for that URL in your user config "
            "(`storycore config path` shows the file) or in STORYCORE_BACKENDS: a server list a "
            "project names takes them from there"
        )
    if untrusted:
        listed = ", ".join(f'"{u}"' for u in untrusted)
        problems.append(
            ("backends", f"{_SERVERS}, and you have not trusted {', '.join(untrusted)}")
        )
        hints.append(
            "Name your servers in your user config (`storycore config path` shows the file), in "
            "STORYCORE_BACKENDS or with --backend; or, to let projects name these servers, add "
            f"them to your user config: [trust] project_servers = [{listed}]"
        )
    if problems:
        raise _refusal(file, list(dict.fromkeys(problems)), hint=". ".join(hints))
    return [_with_credentials(dict(entry), user) for entry in entries]


def _with_credentials(entry: dict[str, Any], user: Any) -> dict[str, Any]:
    """``entry`` with the credentials of the user's own backend for the same URL."""
    url = entry.get("url")
    if not isinstance(url, str):
        return entry
    for mine in _entries(user) or []:
        if isinstance(mine, Mapping) and _same_server(str(mine.get("url", "")), url):
            entry.update({k: mine[k] for k in CREDENTIAL_KEYS if k in mine})
            break
    return entry
