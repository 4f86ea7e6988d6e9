"""The Platform Manager: the OS, the GPUs, ComfyUI launch flags, the model folders, and
whether the project's panels fit the hardware.

Detection reads files and runs short child processes (``nvidia-smi``, ``rocm-smi``) with
timeouts; the ``*_async`` variants run them in a worker thread. Nothing happens at import.
"""

from storycore.platform._extra_paths import parse_extra_model_paths, read_extra_model_paths
from storycore.platform._flags import (
    COMFYUI_FLAGS,
    LaunchPlan,
    choose_launch_flags,
    flags_in_help,
)
from storycore.platform._gpu import (
    NVIDIA_SMI_QUERY,
    GPUInfo,
    detect_gpus,
    detect_gpus_async,
    parse_nvidia_smi,
    parse_rocm_smi,
    query_nvidia_smi,
)
from storycore.platform._models import (
    MODEL_EXTENSIONS,
    MODEL_FOLDERS,
    ModelFile,
    ModelInventory,
    scan_models,
    scan_models_async,
)
from storycore.platform._os import OSInfo, detect_os
from storycore.platform._ports import port_holder, port_holder_async
from storycore.platform._recommend import (
    FAMILY_NATIVE_SIZE,
    Fit,
    PanelAdvice,
    PanelLike,
    estimate_vram,
    fits_gpu,
    recommend_panels,
)
from storycore.platform._safetensors import (
    ModelGuess,
    guess_model,
    read_safetensors_header,
)

__all__ = [
    "COMFYUI_FLAGS",
    "FAMILY_NATIVE_SIZE",
    "MODEL_EXTENSIONS",
    "MODEL_FOLDERS",
    "NVIDIA_SMI_QUERY",
    "Fit",
    "GPUInfo",
    "LaunchPlan",
    "ModelFile",
    "ModelGuess",
    "ModelInventory",
    "OSInfo",
    "PanelAdvice",
    "PanelLike",
    "choose_launch_flags",
    "detect_gpus",
    "detect_gpus_async",
    "detect_os",
    "estimate_vram",
    "fits_gpu",
    "flags_in_help",
    "guess_model",
    "parse_extra_model_paths",
    "parse_nvidia_smi",
    "parse_rocm_smi",
    "port_holder",
    "port_holder_async",
    "query_nvidia_smi",
    "read_extra_model_paths",
    "read_safetensors_header",
    "recommend_panels",
    "scan_models",
    "scan_models_async",
]
