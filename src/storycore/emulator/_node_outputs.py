"""Output nodes beyond SaveImage: what each writes and what it reports in ``executed`` and
history (the node's ``ui``), as the ComfyUI 0.3.64 source says (file @ commit per node; no
recording of these exists, see tests/data/comfyui-reference/derived_output_nodes.json).

Files: animated WebP / PNG are real (Pillow). Latents are real safetensors files (a zero
``latent_tensor`` [B, 4, H/8, W/8] and ``latent_format_version_0``, the prompt in the
metadata). FLAC / MP3 / Opus and MP4 / WebM need encoders the emulator does not have (ComfyUI
uses PyAV): audio files hold silent RIFF/WAV bytes and video files an animated WebP, under
ComfyUI's names. The names, folders, counters and ``ui`` are ComfyUI's; those bytes are not.
"""

from __future__ import annotations

import io
import json
import random
import string
import struct
import wave
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from storycore._fsutil import atomic_write_bytes

from ._images import Images
from ._node_types import Audio, Latent, NodeContext, NodeResult, Video
from ._prefix import save_path

__all__ = ["OUTPUT_IMPLEMENTATIONS", "preview_text"]

Impl = Callable[[NodeContext, dict[str, Any]], NodeResult]

_WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def _entry(name: str, sub: str, kind: str = "output") -> dict[str, str]:
    return {"filename": name, "subfolder": sub, "type": kind}


def _metadata(ctx: NodeContext) -> dict[str, str]:
    out: dict[str, str] = {}
    if ctx.prompt is not None:
        out["prompt"] = json.dumps(ctx.prompt)
    for key, value in (ctx.extra_pnginfo or {}).items():
        out[str(key)] = json.dumps(value)
    return out


def _webp_bytes(frames: Images, fps: float, lossless: bool, quality: int, method: int) -> bytes:
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=int(1000.0 / fps),
        lossless=lossless,
        quality=quality,
        method=method,
    )
    return buf.getvalue()


def _animated_ui(
    ctx: NodeContext, entry: dict[str, str], old_flag: bool, new_flag: bool | None = None
) -> dict[str, Any]:
    """0.3.64 always says ``animated: [flag]``; today's V3 nodes (comfy_api/latest/_ui.py
    SavedImages @ 015e6046) add ``animated: [true]`` only for more than one frame."""
    if ctx.profile == "0.3.64":
        return {"images": [entry], "animated": [old_flag]}
    flag = old_flag if new_flag is None else new_flag
    return {"images": [entry], "animated": [True]} if flag else {"images": [entry]}


def _save_animated_webp(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py SaveAnimatedWEBP (0.3.64: the old-style node, no outputs):
    # one file <prefix>_NNNNN_.webp for the whole batch (num_frames 0 = all frames), ui
    # {"images": [...], "animated": [num_frames != 1]} -- [true] unless the batch is one image.
    images: Images = i["images"]
    w, h = images[0].size
    folder, name, counter, sub = save_path(ctx.output_dir, str(i["filename_prefix"]), w, h)
    file = f"{name}_{counter:05}_.webp"
    data = _webp_bytes(
        images,
        float(i["fps"]),
        bool(i["lossless"]),
        int(i["quality"]),
        _WEBP_METHODS.get(str(i["method"]), 4),
    )
    atomic_write_bytes(folder / file, data)
    return NodeResult((), _animated_ui(ctx, _entry(file, sub), len(images) != 1))


def _save_animated_png(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py SaveAnimatedPNG (0.3.64): one APNG <prefix>_NNNNN_.png,
    # ui {"images": [...], "animated": [true]} (always true there).
    images: Images = i["images"]
    w, h = images[0].size
    folder, name, counter, sub = save_path(ctx.output_dir, str(i["filename_prefix"]), w, h)
    file = f"{name}_{counter:05}_.png"
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="PNG",
        save_all=True,
        append_images=images[1:],
        duration=int(1000.0 / float(i["fps"])),
        compress_level=int(i["compress_level"]),
    )
    atomic_write_bytes(folder / file, buf.getvalue())
    return NodeResult((), _animated_ui(ctx, _entry(file, sub), True, len(images) > 1))


def safetensors_bytes(
    tensors: Mapping[str, tuple[list[int], bytes]], meta: dict[str, str]
) -> bytes:
    """A safetensors file of float32 tensors: {name: (shape, raw little-endian bytes)}."""
    header: dict[str, Any] = {"__metadata__": meta} if meta else {}
    offset = 0
    for key, (shape, raw) in tensors.items():
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(raw for _, raw in tensors.values())


def _save_latent(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py SaveLatent @ a125cd84: <prefix>_NNNNN_.latent (safetensors: latent_tensor and
    # latent_format_version_0; prompt and extra_pnginfo as metadata), ui {"latents": [...]};
    # the size variables are 0 (get_save_image_path is called without a size).
    lat: Latent = i["samples"]
    folder, name, counter, sub = save_path(ctx.output_dir, str(i["filename_prefix"]))
    file = f"{name}_{counter:05}_.latent"
    shape = [max(1, lat.batch), 4, max(1, lat.height // 8), max(1, lat.width // 8)]
    count = shape[0] * shape[1] * shape[2] * shape[3]
    tensors = {"latent_tensor": (shape, bytes(4 * count)), "latent_format_version_0": ([0], b"")}
    atomic_write_bytes(folder / file, safetensors_bytes(tensors, _metadata(ctx)))
    return NodeResult((), {"latents": [_entry(file, sub)]})


def preview_text(source: Any) -> str:
    """comfy_extras/nodes_preview_any.py PreviewAny: str as is, numbers and booleans by str(),
    JSON-able values as JSON, anything else by str(); 'None' for nothing."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, bool | int | float):
        return str(source)
    if isinstance(source, list) and source and isinstance(source[0], Image.Image):
        w, h = source[0].size
        return f"tensor of shape [{len(source)}, {h}, {w}, 3] (emulated)"
    try:
        return json.dumps(source)
    except (TypeError, ValueError):
        return str(source)


def _preview_any(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((), {"text": [preview_text(i.get("source"))]})


def _wav_bytes(audio: Audio) -> bytes:
    frames = max(1, int(audio.sample_rate * min(audio.seconds, 600.0)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(max(1, min(2, audio.channels)))
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(bytes(2 * out.getnchannels() * frames))
    return buf.getvalue()


def _audio_saver(ext: str, kind: str) -> Impl:
    # comfy_extras/nodes_audio.py SaveAudio / SaveAudioMP3 / SaveAudioOpus / PreviewAudio
    # (0.3.64, old style): one file per batch item <prefix>_NNNNN_.<ext> (%batch_num%
    # expands), ui {"audio": [...]}; PreviewAudio writes to temp with prefix
    # "ComfyUI_temp_" + 5 random letters.
    def run(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
        audio = i["audio"]
        if not isinstance(audio, Audio):
            audio = Audio(44100, 1, 1.0)
        root: Path = ctx.output_dir if kind == "output" else ctx.temp_dir
        prefix = str(i.get("filename_prefix", ""))
        if kind == "temp":
            prefix = "ComfyUI_temp_" + "".join(
                random.choice(string.ascii_lowercase) for _ in range(5)
            )
        folder, name, counter, sub = save_path(root, prefix)
        results = []
        data = _wav_bytes(audio)
        for n in range(max(1, audio.batch)):
            file = f"{name.replace('%batch_num%', str(n))}_{counter:05}_.{ext}"
            atomic_write_bytes(folder / file, data)
            results.append(_entry(file, sub, kind))
            counter += 1
        return NodeResult((), {"audio": results})

    return run


def _video_saver(fixed_ext: str | None) -> Impl:
    # comfy_extras/nodes_video.py SaveVideo (format auto/mp4 -> .mp4) and SaveWEBM (.webm)
    # @ 9889d18a: one file <prefix>_NNNNN_.<ext>, ui.PreviewVideo -> {"images": [...],
    # "animated": [true]}; the size variables are the video's width and height.
    def run(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
        if fixed_ext is None:
            video = i["video"]
            frames = list(video.frames) if isinstance(video, Video) else []
            fps = video.fps if isinstance(video, Video) else 24.0
            ext = "mp4"  # VideoContainer.get_extension("auto" | "mp4")
        else:
            frames, fps, ext = list(i["images"]), float(i.get("fps", 24.0)), fixed_ext
        if not frames:
            frames = [Image.new("RGB", (64, 64))]
        w, h = frames[0].size
        folder, name, counter, sub = save_path(ctx.output_dir, str(i["filename_prefix"]), w, h)
        file = f"{name}_{counter:05}_.{ext}"
        atomic_write_bytes(folder / file, _webp_bytes(frames, fps, False, 60, 0))
        return NodeResult((), {"images": [_entry(file, sub)], "animated": [True]})

    return run


def _create_video(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Video(tuple(i["images"]), float(i["fps"])),))


def _video_components(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    video = i["video"]
    frames = list(video.frames) if isinstance(video, Video) else []
    fps = video.fps if isinstance(video, Video) else 24.0
    return NodeResult((frames, Audio(44100, 2, len(frames) / max(fps, 0.01)), fps))


_SECONDS = "audio seconds "


def _empty_latent_audio(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # EmptyLatentAudio: ``seconds`` of audio; VAEDecodeAudio gives 44.1 kHz stereo.
    seconds = float(i["seconds"])
    return NodeResult((Latent(64, 64, int(i["batch_size"]), notes=(f"{_SECONDS}{seconds}",)),))


def _vae_decode_audio(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    lat = i["samples"]
    batch = lat.batch if isinstance(lat, Latent) else 1
    seconds = 1.0
    for note in lat.notes if isinstance(lat, Latent) else ():
        if note.startswith(_SECONDS):
            seconds = float(note[len(_SECONDS) :])
    return NodeResult((Audio(44100, 2, seconds, batch),))


OUTPUT_IMPLEMENTATIONS: dict[str, Impl] = {
    "SaveAnimatedWEBP": _save_animated_webp,
    "SaveAnimatedPNG": _save_animated_png,
    "SaveLatent": _save_latent,
    "PreviewAny": _preview_any,
    "SaveAudio": _audio_saver("flac", "output"),
    "SaveAudioMP3": _audio_saver("mp3", "output"),
    "SaveAudioOpus": _audio_saver("opus", "output"),
    "PreviewAudio": _audio_saver("flac", "temp"),
    "SaveVideo": _video_saver(None),
    "SaveWEBM": _video_saver("webm"),
    "CreateVideo": _create_video,
    "GetVideoComponents": _video_components,
    "EmptyLatentAudio": _empty_latent_audio,
    "VAEDecodeAudio": _vae_decode_audio,
}
