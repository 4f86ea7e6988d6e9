"""A protocol-faithful ComfyUI stand-in for tests, benchmarks and the mock backend.

It serves the HTTP routes and the WebSocket of ComfyUI 0.3.64 as recorded from a real server
(``data/`` here and ``tests/data/comfyui-reference`` in the repository: status codes, content
types, JSON shapes, error bodies, message order and delivery rules), validates prompts against
the recorded ``/object_info``, and runs graphs with a queue worker that caches like ComfyUI.
Image nodes have real Pillow semantics; model nodes produce deterministic placeholder pictures
marked ``PLACEHOLDER``.

Use :class:`Emulator` in-process (``async with Emulator() as emu: emu.url``) or
:func:`run_emulator` / ``python -m storycore.emulator`` as a process.

Deliberate differences from a real ComfyUI
------------------------------------------
* No models, no tensors: model nodes pass small descriptive values and ``VAEDecode`` draws a
  placeholder showing prompt, seed and ``PLACEHOLDER``. Sampler steps take ``step_seconds``.
* Implemented nodes: EmptyImage, LoadImage, SaveImage, PreviewImage, SaveImageWebsocket,
  ImageScale, ImageInvert, ImageBlend, ImageBatch, ImageBlur, Canny, SolidMask, MaskToImage,
  CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, LatentUpscale, KSampler(Advanced),
  VAEDecode, VAEEncode, LoraLoader(ModelOnly), VAELoader, ControlNetLoader,
  ControlNetApplyAdvanced, CLIPVisionLoader, UpscaleModelLoader, ImageUpscaleWithModel (x4, or
  x2 for a model named ``*x2*``), IPAdapterModelLoader, IPAdapterUnifiedLoader,
  IPAdapterAdvanced, IPAdapter.
* Node classes without an implementation (anything beyond the documented image/model nodes)
  pass their first input of each output type through, or produce a placeholder/blank value.
  comfyui_controlnet_aux preprocessors return an edge map of their input and never fail (the
  real ones download weights and fail offline). ``IPAdapterUnifiedLoader`` fails with
  "ClipVision model not found." only when the configured ``clip_vision`` list is empty.
* ``execution_error``: ``traceback`` lines are synthetic and ``current_inputs`` describes images
  as ``"tensor of shape [B, H, W, 3] (emulated)"`` instead of printing tensor values.
* ``executed`` lists in ``execution_error``/``execution_interrupted`` are in execution order
  (ComfyUI prints a set, in arbitrary order); ``outputs_to_execute`` follows prompt order.
* Model lists come from :class:`EmulatorOptions` ``models`` (no files on disk); ``VAELoader``
  also offers ``pixel_space``. ``/system_stats`` returns the recorded body as is, so a
  client cannot tell the emulator from a real ComfyUI 0.3.64 by it.
* ``SaveImage`` writes files atomically (temporary name, then rename); the counter scan
  ignores those hidden temporaries. Cache keys of ``LoadImage`` use the file's size and mtime
  instead of its SHA-256.
* Only the routes listed in the issue plus ``/settings``, ``/users``, ``/i18n``,
  ``/workflow_templates`` and ``/`` (a tiny HTML page) exist; ``/internal/*``, ``/userdata``,
  ``/experiment/*`` are not served.
* WebSocket messages are queued per socket; the ``stall_websockets`` fault delays them (in
  order) instead of the OS buffering them.
* Sloppy requests that crash a real ComfyUI with a 500 get a kinder answer: ``extra_data``
  that is not an object is ignored, a node without ``inputs`` has none, an unknown upload
  ``type`` means ``input``. Unknown routes answer aiohttp's plain-text 404.
* The history keeps at most ``max_history`` entries (ComfyUI keeps one more).
* A dependency cycle is rejected at validation with ``dependency_cycle`` (as newer ComfyUI
  versions do; 0.3.64 has no such check).
* Fault injection (:class:`FaultController`) and ``executed_prompt_ids`` have no real
  counterpart. ``crash_after_prompts`` works only in process mode.
"""

from __future__ import annotations

from ._emulator import (
    PROFILES,
    Emulator,
    EmulatorOptions,
    describe_folders,
    emulator_folders,
    run_emulator,
)
from ._faults import FaultController
from ._nodedefs import DEFAULT_MODELS, NODE_PACK_MODULES

__all__ = [
    "DEFAULT_MODELS",
    "NODE_PACK_MODULES",
    "PROFILES",
    "Emulator",
    "EmulatorOptions",
    "FaultController",
    "describe_folders",
    "emulator_folders",
    "run_emulator",
]
