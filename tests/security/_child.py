"""Run ``storycore`` as a child process with a memory ceiling, reporting its peak RSS.

``python -m tests.security._child ARGS...`` is ``python -m storycore ARGS...`` with two
additions: the address space is capped (``STORYCORE_TEST_AS_MB``, default 4096) so an attack
that would take gigabytes fails the child instead of the machine, and on exit the child's
peak resident set (``ru_maxrss``) is written to the file named by ``STORYCORE_TEST_RSS_FILE``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import sys


def _write_peak(target: str | None) -> None:
    if target:
        # VmHWM is this program's own peak; ru_maxrss also holds the parent's peak on Linux
        # (execve folds the peak of the forked or vforked copy of the test process into it).
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with (
            contextlib.suppress(OSError, ValueError),
            open("/proc/self/status", encoding="ascii") as status,
        ):
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
        with open(target, "w", encoding="ascii") as handle:
            handle.write(str(peak_kb))


def main() -> None:
    # Taken out of the environment: the CLI would warn that they name no StoryCore setting.
    limit_mb = int(os.environ.pop("STORYCORE_TEST_AS_MB", "4096"))
    limit = limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    atexit.register(_write_peak, os.environ.pop("STORYCORE_TEST_RSS_FILE", None))
    from storycore.cli import main as storycore_main

    sys.argv = ["storycore", *sys.argv[1:]]
    sys.exit(storycore_main())


if __name__ == "__main__":
    main()
