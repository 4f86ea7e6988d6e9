"""Parsing of /prompt errors, /queue and /history bodies, from the recordings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storycore.comfyui import (
    MediaKind,
    PromptStatus,
    describe_node_errors,
    parse_history_entry,
    parse_node_errors,
    parse_queue,
)
from storycore.comfyui._models import parse_node_output
from tests._recordings import recording_text


def _load(name: str) -> Any:
    return json.loads(recording_text(name))


def test_value_not_in_list_names_value_and_installed_choices() -> None:
    body = _load("validation_errors.json")["checkpoint_not_in_list"]["body"]
    problems = parse_node_errors(body["node_errors"])
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.node_id, problem.class_type, problem.input_name) == (
        "1",
        "CheckpointLoaderSimple",
        "ckpt_name",
    )
    assert problem.received_value == "nope.safetensors"
    assert problem.choices == ("tiny-random-sd15.safetensors",)
    text = describe_node_errors(body["error"], body["node_errors"])
    assert "'nope.safetensors'" in text and "tiny-random-sd15.safetensors" in text
    assert "node 1 (CheckpointLoaderSimple) input 'ckpt_name'" in text


def test_combo_options_shape_is_understood() -> None:
    errors = {
        "5": {
            "class_type": "X",
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "",
                    "extra_info": {
                        "input_name": "m",
                        "input_config": ["COMBO", {"options": ["a", "b"]}],
                        "received_value": "c",
                    },
                }
            ],
        }
    }
    assert parse_node_errors(errors)[0].choices == ("a", "b")


def test_every_recorded_validation_body_is_described() -> None:
    cases = _load("validation_errors.json")
    described = 0
    for name, case in cases.items():
        if not isinstance(case, dict) or case.get("status") != 400:
            continue
        body = case["body"]
        text = describe_node_errors(body.get("error"), body.get("node_errors"))
        for problem in parse_node_errors(body.get("node_errors")):
            assert f"node {problem.node_id}" in text, name
            assert problem.class_type in text
        assert body["error"]["message"] in text
        described += 1
    assert described >= 10


def test_queue_pending_sorted_by_number() -> None:
    ops = _load("queue_ops.json")
    queue = parse_queue(ops["queue_with_items"])
    assert [item.prompt_id for item in queue.pending] == ops["queue_pending_order_by_prompt_id"]
    running = queue.running[0].prompt_id
    assert queue.position(running) == 0
    assert queue.position(ops["queue_pending_order_by_prompt_id"][0]) == 1
    assert queue.position("nope") is None
    assert queue.running[0].client_id == "acf63715766f492ca382b632b3464bdc"


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("success:", PromptStatus.SUCCESS),
        ("error:", PromptStatus.ERROR),
        ("error:interrupted", PromptStatus.INTERRUPTED),
    ],
)
def test_history_outcomes(key: str, status: PromptStatus) -> None:
    examples = _load("history_examples.json")["example_entry_by_outcome"]
    body = examples[key]
    ((prompt_id, raw),) = body.items() if len(body) == 1 else [next(iter(body.items()))]
    entry = parse_history_entry(prompt_id, raw)
    assert entry is not None
    assert entry.status is status
    if status is PromptStatus.SUCCESS:
        assert entry.completed
        assert any(output.files for output in entry.outputs.values())
    if status is PromptStatus.ERROR:
        assert entry.message("execution_error") is not None


def test_history_outputs_with_temp_and_subfolder() -> None:
    rec = _load("previewimage_and_subfolder_outputs.json")
    outputs = {k: parse_node_output(k, v) for k, v in rec["outputs"].items()}
    assert [f.type for f in outputs["2"].files] == ["temp", "temp"]
    assert outputs["3"].files[0].subfolder == "storycore_sub"
    assert all(f.kind is MediaKind.IMAGE for o in outputs.values() for f in o.files)


def test_media_kinds_of_gifs_audio_video_records() -> None:
    output = parse_node_output(
        "9",
        {
            "gifs": [
                {
                    "filename": "clip_00001.mp4",
                    "subfolder": "",
                    "type": "output",
                    "format": "video/h264-mp4",
                    "frame_rate": 8,
                },
                {"filename": "loop.gif", "subfolder": "", "type": "output", "format": "image/gif"},
            ],
            "audio": [{"filename": "voice.flac", "subfolder": "", "type": "output"}],
            "images": [{"filename": "anim.webp", "subfolder": "", "type": "output"}],
            "animated": [True],
            "text": ["hello"],
        },
    )
    kinds = [(f.filename, f.kind) for f in output.files]
    assert kinds == [
        ("clip_00001.mp4", MediaKind.VIDEO),
        ("loop.gif", MediaKind.GIF),
        ("voice.flac", MediaKind.AUDIO),
        ("anim.webp", MediaKind.ANIMATION),
    ]
    assert output.files[0].frame_rate == 8.0
    assert output.extra == {"text": ["hello"]}


def test_unknown_history_is_none() -> None:
    assert parse_history_entry("x", None) is None
    assert parse_history_entry("x", []) is None


async def test_handle_progress_and_timings_from_recorded_run() -> None:
    """Feed the real txt2img transcript (progress + progress_state dialects) to a handle."""
    from storycore.comfyui import OverallProgress, PromptHandle
    from storycore.comfyui import events as ev

    lines = [json.loads(x) for x in recording_text("ws_sd15_txt2img.jsonl").splitlines() if x]
    events = [
        ev.parse_message({"type": e["type"], "data": e["data"]})
        for e in lines
        if e["kind"] == "ws_recv" and "type" in e
    ]
    starts = [e for e in events if isinstance(e, ev.ExecutionStarted)]
    prompt_id = starts[0].prompt_id
    graph = next(
        e["request_json"]["prompt"]
        for e in lines
        if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 200
    )
    handle = PromptHandle(prompt_id, client_id=None, graph=graph, deadline=None, idle_timeout=60)
    for event in events:
        if event is not None and event.prompt_id == prompt_id:
            handle.feed(event)
    assert handle.server_done.is_set() and handle.ws_success
    fractions = [e.fraction for e in handle._events if isinstance(e, OverallProgress)]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.8
    timings = handle.timings()
    assert set(timings) == set(graph)
    assert all(t.started is not None and t.finished is not None for t in timings.values())
    assert all(t.duration is not None and t.duration >= 0 for t in timings.values())
