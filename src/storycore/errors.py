"""The one exception tree of StoryCore.

Every error a user can meet is a :class:`StoryCoreError`. Each carries a one-paragraph message
that says what went wrong, where (file, field, node or URL) and what to do, and an exit code the
CLI returns. Errors from the libraries below (aiohttp, OS calls, JSON, pydantic) are translated
into this tree in one place per library (``storycore.comfyui._translate.translate_errors`` for
aiohttp; the loaders for files), never scattered through the code.

::

    StoryCoreError                      exit 1
    ├── ConfigError                     exit 2   a setting is invalid (names the field, the source)
    ├── ProjectError                    exit 3   project.json / storyboard.json invalid
    │   ├── OutsideProjectError                              a path or link leads out of the project
    │   └── EditConflict                                     storyboard.json changed meanwhile
    ├── ComfyUIError                    exit 4   talking to a ComfyUI server
    │   ├── NoServerReachable                                no URL tried answered as ComfyUI
    │   ├── ServerUnreachable           (also OSError)       nothing answers at the URL
    │   ├── ServerTimeout               (also TimeoutError)  a call or a wait ran past its bound
    │   ├── ServerResponseError                              unexpected status or malformed body
    │   ├── PromptRejected                                   400 / node_errors from POST /prompt
    │   ├── ExecutionFailed                                  execution_error during a run
    │   ├── PromptInterrupted                                execution_interrupted / cancelled
    │   ├── PromptLost                                       neither queued, running nor in history
    │   └── UnsafePathError                                  a server filename would escape a folder
    ├── ManagerError                    exit 5   starting / stopping a local ComfyUI
    │   ├── InstallNotFound                                  no runnable ComfyUI at the install path
    │   ├── PortInUse                                        the port is held by something else
    │   ├── StartupFailed                                    exited or never became ready
    │   └── StopFailed                                       processes survived a kill
    ├── WorkflowError                   exit 6   building or validating a graph
    │   ├── TemplateError                                    a user template or binding is wrong
    │   └── PreflightFailed                                  one report of every problem found
    ├── AssetError                      exit 7   downloads, checksums, storage
    │   ├── ChecksumMismatch
    │   └── OutputNotFetched                                 rendered, but not downloaded
    └── RenderError                     exit 8   the engine could not finish the board

``exit 9`` is reserved for "finished, but only with placeholder frames" (mock fallback) and
``exit 130`` for a run stopped by Ctrl-C; neither is an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_PLACEHOLDERS",
    "AssetError",
    "ChecksumMismatch",
    "ComfyUIError",
    "ConfigError",
    "EditConflict",
    "ExecutionFailed",
    "InstallNotFound",
    "ManagerError",
    "NoServerReachable",
    "OutputNotFetched",
    "OutsideProjectError",
    "PortInUse",
    "PreflightFailed",
    "ProjectError",
    "PromptInterrupted",
    "PromptLost",
    "PromptRejected",
    "RenderError",
    "ServerResponseError",
    "ServerTimeout",
    "ServerUnreachable",
    "StartupFailed",
    "StopFailed",
    "StoryCoreError",
    "TemplateError",
    "UnsafePathError",
    "WorkflowError",
]

EXIT_PLACEHOLDERS = 9
EXIT_INTERRUPTED = 130


class StoryCoreError(Exception):
    """Root of every StoryCore error.

    ``message`` says what went wrong; ``where`` names the file, field, node or URL; ``hint`` says
    what to do. ``str(err)`` joins them into one paragraph.
    """

    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        # A server may echo a credential back in its error text: no error ever carries one.
        from storycore._redact import redact

        self.message = redact(message)
        self.where = redact(where) if where else where
        self.hint = redact(hint) if hint else hint
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: {self.message.rstrip('.')}.")
        else:
            parts.append(f"{self.message.rstrip('.')}.")
        if self.hint:
            parts.append(self.hint.rstrip(".") + ".")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, used by ``--json`` output."""
        return {
            "error": type(self).__name__,
            "kind": self.kind,
            "message": self.message,
            "where": self.where,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class ConfigError(StoryCoreError):
    """A setting is invalid. ``where`` names the field and the source it came from."""

    exit_code = 2
    kind = "configuration"


class ProjectError(StoryCoreError):
    """A StoryCore project folder is missing, unreadable or invalid."""

    exit_code = 3
    kind = "project"


class OutsideProjectError(ProjectError):
    """A path in the project (or a link planted in it) would carry a read, write or delete
    outside the folder it must stay in. ``where`` names the path; the message names the link."""


class EditConflict(ProjectError):
    """An edit of ``storyboard.json`` was refused because the file changed on disk since the
    editor (the review page) read it: nothing was written; reload and edit again."""


class ComfyUIError(StoryCoreError):
    """Something went wrong while talking to a ComfyUI server. ``where`` is the URL."""

    exit_code = 4
    kind = "comfyui"


class NoServerReachable(ComfyUIError):
    """No ComfyUI answered at any URL a command tried (``generate-images``, ``preflight``,
    ``doctor``); ``tried`` holds ``(url, why)`` for each, and the message lists them one per
    line, without a library's exception text or a server's HTML."""

    kind = "network"

    def __init__(
        self,
        tried: Sequence[tuple[str, str]],
        *,
        hint: str | None = None,
    ) -> None:
        self.tried = tuple(tried)
        lines = "".join(f"\n  {url}: {why.rstrip('.')}" for url, why in self.tried)
        super().__init__(
            f"no ComfyUI server is reachable; tried:{lines}",
            hint=hint
            or "start ComfyUI (`storycore comfyui start`), check the URL, or pass --mock / "
            "--fallback mock to render placeholder frames on purpose",
        )

    def paragraph(self) -> str:
        """The list of URLs, one per line, then what to do."""
        return f"{self.message}\n{self.hint}." if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "tried": [{"url": u, "why": w} for u, w in self.tried]}


class ServerUnreachable(ComfyUIError, OSError):
    """Nothing answers at the URL (refused, DNS, TLS, reset)."""

    kind = "network"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        ComfyUIError.__init__(self, message, where=where, hint=hint)


class ServerTimeout(ComfyUIError, TimeoutError):
    """A call or a wait ran past its bound."""

    kind = "network"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        ComfyUIError.__init__(self, message, where=where, hint=hint)


class ServerResponseError(ComfyUIError):
    """The server answered with an unexpected status or a body we cannot parse."""

    kind = "service"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        super().__init__(message, where=where, hint=hint)


class PromptRejected(ComfyUIError):
    """``POST /prompt`` refused the graph (400), or accepted it with ``node_errors``.

    ``node_errors`` is the server's dict, ``error`` its top-level error object.
    """

    kind = "workflow"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        error: dict[str, Any] | None = None,
        node_errors: dict[str, Any] | None = None,
    ) -> None:
        self.error = error or {}
        self.node_errors = node_errors or {}
        super().__init__(message, where=where, hint=hint)


class ExecutionFailed(ComfyUIError):
    """The server reported ``execution_error`` for our prompt."""

    kind = "workflow"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        prompt_id: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        super().__init__(message, where=where, hint=hint)


class PromptInterrupted(ComfyUIError):
    """The prompt was interrupted or removed from the queue."""

    kind = "service"


class PromptLost(ComfyUIError):
    """The prompt is neither queued, running nor in history: the server forgot it."""

    kind = "service"


class UnsafePathError(ComfyUIError):
    """A filename or subfolder from the server would make a write leave its target folder."""

    kind = "system"


class ManagerError(StoryCoreError):
    """Starting, stopping or inspecting a local ComfyUI failed."""

    exit_code = 5
    kind = "service"


class InstallNotFound(ManagerError):
    """No runnable ComfyUI was found at the configured install path."""

    kind = "configuration"


class PortInUse(ManagerError):
    """The port is held by a process that is not a ComfyUI we can adopt."""


class StartupFailed(ManagerError):
    """The ComfyUI process exited during start-up or never became ready."""


class StopFailed(ManagerError):
    """Processes survived termination and kill."""

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        survivors: Iterable[int] = (),
    ) -> None:
        self.survivors = list(survivors)
        super().__init__(message, where=where, hint=hint)


class WorkflowError(StoryCoreError):
    """A graph could not be built or is invalid."""

    exit_code = 6
    kind = "workflow"


class TemplateError(WorkflowError):
    """A user workflow template or one of its bindings is wrong."""

    kind = "configuration"


class PreflightFailed(WorkflowError):
    """The preflight found problems; ``problems`` lists every one."""

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        problems: Sequence[Any] = (),
    ) -> None:
        self.problems = list(problems)
        super().__init__(message, where=where, hint=hint)


class AssetError(StoryCoreError):
    """Downloading, verifying or storing an asset failed."""

    exit_code = 7
    kind = "system"


class ChecksumMismatch(AssetError):
    """A file's size or sha256 differs from what was expected."""


class OutputNotFetched(AssetError):
    """The server rendered the panel, but its image could not be fetched into the project.

    Never answered by rendering again: the prompt stays open in the journal and the next run
    fetches the image from ``/history``.
    """


class RenderError(StoryCoreError):
    """The engine could not finish rendering the board."""

    exit_code = 8
    kind = "service"
