"""The ``storycore`` command line: the only layer that prints or uses rich."""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every :class:`~storycore.errors.StoryCoreError` to its exit code.

    Nothing ends in a traceback: a closed pipe (``storycore ... | head``) ends quietly, Ctrl-C
    exits 130, and an unexpected error is one line (``--verbose`` adds the traceback).
    """
    from storycore.cli._common import EXIT_BROKEN_PIPE, report_error
    from storycore.cli.app import build_app
    from storycore.errors import StoryCoreError

    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args
    app = build_app()
    try:
        app(args=args, prog_name="storycore")
    except StoryCoreError as err:
        return _quietly(report_error, err, json_mode)
    except KeyboardInterrupt:
        return _quietly(_report_interrupt)
    except BrokenPipeError:
        return _pipe_closed()
    except SystemExit as exc:  # typer/click finish every run with SystemExit
        code = exc.code
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":  # click saw EPIPE on stdout
            return EXIT_BROKEN_PIPE
        if _by_ctrl_c(exc):  # typer turns KeyboardInterrupt into exit 130, silently
            return _quietly(_report_interrupt)
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    except Exception as exc:  # the last line of defence: say what happened, in one line
        return _quietly(_report_unexpected, exc, "--verbose" in args or "-v" in args)
    return 0


def _quietly(report: object, *args: object) -> int:
    try:
        return int(report(*args))  # type: ignore[operator]
    except BrokenPipeError:
        return _pipe_closed()


def _pipe_closed() -> int:
    from storycore.cli._common import EXIT_BROKEN_PIPE

    """stdout's reader went away: point stdout at /dev/null so the exit flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def _by_ctrl_c(exc: BaseException) -> bool:
    """Did a KeyboardInterrupt lead to ``exc``?"""
    seen = exc.__cause__ or exc.__context__
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _report_interrupt() -> int:
    from storycore.errors import EXIT_INTERRUPTED

    sys.stderr.write("interrupted (Ctrl-C)\n")
    sys.stderr.flush()
    return EXIT_INTERRUPTED


def _report_unexpected(exc: Exception, verbose: bool) -> int:
    import traceback

    from storycore._redact import redact
    from storycore._text import terminal_safe

    def say(text: str) -> None:  # the exception may carry server or project text
        sys.stderr.write(terminal_safe(redact(text)))

    if verbose:
        say("".join(traceback.format_exception(exc)))
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        say(
            f"error: {where}{exc.strerror or exc}. Check that the path exists and that you may "
            "read and write it, then run again.\n"
        )
        return 1
    say(
        f"error: unexpected {type(exc).__name__}: {exc}. This is a bug in StoryCore; run again "
        "with --verbose for the details and report them.\n"
    )
    return 1
