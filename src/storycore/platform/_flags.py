"""The ComfyUI command-line flags that suit this machine.

Only flags that ComfyUI 0.3.64 accepts (its ``python main.py --help``) are ever produced;
:data:`COMFYUI_FLAGS` lists the ones used here and a test checks them against the recording.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from storycore.platform._gpu import GPUInfo
from storycore.platform._os import OSInfo

__all__ = ["COMFYUI_FLAGS", "LaunchPlan", "choose_launch_flags", "flags_in_help"]

#: Every flag :func:`choose_launch_flags` may emit.
COMFYUI_FLAGS = frozenset(
    {
        "--cpu",
        "--cuda-device",
        "--directml",
        "--lowvram",
        "--novram",
        "--highvram",
        "--normalvram",
        "--reserve-vram",
        "--force-fp16",
    }
)
GIB = 1024**3
NO_VRAM_BELOW = 3 * GIB
LOW_VRAM_BELOW = 6 * GIB


@dataclass(frozen=True)
class LaunchPlan:
    """Flags for ``main.py``, the GPU they target (``None`` = CPU) and why each was chosen."""

    flags: tuple[str, ...]
    device: GPUInfo | None
    reasons: tuple[str, ...] = field(default=())


def _vram_flags(gpu: GPUInfo, reasons: list[str]) -> list[str]:
    total = gpu.memory_total
    if total is None:
        return []
    if total < NO_VRAM_BELOW:
        reasons.append(f"{gpu.name} has {total / GIB:.1f} GiB: keep weights in RAM (--novram)")
        return ["--novram"]
    if total < LOW_VRAM_BELOW:
        reasons.append(f"{gpu.name} has {total / GIB:.1f} GiB: offload weights (--lowvram)")
        return ["--lowvram"]
    return []


def choose_launch_flags(
    os_info: OSInfo,
    gpus: Sequence[GPUInfo],
    *,
    use_gpu: bool = True,
    cuda_device: int | None = None,
    vram_mode: str = "normal",
    reserve_vram_gb: float | None = None,
) -> LaunchPlan:
    """Pick the flags: ``--cpu`` without a usable GPU; ``--cuda-device`` to pin one of several
    NVIDIA (or ROCm) GPUs; ``--directml`` for AMD/Intel on Windows; ``--lowvram``/``--novram``
    for small cards unless ``vram_mode`` (normal, high, low, none) says otherwise."""
    reasons: list[str] = []
    flags: list[str] = []
    cuda_like = [g for g in gpus if g.vendor == "nvidia" and g.memory_total is not None]
    if os_info.system == "linux":
        cuda_like += [g for g in gpus if g.vendor == "amd" and g.source == "rocm-smi"]
    device: GPUInfo | None = None
    if not use_gpu:
        reasons.append("GPU use is switched off in the settings")
    elif cuda_like:
        if cuda_device is not None:
            device = next((g for g in cuda_like if g.index == cuda_device), None)
            if device is None:
                reasons.append(f"GPU {cuda_device} does not exist; the largest one is used")
        if device is None:
            device = max(cuda_like, key=lambda g: (g.memory_total or 0, -g.index))
        if len(cuda_like) > 1 or device.index != 0:
            flags += ["--cuda-device", str(device.index)]
            reasons.append(f"pinned to GPU {device.index} ({device.name})")
        before = len(flags)
        flags += _vram_flags(device, reasons) if vram_mode == "normal" else []
        if len(flags) == before and not reasons:
            size = f"{device.memory_total_gb:.1f} GiB" if device.memory_total_gb else "?"
            reasons.append(f"{device.name} ({size}) with ComfyUI's default memory handling")
    elif os_info.system == "windows" and any(g.vendor in ("amd", "intel") for g in gpus):
        device = next(g for g in gpus if g.vendor in ("amd", "intel"))
        flags.append("--directml")
        reasons.append(f"{device.name} on Windows runs through DirectML (torch-directml)")
    elif any(g.vendor == "apple" for g in gpus):
        device = next(g for g in gpus if g.vendor == "apple")
        reasons.append(f"{device.name}: PyTorch uses Metal (MPS) by itself; no flag needed")
    elif os_info.system == "linux" and any(g.vendor == "amd" for g in gpus):
        amd = next(g for g in gpus if g.vendor == "amd")
        reasons.append(f"{amd.name} found but rocm-smi is missing: install ROCm to use it")
    elif any(g.vendor == "intel" for g in gpus):
        device = next(g for g in gpus if g.vendor == "intel")
        reasons.append(f"{device.name}: used when PyTorch has XPU support; no flag needed")
    if device is None:
        flags.append("--cpu")
        reasons.append("no usable GPU: ComfyUI runs on the CPU (slow: minutes per panel)")
    elif vram_mode != "normal":
        mode_flag = {"high": "--highvram", "low": "--lowvram", "none": "--novram"}.get(vram_mode)
        if mode_flag:
            flags.append(mode_flag)
            reasons.append(f"vram_mode={vram_mode} from the settings")
    if device is not None and reserve_vram_gb:
        flags += ["--reserve-vram", f"{reserve_vram_gb:g}"]
        reasons.append(f"{reserve_vram_gb:g} GiB kept free for other programs")
    return LaunchPlan(flags=tuple(flags), device=device, reasons=tuple(reasons))


def flags_in_help(help_text: str) -> frozenset[str]:
    """Every ``--flag`` named in ComfyUI's ``--help`` output."""
    return frozenset(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9_-]*)", help_text))
