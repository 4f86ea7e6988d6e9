"""Apply a diagnosis: retry with bounded exponential backoff, then fall back or give up.

:func:`run_with_retry` calls ``fn``; on failure it classifies the exception and does what the
diagnosis says. ``RETRY`` sleeps ``policy.delay(n)`` and tries again while both the policy and the
diagnosis allow it; then the diagnosis' ``fallback`` applies. ``FAILOVER``, ``POLL`` and ``MOCK``
run the handler the caller gave for that strategy; with no handler, or for ``ABORT``, the
original exception is raised again with its diagnosis attached (see :func:`diagnosis_of`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from storycore.diagnostics._classify import classify as default_classify
from storycore.diagnostics._history import DiagnosticHistory
from storycore.diagnostics._model import Diagnosis, Strategy

__all__ = ["RetryPolicy", "diagnosis_of", "run_with_retry"]

T = TypeVar("T")
_ATTR = "storycore_diagnosis"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``max_attempts`` counts every call, the first included. Delays grow as
    ``base_delay * multiplier**(n-1)``, capped at ``max_delay``, each stretched by up to
    ``jitter`` (a fraction). ``deadline`` bounds the whole run (seconds), sleeps included.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.1
    deadline: float | None = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1 or self.jitter < 0:
            raise ValueError("delays must be >= 0, multiplier >= 1, jitter >= 0")

    @classmethod
    def from_settings(cls, max_retries: int, deadline: float | None = 120.0) -> RetryPolicy:
        """A policy from ``comfyui.max_retries`` (retries, so attempts = retries + 1)."""
        return cls(max_attempts=max_retries + 1, deadline=deadline)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        raw = min(self.max_delay, self.base_delay * self.multiplier ** max(0, retry - 1))
        spread = (rng or random).uniform(0.0, self.jitter) if self.jitter else 0.0
        return min(self.max_delay, raw * (1.0 + spread))


def diagnosis_of(exc: BaseException) -> Diagnosis | None:
    """The diagnosis :func:`run_with_retry` attached to ``exc`` before raising it, if any."""
    found = getattr(exc, _ATTR, None)
    return found if isinstance(found, Diagnosis) else None


Handler = Callable[[Diagnosis], Awaitable[T]]


async def run_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy | None = None,
    classify: Callable[[BaseException], Diagnosis] = default_classify,
    *,
    fallbacks: Mapping[Strategy, Handler[T]] | None = None,
    history: DiagnosticHistory | None = None,
    on_diagnosis: Callable[[Diagnosis, int], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``fn`` and apply the strategy of each failure's diagnosis (see the module doc).

    ``on_diagnosis(diagnosis, attempt)`` is told of every failure (for logs and metrics);
    ``history`` records each one. Cancellation is never caught.
    """
    pol = policy or RetryPolicy()
    handlers = dict(fallbacks or {})
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            diagnosis = classify(exc)
            if history is not None:
                await history.arecord(diagnosis)
            if on_diagnosis is not None:
                on_diagnosis(diagnosis, attempt)
            strategy = diagnosis.strategy
            if strategy is Strategy.RETRY:
                retries_done = attempt - 1
                wait = pol.delay(attempt)
                elapsed = time.monotonic() - started
                in_time = pol.deadline is None or elapsed + wait < pol.deadline
                if attempt < pol.max_attempts and retries_done < diagnosis.retry_limit and in_time:
                    await sleep(wait)
                    continue
                strategy = diagnosis.fallback
            handler = handlers.get(strategy)
            if strategy is not Strategy.ABORT and handler is not None:
                return await handler(diagnosis)
            setattr(exc, _ATTR, diagnosis)
            raise
