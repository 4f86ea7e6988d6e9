"""``storycore board``: write the storyboard sheet (contact-sheet JPEG and the HTML review
page). A board that cannot be written is a ProjectError (exit 3) naming the path."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from storycore._text import plural
from storycore.cli._common import Output, command

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PDF_OPTION = typer.Option(False, "--pdf", help="Also write storyboard/board.pdf for meetings.")
OUT_OPTION = typer.Option(
    None, "--out", help="Write the PDF here instead (implies --pdf).", metavar="FILE"
)
PROJECT_OPTION = typer.Option(
    Path("."), "--project", "-p", help="The project folder (holds project.json)."
)


def register(app: typer.Typer) -> None:
    """Add ``storycore board`` to ``app``."""

    @command(app, "board", reads_settings=False)
    def board(
        project: Path = PROJECT_OPTION,
        pdf: bool = PDF_OPTION,
        pdf_out: Path | None = OUT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Write storyboard/board.jpg (contact sheet) and board.html (the review page); with
        --pdf also storyboard/board.pdf (one page per 12 panels, with the shot text)."""
        from storycore.project import load_project
        from storycore.review import write_board, write_board_pdf

        out = Output(json_out)
        loaded = load_project(project)
        files = write_board(loaded)
        pdf_path = write_board_pdf(loaded, pdf_out) if pdf or pdf_out else None
        if json_out:
            out.json(
                {
                    "ok": True,
                    "sheet": str(files.sheet),
                    "pages": [str(p) for p in files.pages],
                    "html": str(files.html),
                    "panels": files.panels,
                    "rendered": files.rendered,
                    "placeholders": files.placeholders,
                    "missing": files.missing,
                    "pdf": str(pdf_path) if pdf_path else None,
                }
            )
            return
        out.data(
            escape(
                f"Storyboard: {plural(files.panels, 'panel')}, {files.rendered} rendered, "
                f"{plural(files.placeholders, 'placeholder')}"
                + (f", {files.missing} with a missing file" if files.missing else "")
            )
        )
        out.data(escape(f"  sheet: {files.sheet}"))
        out.data(escape(f"  page:  {files.html}"))
        if pdf_path is not None:
            out.data(escape(f"  pdf:   {pdf_path}"))
