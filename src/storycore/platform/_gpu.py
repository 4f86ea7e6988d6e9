"""Which GPUs the machine has, with their memory.

NVIDIA through NVML (``pynvml``, imported only if installed), else ``nvidia-smi``'s CSV output;
AMD through ``rocm-smi --json``, else sysfs; Intel through sysfs; Apple Silicon from the OS.
The parsers are pure functions; the probes run short child processes with a timeout and never
raise: a tool that is missing or fails just finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from storycore.platform._os import OSInfo, detect_os

__all__ = [
    "NVIDIA_SMI_QUERY",
    "GPUInfo",
    "detect_gpus",
    "detect_gpus_async",
    "parse_nvidia_smi",
    "parse_rocm_smi",
    "query_nvidia_smi",
]

MIB = 1024 * 1024
NVIDIA_SMI_QUERY = "index,name,memory.total,memory.free,memory.used,utilization.gpu,driver_version"
_VENDOR_IDS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}


@dataclass(frozen=True)
class GPUInfo:
    """One GPU. Memory in bytes (``None`` when unknown); ``utilization`` in percent."""

    vendor: str  # nvidia | amd | intel | apple
    index: int
    name: str
    memory_total: int | None = None
    memory_free: int | None = None
    memory_used: int | None = None
    utilization: float | None = None
    driver: str | None = None
    source: str = ""  # nvml | nvidia-smi | rocm-smi | sysfs | os
    unified_memory: bool = False

    @property
    def memory_total_gb(self) -> float | None:
        return None if self.memory_total is None else self.memory_total / 1024**3


def _num(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_nvidia_smi(text: str) -> list[GPUInfo]:
    """Parse ``nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits``."""
    gpus: list[GPUInfo] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        fields += [""] * (7 - len(fields))
        total, free, used, util = (_num(f) for f in fields[2:6])
        gpus.append(
            GPUInfo(
                vendor="nvidia",
                index=int(fields[0]),
                name=fields[1],
                memory_total=int(total * MIB) if total is not None else None,
                memory_free=int(free * MIB) if free is not None else None,
                memory_used=int(used * MIB) if used is not None else None,
                utilization=util,
                driver=fields[6] or None,
                source="nvidia-smi",
            )
        )
    return gpus


def parse_rocm_smi(text: str) -> list[GPUInfo]:
    """Parse ``rocm-smi --showproductname --showmeminfo vram --showuse --json``."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    gpus: list[GPUInfo] = []
    if not isinstance(data, dict):
        return gpus
    for key, card in data.items():
        if not (isinstance(card, dict) and key.startswith("card") and key[4:].isdigit()):
            continue
        lowered = {str(k).lower(): str(v) for k, v in card.items()}
        total = _num(lowered.get("vram total memory (b)", ""))
        used = _num(lowered.get("vram total used memory (b)", ""))
        util = _num(lowered.get("gpu use (%)", ""))
        name = lowered.get("card series") or lowered.get("card model") or "AMD GPU"
        gpus.append(
            GPUInfo(
                vendor="amd",
                index=int(key[4:]),
                name=name,
                memory_total=int(total) if total is not None else None,
                memory_used=int(used) if used is not None else None,
                memory_free=int(total - used) if total is not None and used is not None else None,
                utilization=util,
                source="rocm-smi",
            )
        )
    return gpus


def _run(argv: Sequence[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def query_nvidia_smi(timeout: float = 5.0) -> list[GPUInfo]:
    """Run ``nvidia-smi`` (found on ``PATH``) and parse its CSV; ``[]`` if absent or failing."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        # WSL ships the tool outside PATH; Windows drivers put it in System32 (on PATH).
        wsl = Path("/usr/lib/wsl/lib/nvidia-smi")
        exe = str(wsl) if wsl.is_file() else None
    if exe is None:
        return []
    out = _run([exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"], timeout)
    return parse_nvidia_smi(out) if out else []


def _query_nvml() -> list[GPUInfo]:
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return []
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    gpus: list[GPUInfo] = []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            util: float | None = None
            with contextlib.suppress(Exception):
                util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            gpus.append(
                GPUInfo(
                    vendor="nvidia",
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total=int(mem.total),
                    memory_free=int(mem.free),
                    memory_used=int(mem.used),
                    utilization=util,
                    driver=driver.decode() if isinstance(driver, bytes) else str(driver),
                    source="nvml",
                )
            )
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    return gpus


def _query_sysfs(root: Path) -> list[GPUInfo]:
    gpus: list[GPUInfo] = []
    drm = root / "sys" / "class" / "drm"
    try:
        cards = sorted(
            p for p in drm.iterdir() if p.name.startswith("card") and p.name[4:].isdigit()
        )
    except OSError:
        return gpus
    for card in cards:
        try:
            vendor_id = (card / "device" / "vendor").read_text().strip().lower()
        except OSError:
            continue
        vendor = _VENDOR_IDS.get(vendor_id)
        if vendor is None:
            continue
        total: int | None = None
        with contextlib.suppress(OSError, ValueError):
            total = int((card / "device" / "mem_info_vram_total").read_text().strip())
        names = {"nvidia": "NVIDIA GPU (no driver tools)", "amd": "AMD GPU", "intel": "Intel GPU"}
        gpus.append(
            GPUInfo(
                vendor=vendor,
                index=int(card.name[4:]),
                name=names[vendor],
                memory_total=total,
                source="sysfs",
            )
        )
    return gpus


def detect_gpus(
    os_info: OSInfo | None = None, *, root: Path = Path("/"), timeout: float = 5.0
) -> list[GPUInfo]:
    """Every GPU found, NVIDIA first. Blocking (child processes): use
    :func:`detect_gpus_async` from async code."""
    info = os_info or detect_os(root=root)
    gpus = _query_nvml() or query_nvidia_smi(timeout)
    rocm = shutil.which("rocm-smi")
    if rocm:
        out = _run(
            [rocm, "--showproductname", "--showmeminfo", "vram", "--showuse", "--json"],
            timeout,
        )
        gpus += parse_rocm_smi(out) if out else []
    if info.system == "linux":
        have = {g.vendor for g in gpus}
        for gpu in _query_sysfs(root):
            if gpu.vendor not in have:
                gpus.append(replace(gpu, index=sum(g.vendor == gpu.vendor for g in gpus)))
    if info.apple_silicon:
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"], timeout) or "Apple Silicon"
        memory = psutil.virtual_memory()
        gpus.append(
            GPUInfo(
                vendor="apple",
                index=0,
                name=brand.strip(),
                memory_total=int(memory.total),
                memory_free=int(memory.available),
                source="os",
                unified_memory=True,
            )
        )
    return gpus


async def detect_gpus_async(
    os_info: OSInfo | None = None, *, root: Path = Path("/"), tool_timeout: float = 5.0
) -> list[GPUInfo]:
    """:func:`detect_gpus` in a worker thread (each tool bounded by ``tool_timeout``)."""
    return await asyncio.to_thread(detect_gpus, os_info, root=root, timeout=tool_timeout)
