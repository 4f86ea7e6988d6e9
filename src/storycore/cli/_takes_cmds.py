"""``storycore takes SHOT``, ``takes pick|approve|reject|comment``: review a shot's takes.

``takes SHOT`` lists the takes (a hidden ``list`` command: when the first word is not a known
subcommand, ``list`` is put in front, so a shot named ``pick`` is ``takes list pick``).
Every action is :mod:`storycore.review._actions` (journal first, then a compare-and-swap write).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from storycore.cli._common import Output, command, shown

if TYPE_CHECKING:
    from storycore.review._cards import Take

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PROJECT_OPTION = typer.Option(
    Path("."), "--project", "-p", help="The project folder (holds project.json)."
)
SHOT_ARGUMENT = typer.Argument(..., help="The shot id, e.g. shot_01.")
RENDER_ARGUMENT = typer.Argument(..., help="The take: its render number (2, r002) or its id.")
OPTIONAL_RENDER = typer.Argument(None, help="The take (default: the shot's active take).")
TEXT_ARGUMENT = typer.Argument(..., help="The comment (empty text removes it).")


class _TakesGroup(TyperGroup):
    """``takes SHOT`` means ``takes list SHOT``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if (
            first is not None
            and first not in self.commands
            and not any(a in ("-h", "--help") for a in args[: args.index(first)])
        ):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _take_json(take: Take) -> dict[str, Any]:
    return dataclasses.asdict(take)


def _say(out: Output, verb: str, shot_id: str, take: Take, json_out: bool) -> None:
    if json_out:
        out.json({"ok": True, "action": verb, "shot_id": shot_id, "take": _take_json(take)})
    else:
        out.data(f"{shown(shot_id)}: render {take.render} ({shown(take.asset_id)}) {verb}")


def register(app: typer.Typer) -> None:
    """Add the ``takes`` group to ``app``."""
    group = typer.Typer(
        cls=_TakesGroup,
        help="List a shot's takes (`takes SHOT`); pick, approve, reject or comment.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="takes")

    @command(group, "list", reads_settings=False)
    def list_cmd(
        shot: str = SHOT_ARGUMENT, project: Path = PROJECT_OPTION, json_out: bool = JSON_OPTION
    ) -> None:
        """The takes of SHOT: render, take, profile, seed, status, approval, active, path."""
        from rich.table import Table

        from storycore.project import load_project
        from storycore.review._actions import list_takes

        out = Output(json_out)
        takes = list_takes(load_project(project), shot)
        if json_out:
            out.json({"ok": True, "shot_id": shot, "takes": [_take_json(t) for t in takes]})
            return
        if not takes:
            out.data(f"{shown(shot)} has no takes yet.")
            return
        table = Table(title=f"Takes of {shown(shot)}")
        for column in ("render", "take", "profile", "seed", "status", "review", "active", "path"):
            table.add_column(column)
        for t in takes:
            review = "approved" if t.approved else "rejected" if t.rejected else ""
            table.add_row(
                str(t.render),
                str(t.take),
                shown(t.profile or "-"),
                "-" if t.seed is None else str(t.seed),
                "placeholder" if t.placeholder else "rendered",
                review,
                "*" if t.active else "",
                shown(t.path or "-"),
            )
        out.console.print(table)

    group.registered_commands[-1].hidden = True  # `takes SHOT` is how a person types it

    @command(group, "pick", reads_settings=False)
    def pick_cmd(
        shot: str = SHOT_ARGUMENT,
        render: str = RENDER_ARGUMENT,
        project: Path = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Make take RENDER the active take of SHOT (the one the board shows)."""
        from storycore.review._actions import pick_take

        _say(Output(json_out), "picked", shot, pick_take(project, shot, render), json_out)

    @command(group, "approve", reads_settings=False)
    def approve_cmd(
        shot: str = SHOT_ARGUMENT,
        render: str | None = OPTIONAL_RENDER,
        project: Path = PROJECT_OPTION,
        undo: bool = typer.Option(False, "--undo", help="Withdraw the approval."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Approve a take of SHOT (the active one by default); clears a rejection."""
        from storycore.review._actions import set_approval

        take = set_approval(project, shot, render, not undo)
        _say(Output(json_out), "no longer approved" if undo else "approved", shot, take, json_out)

    @command(group, "reject", reads_settings=False)
    def reject_cmd(
        shot: str = SHOT_ARGUMENT,
        render: str | None = OPTIONAL_RENDER,
        project: Path = PROJECT_OPTION,
        undo: bool = typer.Option(False, "--undo", help="Withdraw the rejection."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Reject a take of SHOT (the active one by default); withdraws an approval."""
        from storycore.review._actions import reject_take

        take = reject_take(project, shot, render, undo=undo)
        _say(Output(json_out), "no longer rejected" if undo else "rejected", shot, take, json_out)

    @command(group, "comment", reads_settings=False)
    def comment_cmd(
        shot: str = SHOT_ARGUMENT,
        text: str = TEXT_ARGUMENT,
        project: Path = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Set the comment of SHOT (empty text removes it)."""
        from storycore.review._actions import set_comment

        out = Output(json_out)
        kept = set_comment(project, shot, text)
        if json_out:
            out.json({"ok": True, "shot_id": shot, "comment": kept})
        else:
            out.data(f"{shown(shot)}: " + ("comment saved" if kept else "comment removed"))
