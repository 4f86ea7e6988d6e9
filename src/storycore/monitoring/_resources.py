"""Resource samples: CPU, RAM and disk through psutil; GPU through NVML, ``nvidia-smi``, or the
``devices`` list of ComfyUI's ``/system_stats``.

:func:`sample_resources` blocks briefly (a statvfs, maybe a child process): the sampler runs it in
a worker thread. ``psutil.cpu_percent(interval=None)`` never sleeps: it reports the CPU use since
the previous call.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from storycore.platform import query_nvidia_smi

__all__ = ["GPUSample", "GpuProbe", "ResourceSample", "gpus_from_system_stats", "sample_resources"]


@dataclass(frozen=True)
class GPUSample:
    index: int
    name: str
    utilization: float | None
    memory_used: int | None
    memory_total: int | None

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return 100.0 * self.memory_used / self.memory_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "utilization": self.utilization,
            "memory_used": self.memory_used,
            "memory_total": self.memory_total,
        }


@dataclass(frozen=True)
class ResourceSample:
    t: float
    cpu_percent: float
    memory_percent: float
    memory_used: int
    memory_total: int
    disk_percent: float | None
    disk_free: int | None
    gpus: tuple[GPUSample, ...] = ()
    gpu_source: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "memory_used": self.memory_used,
            "memory_total": self.memory_total,
            "disk_percent": self.disk_percent,
            "disk_free": self.disk_free,
            "gpus": [g.to_dict() for g in self.gpus],
            "gpu_source": self.gpu_source,
        }


def gpus_from_system_stats(stats: Mapping[str, Any]) -> tuple[GPUSample, ...]:
    """VRAM per device from a ``/system_stats`` body (CPU devices are skipped)."""
    found: list[GPUSample] = []
    for position, device in enumerate(stats.get("devices") or ()):
        if not isinstance(device, Mapping) or device.get("type") == "cpu":
            continue
        total, free = device.get("vram_total"), device.get("vram_free")
        used = int(total) - int(free) if isinstance(total, int) and isinstance(free, int) else None
        index = device.get("index")
        found.append(
            GPUSample(
                index=index if isinstance(index, int) else position,
                name=str(device.get("name", "gpu")),
                utilization=None,
                memory_used=used,
                memory_total=int(total) if isinstance(total, int) else None,
            )
        )
    return tuple(found)


class GpuProbe:
    """Reads GPU use with the best tool present: NVML (kept open), else ``nvidia-smi``.

    ``mode``: ``auto``, ``nvml``, ``nvidia-smi`` or ``none``. Blocking; call from a thread.
    """

    def __init__(self, mode: str = "auto", timeout: float = 3.0) -> None:
        self.mode = mode
        self.timeout = timeout
        self._nvml: Any = None
        self._smi_missing = False
        if mode in ("auto", "nvml"):
            with contextlib.suppress(Exception):
                nvml: Any = importlib.import_module("pynvml")
                nvml.nvmlInit()
                self._nvml = nvml

    @property
    def source(self) -> str:
        if self._nvml is not None:
            return "nvml"
        if self.mode in ("auto", "nvidia-smi") and not self._smi_missing:
            return "nvidia-smi"
        return "none"

    def read(self) -> tuple[GPUSample, ...]:
        if self._nvml is not None:
            return self._read_nvml()
        if self.source != "nvidia-smi":
            return ()
        gpus = query_nvidia_smi(self.timeout)
        if not gpus:
            self._smi_missing = True  # do not spawn a failing tool every few seconds
        return tuple(
            GPUSample(g.index, g.name, g.utilization, g.memory_used, g.memory_total) for g in gpus
        )

    def _read_nvml(self) -> tuple[GPUSample, ...]:
        nvml = self._nvml
        out: list[GPUSample] = []
        try:
            for index in range(int(nvml.nvmlDeviceGetCount())):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                name = nvml.nvmlDeviceGetName(handle)
                out.append(
                    GPUSample(
                        index=index,
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        utilization=float(util.gpu),
                        memory_used=int(mem.used),
                        memory_total=int(mem.total),
                    )
                )
        except Exception:
            return ()
        return tuple(out)

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def sample_resources(disk_path: Path, gpu: GpuProbe | None = None) -> ResourceSample:
    """One sample. Blocking but short: run it with ``asyncio.to_thread``."""
    memory = psutil.virtual_memory()
    disk_percent: float | None = None
    disk_free: int | None = None
    with contextlib.suppress(OSError):
        usage = psutil.disk_usage(str(disk_path))
        disk_percent, disk_free = float(usage.percent), int(usage.free)
    gpus = gpu.read() if gpu is not None else ()
    return ResourceSample(
        t=time.time(),
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_percent=float(memory.percent),
        memory_used=int(memory.total - memory.available),
        memory_total=int(memory.total),
        disk_percent=disk_percent,
        disk_free=disk_free,
        gpus=gpus,
        gpu_source=gpu.source if gpu is not None and gpus else "none",
    )
