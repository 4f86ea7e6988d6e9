"""The render journal: open prompts, torn lines after a crash or a full disk."""

from __future__ import annotations

from pathlib import Path

from storycore.journal import Journal


def test_open_prompts_are_those_never_closed(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        for n in range(5):
            journal.append("submit", prompt_id=f"p{n}", shot_id=f"s{n}", backend="http://b")
        journal.append("done", prompt_id="p0")
        journal.append("failed", prompt_id="p1")
        journal.append("lost", prompt_id="p2")
        journal.append("download_failed", prompt_id="p3")  # not closing: fetched next run
        journal.append("cancelled", prompt_id="p4")
        assert [p.prompt_id for p in journal.open_prompts()] == ["p3"]


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    with Journal(tmp_path) as first_run:
        first_run.append("submit", prompt_id="a", shot_id="s1", backend="http://b")
    with first_run.path.open("a", encoding="utf-8") as handle:
        handle.write('{"event":"submit","prompt_id":"torn","sh')  # a crash mid-write
    with Journal(tmp_path) as journal:  # the next run
        journal.append("done", prompt_id="a")
    events = list(journal.events())
    assert [(e["event"], e["prompt_id"]) for e in events] == [("submit", "a"), ("done", "a")]
    assert journal.open_prompts() == []
