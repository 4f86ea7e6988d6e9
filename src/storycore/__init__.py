"""StoryCore's ComfyUI bridge: render a storyboard through ComfyUI, nothing lost, nothing twice.

The public surface is re-exported here; implementation modules are private to the package.
"""

from storycore.errors import (
    AssetError,
    ChecksumMismatch,
    ComfyUIError,
    ConfigError,
    ExecutionFailed,
    InstallNotFound,
    ManagerError,
    OutputNotFetched,
    PortInUse,
    PreflightFailed,
    ProjectError,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    RenderError,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    StartupFailed,
    StopFailed,
    StoryCoreError,
    TemplateError,
    UnsafePathError,
    WorkflowError,
)

__version__ = "0.1.0"

__all__ = [
    "AssetError",
    "ChecksumMismatch",
    "ComfyUIError",
    "ConfigError",
    "ExecutionFailed",
    "InstallNotFound",
    "ManagerError",
    "OutputNotFetched",
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
    "__version__",
]
