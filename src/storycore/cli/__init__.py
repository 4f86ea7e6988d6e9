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
    from storycore.errors import EXIT_INTERRUPTED, StoryCoreError

    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args
    app = build_app()
    try:
        app(args=args, prog_name="storycore")
    except StoryCoreError as err:
        return _quietly(report_error, err, json_mode)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _pipe_closed()
    except SystemExit as exc:  # typer/click finish every run with SystemExit
        code = exc.code
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":  # click saw EPIPE on stdout
            return EXIT_BROKEN_PIPE
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
