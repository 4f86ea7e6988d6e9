"""The prompt queue, the history and the worker that executes graphs like ComfyUI.

Message order per prompt (to the prompt's ``client_id``; ``progress_state`` and
``execution_interrupted`` go to everyone when there is none)::

    status (queued) · status (taken) · execution_start · execution_cached
    per node: progress_state · executing · [progress_state · progress per step] · executed ·
              progress_state
    execution_success | execution_error | execution_interrupted · status · executing(null)

The history entry is written before the final ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._graph import ExecutionList, ProgressRegistry, is_link, signatures
from ._images import encode_preview, placeholder, png_bytes
from ._node_sampling import progress_plan
from ._nodedefs import NodeDefs
from ._nodes import IMPLEMENTATIONS, Latent, NodeContext, generic
from ._queue import PromptQueue, QueueItem
from ._ws import SocketHub

__all__ = ["Executor", "QueueItem"]

_log = logging.getLogger(__name__)


class _Interrupted(Exception):
    pass


@dataclass
class _CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, list) and value and hasattr(value[0], "size"):
        w, h = value[0].size
        return f"tensor of shape [{len(value)}, {h}, {w}, 3] (emulated)"
    return str(value)


def _traceback(class_type: str, message: str) -> list[str]:
    return [
        '  File "/opt/ComfyUI/execution.py", line 496, in execute\n'
        "    output_data, output_ui, has_subgraph, has_pending_tasks = "
        "await get_output_data(...)\n",
        '  File "/opt/ComfyUI/execution.py", line 315, in get_output_data\n'
        "    return_values = await _async_map_node_over_list(...)\n",
        f'  File "/opt/ComfyUI/nodes.py", line 1, in {class_type}\n    raise {message!r}\n',
    ]


class Executor(PromptQueue):
    """The worker task and the output cache, on top of the queue and the history."""

    def __init__(
        self,
        defs: NodeDefs,
        hub: SocketHub,
        *,
        output_dir: Path,
        input_dir: Path,
        temp_dir: Path,
        step_seconds: float,
        node_seconds: float,
        preview: bool,
        max_history: int,
        on_prompt_start: Callable[[str], None],
        on_node_start: Callable[[str, str, str], None],
        profile: str = "0.3.64",
    ) -> None:
        self.defs = defs
        self.profile = profile
        self.output_dir = output_dir
        self.input_dir = input_dir
        self.temp_dir = temp_dir
        self.step_seconds = step_seconds
        self.node_seconds = node_seconds
        self.preview = preview
        super().__init__(hub, max_history)
        self._on_prompt_start = on_prompt_start
        self._on_node_start = on_node_start
        self._task_counter = 0
        self._cache: dict[str, _CacheEntry] = {}
        self._interrupt = False
        self._task: asyncio.Task[None] | None = None
        self._cur_sigs: dict[str, str] = {}

    def interrupt(self, prompt_id: str | None) -> bool:
        if prompt_id is None:
            self._interrupt = True
            return True
        if any(item[1] == prompt_id for item in self.running.values()):
            self._interrupt = True
            return True
        return False

    def free(self, free_memory: bool) -> None:
        if free_memory:
            self._cache.clear()

    # ---- worker --------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._worker(), name="emulator-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=5.0)
            self._task = None

    async def _worker(self) -> None:
        while True:
            if not self._heap:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            item = heapq.heappop(self._heap)[3]
            task_id = self._task_counter
            self._task_counter += 1
            self.running[task_id] = item
            self._status()
            try:
                await self._execute(task_id, item)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving; a bug here must not kill the worker
                _log.exception("emulator worker failed on prompt %s", item[1])
                self.running.pop(task_id, None)
                self._status()

    def _is_changed(self, uid: str, node: dict[str, Any]) -> Any:
        if node["class_type"] == "SaveImageWebsocket":  # IS_CHANGED returns the time: never cached
            return time.monotonic_ns()
        if node["class_type"] in ("LoadImage", "LoadImageMask"):
            from ._nodes import resolve_input_image

            path = resolve_input_image(
                str(node.get("inputs", {}).get("image", "")),
                self.input_dir,
                self.output_dir,
                self.temp_dir,
            )
            try:
                st = path.stat()
            except OSError:
                return "missing"
            return [st.st_mtime_ns, st.st_size]
        return None

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _execute(self, task_id: int, item: QueueItem) -> None:
        _number, prompt_id, prompt, extra_data, outputs = item
        client: str | None = extra_data.get("client_id")
        hub = self.hub
        self._interrupt = False
        hub.current_client_id = client
        messages: list[list[Any]] = []

        def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
            data = {**data, "timestamp": _now_ms()}
            messages.append([event, data])
            if client is not None or broadcast:
                hub.send(event, data, client)

        self._on_prompt_start(prompt_id)
        add_message("execution_start", {"prompt_id": prompt_id}, False)
        try:
            sigs = signatures(prompt, self._is_changed)
        except (ValueError, KeyError, RecursionError):
            sigs = {uid: f"nocache-{prompt_id}-{uid}" for uid in prompt}
        self._cur_sigs = sigs
        live = set(sigs.values())
        self._cache = {k: v for k, v in self._cache.items() if k in live}
        cached_ids = [uid for uid in prompt if sigs[uid] in self._cache]
        add_message("execution_cached", {"nodes": cached_ids, "prompt_id": prompt_id}, False)

        progress = ProgressRegistry(prompt_id, lambda d: hub.send("progress_state", d, client))
        order = ExecutionList(
            prompt,
            lambda uid: self.defs.is_output(prompt[uid]["class_type"]),
            lambda uid: sigs[uid] in self._cache,
        )
        order.add_outputs(outputs)
        values: dict[str, tuple[Any, ...]] = {}
        ui_outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        executed: list[str] = []
        outcome = "success"
        while not order.is_empty():
            uid = order.next_node()
            node = prompt[uid]
            class_type: str = node["class_type"]
            entry = self._cache.get(sigs[uid])
            if entry is not None:
                if client is not None:
                    hub.send(
                        "executed",
                        {
                            "node": uid,
                            "display_node": uid,
                            "output": entry.ui,
                            "prompt_id": prompt_id,
                        },
                        client,
                    )
                if entry.ui:
                    ui_outputs[uid] = entry.ui
                    meta[uid] = _meta(uid)
                progress.finish(uid)
                order.complete(uid)
                continue
            progress.start(uid)
            if client is not None:
                hub.last_node_id = uid
                hub.send(
                    "executing", {"node": uid, "display_node": uid, "prompt_id": prompt_id}, client
                )
            inputs: dict[str, Any] = {}
            try:
                if self._interrupt:
                    raise _Interrupted
                self._on_node_start(prompt_id, uid, class_type)
                inputs = self._gather(prompt, node, values)
                result = await self._run_node(
                    uid, class_type, prompt, extra_data, inputs, progress, client, prompt_id
                )
            except _Interrupted:
                outcome = "interrupted"
                add_message(
                    "execution_interrupted",
                    {
                        "prompt_id": prompt_id,
                        "node_id": uid,
                        "node_type": class_type,
                        "executed": list(executed),
                    },
                    True,
                )
                break
            except Exception as exc:
                outcome = "error"
                current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
                if self.defs.raw(class_type)["input"].get("hidden", {}).get("prompt") == "PROMPT":
                    current_inputs["prompt"] = [str(prompt)]
                    current_inputs["extra_pnginfo"] = [
                        _format_value(extra_data.get("extra_pnginfo"))
                    ]
                exc_type = type(exc)
                type_name = (
                    exc_type.__qualname__
                    if exc_type.__module__ == "builtins"
                    else f"{exc_type.__module__}.{exc_type.__qualname__}"
                )
                add_message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": uid,
                        "node_type": class_type,
                        "executed": list(executed),
                        "exception_message": f"{exc}\n",
                        "exception_type": type_name,
                        "traceback": _traceback(class_type, str(exc)),
                        "current_inputs": current_inputs,
                        "current_outputs": [
                            u for u in prompt if u in values or sigs[u] in self._cache
                        ],
                    },
                    False,
                )
                break
            values[uid] = result.outputs
            self._cache[sigs[uid]] = _CacheEntry(result.outputs, result.ui)
            if result.ui:
                ui_outputs[uid] = result.ui
                meta[uid] = _meta(uid)
                if client is not None:
                    hub.send(
                        "executed",
                        {
                            "node": uid,
                            "display_node": uid,
                            "output": result.ui,
                            "prompt_id": prompt_id,
                        },
                        client,
                    )
            progress.finish(uid)
            executed.append(uid)
            order.complete(uid)
        if outcome == "success":
            add_message("execution_success", {"prompt_id": prompt_id}, False)
        hub.last_node_id = None
        self.running.pop(task_id, None)
        self.store_history(
            prompt_id,
            {
                "prompt": item,
                "outputs": ui_outputs,
                "status": {
                    "status_str": "success" if outcome == "success" else "error",
                    "completed": outcome == "success",
                    "messages": messages,
                },
                "meta": meta,
            },
        )
        self._status()
        if client is not None:
            hub.send("executing", {"node": None, "prompt_id": prompt_id}, client)
        hub.current_client_id = None

    def _gather(
        self, prompt: dict[str, Any], node: dict[str, Any], values: dict[str, tuple[Any, ...]]
    ) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        declared = self.defs.raw(node["class_type"]).get("input", {})
        known = {n for cat in ("required", "optional") for n in declared.get(cat) or {}}
        for name, value in node.get("inputs", {}).items():
            if not is_link(value) and name not in known:
                # execution.py get_input_data: a widget value the class does not declare is
                # not passed (so an input of a newer ComfyUI changes nothing on 0.3.64).
                continue
            if is_link(value):
                src = value[0]
                outs = values.get(src)
                if outs is None:
                    cached = self._cache.get(self._cur_sigs.get(src, ""))
                    outs = cached.outputs if cached is not None else ()
                    values[src] = outs
                inputs[name] = outs[value[1]] if value[1] < len(outs) else None
            else:
                inputs[name] = value
        return inputs

    async def _run_node(
        self,
        uid: str,
        class_type: str,
        prompt: dict[str, Any],
        extra_data: dict[str, Any],
        inputs: dict[str, Any],
        progress: ProgressRegistry,
        client: str | None,
        prompt_id: str,
    ) -> Any:
        hub = self.hub
        meta = {
            "node_id": uid,
            "prompt_id": prompt_id,
            "display_node_id": uid,
            "parent_node_id": None,
            "real_node_id": uid,
        }
        plan = progress_plan(class_type, inputs)
        if plan is not None:
            # Samplers and tiled decodes tick once per step / tile, each step_seconds apart;
            # an interrupt is seen at the next tick (_node_sampling.py says which node ticks).
            for step in range(1, plan.frames + 1):
                await self._sleep(self.step_seconds)
                if self._interrupt:
                    raise _Interrupted
                progress.update(uid, step, plan.maximum)
                frame = None
                if self.preview and plan.previews:
                    frame = await asyncio.to_thread(self._preview_frame, inputs, step)
                if frame is not None and hub.wants_metadata(client):
                    hub.send_image("JPEG", frame, client, meta)
                hub.send(
                    "progress",
                    {"value": step, "max": plan.maximum, "prompt_id": prompt_id, "node": uid},
                    client,
                )
                if frame is not None and not hub.wants_metadata(client):
                    hub.send_image("JPEG", frame, client, None)
        else:
            # A running node finishes; an interrupt is seen when the next node starts.
            await self._sleep(self.node_seconds)
        ctx = NodeContext(
            unique_id=uid,
            class_type=class_type,
            output_dir=self.output_dir,
            input_dir=self.input_dir,
            temp_dir=self.temp_dir,
            prompt=prompt,
            extra_pnginfo=extra_data.get("extra_pnginfo"),
            model_files=self.defs.folder_files,
            return_types=self.defs.return_types(class_type),
            profile=self.profile,
        )
        impl = IMPLEMENTATIONS.get(class_type, generic)
        result = await asyncio.to_thread(impl, ctx, inputs)
        if self._reports_progress(class_type):
            images = result.outputs[0] if result.outputs else []
            total = len(images) if isinstance(images, list) else 1
            for n in range(1, total + 1):
                progress.update(uid, n, total)
                hub.send(
                    "progress",
                    {"value": n, "max": total, "prompt_id": prompt_id, "node": uid},
                    client,
                )
        if class_type == "SaveImageWebsocket":
            images = inputs.get("images") or []
            for n, img in enumerate(images):
                progress.update(uid, n, len(images))
                data = await asyncio.to_thread(png_bytes, img, None, 1)
                if hub.wants_metadata(client):
                    hub.send_image("PNG", data, client, meta)
                hub.send(
                    "progress",
                    {"value": n, "max": len(images), "prompt_id": prompt_id, "node": uid},
                    client,
                )
                if not hub.wants_metadata(client):
                    hub.send_image("PNG", data, client, None)
            progress.nodes[uid]["max"] = len(images)
        return result

    def _reports_progress(self, class_type: str) -> bool:
        """comfyui_controlnet_aux preprocessors tick a progress bar once per image."""
        module = str(self.defs.raw(class_type).get("python_module", ""))
        return module.startswith("custom_nodes.comfyui_controlnet_aux") and (
            "IMAGE" in self.defs.return_types(class_type)
        )

    def _preview_frame(self, inputs: dict[str, Any], step: int) -> bytes:
        latent = inputs.get("latent_image")
        w, h = (latent.width, latent.height) if isinstance(latent, Latent) else (512, 512)
        seed = inputs.get("seed", inputs.get("noise_seed"))
        img = placeholder(
            max(8, w // 8),
            max(8, h // 8),
            prompt=f"step {step}",
            seed=seed if isinstance(seed, int) else None,
        )
        return encode_preview(img.resize((max(8, w // 2), max(8, h // 2))))


def _meta(uid: str) -> dict[str, Any]:
    return {"node_id": uid, "display_node": uid, "parent_node": None, "real_node_id": uid}


def ensure_dirs(*dirs: Path) -> None:
    for d in dirs:
        os.makedirs(d, exist_ok=True)
