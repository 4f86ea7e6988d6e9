"""GPU detection through a fake ``nvidia-smi`` on PATH, sysfs, and the launch flags chosen."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from storycore.platform import (
    COMFYUI_FLAGS,
    NVIDIA_SMI_QUERY,
    GPUInfo,
    OSInfo,
    choose_launch_flags,
    detect_gpus,
    detect_os,
    flags_in_help,
    parse_nvidia_smi,
    parse_rocm_smi,
)
from tests._recordings import recording_text

LINUX = OSInfo(system="linux", release="6.1", machine="x86_64", python="3.11")
WINDOWS = OSInfo(system="windows", release="10", machine="AMD64", python="3.11")
MAC = OSInfo(system="macos", release="23.0", machine="arm64", python="3.11")
GIB = 1024**3

SMI_OUTPUT = (
    "0, NVIDIA GeForce RTX 3060, 12288, 11000, 1288, 7, 550.54.14\n"
    "1, NVIDIA GeForce RTX 4090, 24564, 24000, 564, [N/A], 550.54.14\n"
)


def _fake_tool(folder: Path, name: str, stdout: str, code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.out").write_text(stdout, encoding="utf-8")
    script = folder / name
    script.write_text(
        f'#!/bin/sh\necho "$@" > "{folder}/{name}.args"\ncat "{folder}/{name}.out"\nexit {code}\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if sys.platform == "win32":
        pytest.skip("shell-script tools need a POSIX shell")
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return folder


def test_nvidia_smi_on_path_is_queried_and_parsed(fake_bin: Path, tmp_path: Path) -> None:
    _fake_tool(fake_bin, "nvidia-smi", SMI_OUTPUT)
    gpus = detect_gpus(LINUX, root=tmp_path / "noroot")
    args = (fake_bin / "nvidia-smi.args").read_text().split()
    assert args == [f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"]
    assert [(g.vendor, g.index, g.name) for g in gpus] == [
        ("nvidia", 0, "NVIDIA GeForce RTX 3060"),
        ("nvidia", 1, "NVIDIA GeForce RTX 4090"),
    ]
    assert gpus[0].memory_total == 12288 * 1024 * 1024
    assert gpus[0].memory_free == 11000 * 1024 * 1024
    assert gpus[0].utilization == 7.0 and gpus[1].utilization is None
    assert gpus[0].driver == "550.54.14" and gpus[0].source == "nvidia-smi"


def test_failing_nvidia_smi_finds_nothing(fake_bin: Path, tmp_path: Path) -> None:
    _fake_tool(fake_bin, "nvidia-smi", "NVIDIA-SMI has failed\n", code=9)
    assert detect_gpus(LINUX, root=tmp_path / "noroot") == []


def test_rocm_smi_and_sysfs(fake_bin: Path, tmp_path: Path) -> None:
    rocm = {
        "card0": {
            "GPU use (%)": "12",
            "VRAM Total Memory (B)": str(16 * GIB),
            "VRAM Total Used Memory (B)": str(2 * GIB),
            "Card series": "Radeon RX 7800 XT",
        },
        "system": {"Driver version": "6.7"},
    }
    _fake_tool(fake_bin, "rocm-smi", json.dumps(rocm))
    drm = tmp_path / "root" / "sys" / "class" / "drm"
    for card, vendor in (("card0", "0x1002"), ("card1", "0x8086"), ("card1-HDMI-A-1", "")):
        (drm / card / "device").mkdir(parents=True)
        if vendor:
            (drm / card / "device" / "vendor").write_text(vendor + "\n")
    gpus = detect_gpus(LINUX, root=tmp_path / "root")
    assert [(g.vendor, g.source) for g in gpus] == [("amd", "rocm-smi"), ("intel", "sysfs")]
    assert gpus[0].memory_total == 16 * GIB and gpus[0].memory_free == 14 * GIB
    assert gpus[0].utilization == 12.0


def test_parsers_ignore_noise() -> None:
    assert parse_nvidia_smi("No devices were found\n\n") == []
    assert parse_rocm_smi("not json") == []
    (gpu,) = parse_nvidia_smi("0, Tesla T4, [Not Supported], 100, 1, 0, 1.0")
    assert gpu.memory_total is None and gpu.memory_free == 100 * 1024 * 1024


def test_wsl_and_docker_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSL_DISTRO_NAME", raising=False)
    root = tmp_path / "root"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "version").write_text("Linux version 5.15.90.1-microsoft-standard-WSL2")
    (root / "proc" / "1" / "cgroup").write_text("0::/\n")
    info = detect_os(root=root, sys_platform="linux")
    assert info.system == "linux" and info.wsl and not info.docker
    (root / ".dockerenv").write_text("")
    assert detect_os(root=root, sys_platform="linux").docker
    assert detect_os(root=root, sys_platform="darwin", machine="arm64").apple_silicon
    assert detect_os(root=root, sys_platform="win32").system == "windows"
    assert "WSL" in info.label


def _nvidia(index: int, gib: float) -> GPUInfo:
    return GPUInfo("nvidia", index, f"GPU{index}", memory_total=int(gib * GIB), source="nvml")


@pytest.mark.parametrize(
    ("os_info", "gpus", "kwargs", "flags"),
    [
        (LINUX, [], {}, ("--cpu",)),
        (LINUX, [_nvidia(0, 12)], {}, ()),
        (LINUX, [_nvidia(0, 12), _nvidia(1, 24)], {}, ("--cuda-device", "1")),
        (LINUX, [_nvidia(0, 12), _nvidia(1, 24)], {"cuda_device": 0}, ("--cuda-device", "0")),
        (LINUX, [_nvidia(0, 4)], {}, ("--lowvram",)),
        (LINUX, [_nvidia(0, 2)], {}, ("--novram",)),
        (LINUX, [_nvidia(0, 24)], {"vram_mode": "high"}, ("--highvram",)),
        (LINUX, [_nvidia(0, 24)], {"use_gpu": False}, ("--cpu",)),
        (LINUX, [_nvidia(0, 24)], {"reserve_vram_gb": 1.5}, ("--reserve-vram", "1.5")),
        (WINDOWS, [GPUInfo("amd", 0, "Radeon", source="os")], {}, ("--directml",)),
        (MAC, [GPUInfo("apple", 0, "Apple M2", 16 * GIB, unified_memory=True)], {}, ()),
        (LINUX, [GPUInfo("intel", 0, "Intel GPU", source="sysfs")], {}, ()),
        (LINUX, [GPUInfo("amd", 0, "AMD GPU", source="sysfs")], {}, ("--cpu",)),
        (LINUX, [GPUInfo("amd", 0, "RX", 16 * GIB, source="rocm-smi")], {}, ()),
    ],
)
def test_launch_flags(
    os_info: OSInfo, gpus: list[GPUInfo], kwargs: dict[str, object], flags: tuple[str, ...]
) -> None:
    plan = choose_launch_flags(os_info, gpus, **kwargs)  # type: ignore[arg-type]
    assert plan.flags == flags
    assert plan.reasons
    assert (plan.device is None) == ("--cpu" in flags)


def test_every_flag_is_one_comfyui_accepts() -> None:
    accepted = flags_in_help(recording_text("main_help.txt"))
    assert "--lowvram" in accepted and "--cuda-device" in accepted
    assert accepted >= COMFYUI_FLAGS, COMFYUI_FLAGS - accepted
