"""``storycore doctor``: one report of everything that decides whether a render can work.

:func:`build_report` gathers it (an adapter: files, tools, bounded HTTP); the CLI renders it.
"""

from storycore.doctor._build import build_report, probe_capabilities
from storycore.doctor._report import (
    DoctorReport,
    InstallCheck,
    Problem,
    ProjectCheck,
    ServerCheck,
)

__all__ = [
    "DoctorReport",
    "InstallCheck",
    "Problem",
    "ProjectCheck",
    "ServerCheck",
    "build_report",
    "probe_capabilities",
]
