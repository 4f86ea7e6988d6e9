"""The Error Handler: classify every failure and say what to do about it.

:func:`classify` turns any exception into a :class:`Diagnosis` (category, severity, suggestion,
strategy); :func:`classify_execution_error` and :func:`classify_prompt_rejection` read ComfyUI's
own error bodies. :func:`run_with_retry` applies the strategy; :class:`DiagnosticHistory` keeps
the last diagnoses in the state folder.
"""

from storycore.diagnostics._classify import classify
from storycore.diagnostics._comfy import (
    LOADER_INPUT_FOLDERS,
    classify_execution_error,
    classify_prompt_rejection,
    execution_error_from_history,
)
from storycore.diagnostics._context import gather_context
from storycore.diagnostics._history import HISTORY_FILE, DiagnosticHistory
from storycore.diagnostics._model import (
    Category,
    Diagnosis,
    DiagnosticContext,
    Severity,
    Strategy,
)
from storycore.diagnostics._retry import RetryPolicy, diagnosis_of, run_with_retry

__all__ = [
    "HISTORY_FILE",
    "LOADER_INPUT_FOLDERS",
    "Category",
    "Diagnosis",
    "DiagnosticContext",
    "DiagnosticHistory",
    "RetryPolicy",
    "Severity",
    "Strategy",
    "classify",
    "classify_execution_error",
    "classify_prompt_rejection",
    "diagnosis_of",
    "execution_error_from_history",
    "gather_context",
    "run_with_retry",
]
