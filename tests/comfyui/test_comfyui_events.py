"""events.py against every recorded WebSocket transcript of a real ComfyUI."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storycore.comfyui import events as ev
from tests._recordings import RECORDINGS_DIR, recording_names, recording_path


def _transcript(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _transcripts() -> list[Path]:
    files = [RECORDINGS_DIR / name for name in recording_names("ws_*.jsonl")]
    assert len(files) >= 20, "expected the full set of recorded transcripts"
    return files


EXPECTED_TYPES = {
    "status": ev.ServerStatus,
    "feature_flags": ev.FeatureFlags,
    "execution_start": ev.ExecutionStarted,
    "execution_cached": ev.CachedNodes,
    "progress": ev.NodeProgress,
    "progress_state": ev.ProgressState,
    "executed": ev.NodeExecuted,
    "execution_success": ev.ExecutionSuccess,
    "execution_error": ev.ExecutionError,
    "execution_interrupted": ev.ExecutionInterrupted,
}


def _frame_text(entry: dict[str, Any]) -> str:
    if "raw" in entry:
        return str(entry["raw"])
    return json.dumps({"type": entry["type"], "data": entry["data"]})


def rebuild_binary(entry: dict[str, Any]) -> bytes:
    """Rebuild a binary frame from the recorded header, metadata, magic and length."""
    head = bytes.fromhex(entry["first8_hex"])
    body = head
    if entry["event_type"] == 4:
        body += json.dumps(entry["metadata"]).encode()
    body += bytes.fromhex(entry["image_magic_hex"])
    assert len(body) <= entry["len"]
    return body + b"\0" * (entry["len"] - len(body))


def parsed(path: Path) -> list[tuple[str, ev.Event | None, dict[str, Any]]]:
    out: list[tuple[str, ev.Event | None, dict[str, Any]]] = []
    for entry in _transcript(path):
        if entry["kind"] == "ws_recv":
            out.append((entry.get("client", ""), ev.parse_text_frame(_frame_text(entry)), entry))
        elif entry["kind"] == "ws_recv_binary":
            out.append(
                (entry.get("client", ""), ev.parse_binary_frame(rebuild_binary(entry)), entry)
            )
    return out


def test_every_recorded_frame_parses_to_its_type() -> None:
    seen: set[str] = set()
    for path in _transcripts():
        for _client, event, entry in parsed(path):
            assert event is not None, f"{path.name}: {entry}"
            if entry["kind"] == "ws_recv_binary":
                assert isinstance(event, ev.PreviewImage)
                seen.add("binary")
                continue
            kind = entry.get("type") or json.loads(entry["raw"])["type"]
            seen.add(kind)
            if kind == "executing":
                expected = ev.ExecutionDone if entry["data"]["node"] is None else ev.NodeExecuting
                assert isinstance(event, expected)
            else:
                assert isinstance(event, EXPECTED_TYPES[kind]), (path.name, kind, event)
    assert {"binary", "execution_error", "execution_interrupted", "progress"} <= seen


def test_each_started_prompt_ends_with_one_outcome_then_done() -> None:
    checked = 0
    for path in _transcripts():
        per_prompt: dict[tuple[str, str], list[ev.Event]] = {}
        for client, event, _ in parsed(path):
            pid = getattr(event, "prompt_id", None)
            if event is not None and pid is not None:
                per_prompt.setdefault((client, pid), []).append(event)
        for (_client, _pid), stream in per_prompt.items():
            # A reused prompt id runs more than once: one run per execution_start.
            runs: list[list[ev.Event]] = []
            for event in stream:
                if isinstance(event, ev.ExecutionStarted):
                    runs.append([])
                if runs:
                    runs[-1].append(event)
            for events in runs:
                outcomes = [
                    e
                    for e in events
                    if isinstance(
                        e, ev.ExecutionSuccess | ev.ExecutionError | ev.ExecutionInterrupted
                    )
                ]
                assert len(outcomes) == 1, (path.name, events)
                assert isinstance(events[-1], ev.ExecutionDone), path.name
                assert sum(isinstance(e, ev.ExecutionDone) for e in events) == 1
                assert events.index(outcomes[0]) < len(events) - 1
                checked += 1
    assert checked >= 40


def test_success_transcript_has_exactly_one_success() -> None:
    events = [e for _, e, _ in parsed(recording_path("ws_a_success.jsonl"))]
    successes = [e for e in events if isinstance(e, ev.ExecutionSuccess)]
    assert len(successes) == 1
    executed = [e for e in events if isinstance(e, ev.NodeExecuted)]
    assert executed[0].node_id == "2"
    assert executed[0].output["images"][0]["filename"] == "storycore_test_00001_.png"
    status = [e for e in events if isinstance(e, ev.ServerStatus)]
    assert status[0].sid == "d02126430c674faaa9276bf304afe749"
    assert [s.queue_remaining for s in status] == [0, 1, 1, 0]
    states = [e for e in events if isinstance(e, ev.ProgressState)]
    assert states[-1].nodes[-1].state == "finished"


def test_execution_error_fields() -> None:
    errors = [
        e
        for _, e, _ in parsed(recording_path("ws_d_execution_error.jsonl"))
        if isinstance(e, ev.ExecutionError)
    ]
    assert len(errors) == 2
    first = errors[0]
    assert (first.node_id, first.node_type, first.exception_type) == ("2", "SaveImage", "Exception")
    assert "outside the output folder" in first.exception_message
    assert first.executed == ("1",)
    assert first.traceback and "execution.py" in first.traceback[0]
    assert errors[1].node_type == "ImageBlend"


def test_interrupted_fields() -> None:
    found = [
        e
        for _, e, _ in parsed(recording_path("ws_e_interrupt.jsonl"))
        if isinstance(e, ev.ExecutionInterrupted)
    ]
    assert len(found) == 1
    assert (found[0].node_id, found[0].node_type) == ("12", "ImageBlur")
    assert found[0].executed == ("10", "11", "1")


def test_cached_resubmit_lists_all_nodes() -> None:
    cached = [
        e
        for _, e, _ in parsed(recording_path("ws_b_cached.jsonl"))
        if isinstance(e, ev.CachedNodes)
    ]
    assert any(set(c.nodes) == {"1", "2"} for c in cached)


def test_progress_dialects() -> None:
    events = [e for _, e, _ in parsed(recording_path("ws_sd15_txt2img.jsonl"))]
    steps = [e for e in events if isinstance(e, ev.NodeProgress)]
    assert steps and steps[0].node_id == "3" and (steps[0].value, steps[0].max) == (1, 2)
    states = [e for e in events if isinstance(e, ev.ProgressState)]
    running = [n for s in states for n in s.nodes if n.state == "running"]
    assert running and all(0 <= n.value <= n.max for n in running)


@pytest.mark.parametrize(
    ("name", "event_type", "fmt"),
    [
        ("ws_saveimagewebsocket_no_feature_flags.jsonl", 1, "PNG"),
        ("ws_saveimagewebsocket_with_preview_metadata_flag.jsonl", 4, "PNG"),
        ("ws_sd15_preview_with_metadata_flag.jsonl", 4, "JPEG"),
        ("ws_sd15_preview_without_flag.jsonl", 1, "JPEG"),
    ],
)
def test_binary_frames_decode_per_transcript(name: str, event_type: int, fmt: str) -> None:
    entries = [e for e in _transcript(recording_path(name)) if e["kind"] == "ws_recv_binary"]
    assert entries
    for entry in entries:
        event = ev.parse_binary_frame(rebuild_binary(entry))
        assert isinstance(event, ev.PreviewImage)
        assert event.event_type == event_type == entry["event_type"]
        assert event.format == fmt
        assert event.image.startswith(bytes.fromhex(entry["image_magic_hex"]))
        if event_type == 4:
            assert event.prompt_id == entry["metadata"]["prompt_id"]
            assert event.node_id == entry["metadata"]["node_id"]
            assert event.mime_type == entry["metadata"]["image_type"]
        else:
            assert event.prompt_id is None


def test_progress_text_frame() -> None:
    frame = struct.pack(">II", 3, 2) + b"12" + "étape 3/4".encode()
    event = ev.parse_binary_frame(frame)
    assert event == ev.ProgressText(node_id="12", text="étape 3/4")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        "{}",
        '{"type": "status"}',
        '{"type": "status", "data": []}',
        '{"type": "brand_new_message", "data": {"x": 1}}',
        '{"type": "executing", "data": {"prompt_id": "p"}}',
        '{"type": "executing", "data": {"node": {"a": 1}, "prompt_id": "p"}}',
        '{"type": "progress", "data": {"value": "x", "max": 2, "prompt_id": "p"}}',
        '{"type": "execution_start", "data": {"prompt_id": null}}',
        '{"type": "execution_cached", "data": {"nodes": "1", "prompt_id": "p"}}',
        '{"type": "progress_state", "data": {"nodes": [], "prompt_id": "p"}}',
        "[" * 5000,
    ],
)
def test_malformed_text_frames_are_ignored(frame: str) -> None:
    assert ev.parse_text_frame(frame) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00\x00\x01",
        struct.pack(">II", 99, 0) + b"xx",
        struct.pack(">II", 4, 500) + b"{}",
        struct.pack(">II", 4, 3) + b"[1]",
        struct.pack(">II", 4, 4) + b"\xff\xfe{}",
        struct.pack(">II", 3, 50) + b"1",
    ],
)
def test_malformed_binary_frames_are_ignored(frame: bytes) -> None:
    assert ev.parse_binary_frame(frame) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([*EXPECTED_TYPES, "executing", "other"]),
    data=st.dictionaries(
        st.sampled_from(
            ["prompt_id", "node", "nodes", "value", "max", "status", "output", "node_id"]
        ),
        json_values,
        max_size=6,
    ),
)
def test_fuzzed_messages_never_raise(kind: str, data: dict[str, Any]) -> None:
    result = ev.parse_message({"type": kind, "data": data})
    assert result is None or type(result).__module__ == ev.__name__


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([1, 2, 3, 4, 5]))
def test_fuzzed_binary_never_raises(tail: bytes, kind: int) -> None:
    result = ev.parse_binary_frame(struct.pack(">I", kind) + tail)
    assert result is None or isinstance(result, ev.PreviewImage | ev.ProgressText)


@pytest.mark.parametrize(
    "data",
    [
        {"prompt_id": "p", "value": 10**400, "max": 3, "node": "3"},
        {"prompt_id": "p", "value": 1, "max": 10**400, "node": "3"},
        {"prompt_id": "p", "value": float("inf"), "max": 3, "node": "3"},
    ],
)
def test_numbers_past_a_float_make_a_progress_frame_unparseable(data: dict[str, Any]) -> None:
    assert ev.parse_message({"type": "progress", "data": data}) is None


def test_ids_past_the_length_limit_are_refused_and_surrogates_replaced() -> None:
    long_id = "9" * (ev.MAX_ID_LENGTH + 1)
    assert (
        ev.parse_message({"type": "executing", "data": {"prompt_id": "p", "node": long_id}}) is None
    )
    assert (
        ev.parse_message({"type": "executing", "data": {"prompt_id": long_id, "node": "1"}}) is None
    )
    cached = ev.parse_message(
        {"type": "execution_cached", "data": {"prompt_id": "p", "nodes": ["1", long_id, 10**2000]}}
    )
    assert cached == ev.CachedNodes("p", ("1",))
    error = ev.parse_text_frame(
        '{"type": "execution_error", "data": {"prompt_id": "p", "exception_message": "a\\ud800b"}}'
    )
    assert isinstance(error, ev.ExecutionError)
    assert error.exception_message == "a\ufffdb"
    state = ev.parse_message(
        {"type": "progress_state", "data": {"prompt_id": "p", "nodes": {long_id: {"state": "x"}}}}
    )
    assert state == ev.ProgressState("p", ())
