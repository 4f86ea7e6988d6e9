"""The ``storycore`` command line: the only layer that prints or uses rich."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every :class:`~storycore.errors.StoryCoreError` to its exit code."""
    from storycore.cli._common import report_error
    from storycore.cli.app import build_app
    from storycore.errors import StoryCoreError

    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args
    app = build_app()
    try:
        app(args=args, prog_name="storycore")
    except StoryCoreError as err:
        return report_error(err, json_mode)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # typer/click finish every run with SystemExit
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0
