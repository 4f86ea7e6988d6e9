"""Putting a rendered image into the project: provenance in the PNG, atomic file, sidecar."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from storycore._fsutil import atomic_write_bytes, atomic_write_json
from storycore.errors import AssetError
from storycore.manifest import AssetRecord

__all__ = ["embed_provenance", "store_render"]

PROVENANCE_KEY = "storycore"


def embed_provenance(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    """Return PNG bytes with ``provenance`` in a ``storycore`` text chunk, and the image size.

    ComfyUI's own chunks (``prompt``, ``workflow``) are kept. Non-PNG input is converted to PNG.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            info = PngImagePlugin.PngInfo()
            for key, value in (image.info or {}).items():
                if isinstance(key, str) and isinstance(value, str) and key != PROVENANCE_KEY:
                    info.add_text(key, value)
            info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
            out = io.BytesIO()
            image.save(out, format="PNG", pnginfo=info)
            return out.getvalue(), image.width, image.height
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AssetError(
            f"the server sent an image that cannot be decoded ({exc})",
            where=str(provenance.get("server_url", "server")),
            hint="check the workflow's output node; the panel will be retried on the next run",
        ) from None


def store_render(root: Path, record: AssetRecord, data: bytes) -> AssetRecord:
    """Write the image and its sidecar atomically; fill in size and sha256; return the record."""
    target = root / record.path
    atomic_write_bytes(target, data)
    record.size = len(data)
    record.sha256 = hashlib.sha256(data).hexdigest()
    atomic_write_json(root / record.sidecar_path, record.to_dict())
    return record
