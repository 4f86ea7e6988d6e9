"""The Error Handler against ComfyUI's recorded error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storycore.diagnostics import (
    Category,
    DiagnosticContext,
    Severity,
    Strategy,
    classify,
    classify_execution_error,
    classify_prompt_rejection,
    execution_error_from_history,
)
from storycore.errors import ExecutionFailed, PromptRejected
from tests._recordings import recording_text


def _json(name: str) -> Any:
    return json.loads(recording_text(name))


def _ws_errors(name: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in recording_text(name).splitlines() if line.strip()]
    return [e["data"] for e in events if e.get("type") == "execution_error"]


def test_save_outside_output_and_batch_mismatch_are_bad_input() -> None:
    errors = _ws_errors("ws_d_execution_error.jsonl")
    assert [e["node_type"] for e in errors] == ["SaveImage", "ImageBlend"]
    for data in errors:
        diagnosis = classify_execution_error(data)
        assert diagnosis.code == "bad_input"
        assert diagnosis.category is Category.WORKFLOW
        assert diagnosis.strategy is Strategy.ABORT
        assert diagnosis.node_id == data["node_id"]
        assert data["node_type"] in (diagnosis.where or "")
    assert "outside the output folder" in classify_execution_error(errors[0]).message


def test_history_entries_give_the_same_diagnosis() -> None:
    recorded = _json("execution_errors.json")
    codes = {}
    for case, value in recorded.items():
        (entry,) = value["history"].values()
        data = execution_error_from_history(entry)
        assert data is not None, case
        codes[case] = classify_execution_error(data).code
    assert codes == {
        "saveimage_outside_output": "bad_input",
        "imageblend_batch_mismatch": "bad_input",
    }
    assert execution_error_from_history({"status": {"messages": []}}) is None


def test_unified_loader_without_clip_vision_names_installed_models() -> None:
    (data,) = _ws_errors("ws_ipadapter_unified_missing_models.jsonl")
    ctx = DiagnosticContext(installed_models={"clip_vision": ["CLIP-ViT-bigG.safetensors"]})
    diagnosis = classify_execution_error(data, ctx)
    assert diagnosis.code == "missing_model"
    assert diagnosis.category is Category.CONFIGURATION
    assert diagnosis.strategy is Strategy.ABORT
    assert "models/clip_vision" in diagnosis.suggestion
    assert "`CLIP-ViT-bigG.safetensors`" in diagnosis.suggestion
    bare = classify_execution_error(data)
    assert "holds no model files" in bare.suggestion


def test_offline_preprocessors_are_missing_weights() -> None:
    errors = _ws_errors("ws_preprocessor_error.jsonl")
    assert len(errors) == 3
    for data in errors:
        diagnosis = classify_execution_error(data)
        assert diagnosis.code == "missing_model", data["exception_type"]
        assert "huggingface.co" in diagnosis.suggestion
        assert data["node_type"] in diagnosis.suggestion


def test_out_of_memory_retries_once_then_fails_over() -> None:
    (recorded,) = _ws_errors("ws_d_execution_error.jsonl")[1:]
    # Same body shape as the recording, with what ComfyUI's OOM handler writes.
    data = dict(
        recorded,
        node_type="KSampler",
        exception_type="torch.OutOfMemoryError",
        exception_message="Allocation on device \nThis error means you ran out of memory on your "
        "GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the "
        "batch_size to a large number.\n",
    )
    diagnosis = classify_execution_error(data, DiagnosticContext(can_failover=True))
    assert diagnosis.code == "out_of_memory"
    assert diagnosis.category is Category.RESOURCE
    assert diagnosis.strategy is Strategy.RETRY
    assert diagnosis.retry_limit == 1
    assert diagnosis.fallback is Strategy.FAILOVER
    assert "lower the render size or steps" in diagnosis.suggestion
    plain = classify_execution_error(
        {
            "node_id": "3",
            "exception_type": "RuntimeError",
            "exception_message": "CUDA out of memory",
        }
    )
    assert plain.code == "out_of_memory"
    assert plain.fallback is Strategy.ABORT


def test_checkpoint_not_in_list_names_what_is_installed() -> None:
    body = _json("validation_errors.json")["checkpoint_not_in_list"]["body"]
    ctx = DiagnosticContext(installed_models={"checkpoints": ["b.safetensors", "a.safetensors"]})
    diagnosis = classify_prompt_rejection(body, ctx)
    assert diagnosis.code == "missing_model"
    assert diagnosis.strategy is Strategy.ABORT
    assert diagnosis.severity is Severity.HIGH
    assert diagnosis.suggestion == (
        "checkpoint `nope.safetensors` is not installed; "
        "installed: `a.safetensors`, `b.safetensors`"
    )
    assert diagnosis.node_type == "CheckpointLoaderSimple"
    with_mock = classify_prompt_rejection(body, DiagnosticContext(allow_mock=True))
    assert with_mock.strategy is Strategy.MOCK


def test_ipadapter_models_missing_lists_both_loaders() -> None:
    cases = {c["case"]: c for c in _json("custom_nodes_validation.json")["cases"]}
    body = cases["a_ipadapter_models_missing"]["body"]
    diagnosis = classify_prompt_rejection(body)
    assert diagnosis.code == "missing_model"
    assert "(models/clip_vision)" in diagnosis.message
    assert "(models/ipadapter)" in diagnosis.message


def test_unknown_class_is_a_missing_custom_node() -> None:
    body = _json("validation_errors.json")["unknown_class_type"]["body"]
    diagnosis = classify_prompt_rejection(body)
    assert diagnosis.code == "missing_custom_node"
    assert diagnosis.node_type == "NoSuchNode"
    assert diagnosis.where == "#1"
    assert "install its custom node pack" in diagnosis.suggestion


def test_misspelt_custom_class_gets_did_you_mean() -> None:
    cases = {c["case"]: c for c in _json("custom_nodes_validation.json")["cases"]}
    known = frozenset(_json("object_info_custom_nodes.json"))
    ctx = DiagnosticContext(known_node_classes=known)
    wrong_case = classify_prompt_rejection(cases["b2_case_IPadapterModelLoader"]["body"], ctx)
    assert "case-sensitive" in wrong_case.suggestion
    assert "`IPAdapterModelLoader`" in wrong_case.suggestion
    typo = classify_prompt_rejection(cases["b_misspelled_IPAdapterAdvance"]["body"], ctx)
    assert "did you mean `IPAdapterAdvanced`" in typo.suggestion
    no_index = classify_prompt_rejection(cases["g_misspelled_OpenPosePreprocessor"]["body"])
    assert "comfyui_controlnet_aux" in no_index.suggestion


@pytest.mark.parametrize(
    "case", ["value_below_min", "wrong_type_string_for_int", "link_type_mismatch"]
)
def test_bad_values_are_bad_input(case: str) -> None:
    body = _json("validation_errors.json")[case]["body"]
    diagnosis = classify_prompt_rejection(body)
    assert diagnosis.code == "bad_input"
    assert diagnosis.category is Category.WORKFLOW
    assert diagnosis.strategy is Strategy.ABORT
    (node_id,) = body["node_errors"]
    assert f"node {node_id}" in diagnosis.message


def test_exceptions_carrying_comfy_bodies_classify_like_the_bodies() -> None:
    body = _json("validation_errors.json")["checkpoint_not_in_list"]["body"]
    exc = PromptRejected(
        "rejected",
        where="http://127.0.0.1:8188/prompt",
        error=body["error"],
        node_errors=body["node_errors"],
    )
    assert classify(exc).code == "missing_model"
    (data,) = _ws_errors("ws_ipadapter_unified_missing_models.jsonl")
    failed = ExecutionFailed(
        "failed",
        node_id=data["node_id"],
        node_type=data["node_type"],
        exception_type=data["exception_type"],
        exception_message=data["exception_message"],
    )
    assert classify(failed).code == "missing_model"


@pytest.mark.parametrize("case", ["prompt_is_list", "malformed_json_body"])
def test_a_500_to_a_prompt_body_is_not_retried(case: str) -> None:
    from storycore.errors import ServerResponseError

    recorded = _json("validation_errors.json")[case]
    exc = ServerResponseError(
        "unexpected status",
        where="http://127.0.0.1:8188/prompt",
        status=recorded["status"],
        body=recorded["body"],
    )
    diagnosis = classify(exc)
    assert (diagnosis.code, diagnosis.strategy) == ("malformed_prompt", Strategy.ABORT)
    elsewhere = ServerResponseError("boom", where="http://127.0.0.1:8188/queue", status=500)
    assert classify(elsewhere).strategy is Strategy.RETRY


@pytest.mark.parametrize("case", ["no_output_node", "no_prompt_key"])
def test_prompt_level_rejections_abort(case: str) -> None:
    body = _json("validation_errors.json")[case]["body"]
    diagnosis = classify_prompt_rejection(body)
    assert diagnosis.strategy is Strategy.ABORT
    assert diagnosis.code == body["error"]["type"]
    assert body["error"]["message"] in diagnosis.message
