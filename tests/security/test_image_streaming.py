"""A large image is streamed to disk, not held whole in memory several times.

``generate-images`` downloads a panel's image into a temporary file in the shot's folder (hashed
on the way), splices StoryCore's provenance chunk in file to file, and the storyboard's thumbnail
decodes the image once. Before issue 15 the engine held the image in memory two or three times
over (the download, the spliced copy, the storyboard's RGB copy of the decoded pixels): a valid
122 MiB PNG peaked at about 450 MB, so two of them landing at once passed 500 MB.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest

from storycore.assets._inventory import temporary_reason
from storycore.engine._outputs import PROVENANCE_KEY
from storycore.journal import Journal
from storycore.manifest import GENERATED_DIR, records
from storycore.project import load_project
from storycore.review._render_details import read_png_texts
from tests.security.test_hostile_http import png_stream, render, streaming

# A legitimate large render costs the CLI's own ~100 MB plus one decoded copy of the pixels
# (for the storyboard's thumbnail) and a few MiB of buffers; the limit is 500 MB.
PEAK_MB = 250


def _leftovers(root: Path) -> list[str]:
    """Files in the generated-images folder other than renders and their sidecars."""
    folder = root / GENERATED_DIR
    return sorted(
        str(p.relative_to(root))
        for p in folder.rglob("*")
        if p.is_file() and (p.name.startswith(".") or not p.name.endswith((".png", ".json")))
    )


@pytest.mark.parametrize(
    ("width", "height", "channels"),
    [(4000, 4000, 4), (4600, 4600, 3)],
    ids=["16-bit RGBA 122 MiB", "16-bit RGB 121 MiB"],
)
async def test_a_large_png_lands_streamed_in_bounded_memory(
    tmp_path: Path, width: int, height: int, channels: int
) -> None:
    """A valid PNG of about 122 MiB (stored, so as large as its pixels; the limit is 128 MiB),
    made as it is sent: landed with its provenance and shown on the storyboard, the child's
    peak RSS well under 500 MB."""
    result, root = await render(
        tmp_path,
        {"GET /view": streaming(png_stream(width, height, channels=channels))},
        limit_s=100,
    )
    assert result.rc == 0, result.output[-3000:]
    result.assert_bounded(seconds=80)
    assert result.peak_rss_mb < PEAK_MB, f"peak RSS {result.peak_rss_mb:.0f} MB"
    [record] = records(load_project(root))
    image = root / record.path
    assert record.size == image.stat().st_size > 120 << 20
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    assert record.sha256 == digest.hexdigest()  # of the final file, provenance included
    assert (record.width, record.height) == (width, height)
    provenance = json.loads(read_png_texts(image)[PROVENANCE_KEY])
    assert provenance["shot_id"] == record.shot_id and provenance["render"] == record.render
    assert _leftovers(root) == []
    done = [e for e in Journal(root).events() if e["event"] == "done"]
    assert [e["sha256"] for e in done] == [record.sha256]
    assert (root / "storyboard" / "board.html").is_file()


def test_the_temporary_names_are_ones_assets_clean_recognises() -> None:
    """The downloaded file (before the splice), the client's partial download of it, and the
    spliced image before its rename are StoryCore's own temporary files for ``assets clean``."""
    from storycore.engine._outputs import download_name

    folder = PurePosixPath(*GENERATED_DIR.parts, "shot_01")
    name = download_name("shot_01")
    assert temporary_reason(folder / name) == "partial download"
    assert temporary_reason(folder / f".{name}.0123abcd.part") == "partial download"
    assert temporary_reason(folder / ".shot_01_v1_r001.png.89abcdef.tmp") == "interrupted write"
    assert download_name("shot_01") != name  # a fresh name each time


_THUMBNAIL_COST = """
import sys
from pathlib import Path
from storycore.review._thumbcache import _open_image

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = hwm()
image = _open_image(Path(sys.argv[1]))
print(hwm() - before, image.size, image.mode)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
def test_the_storyboard_thumbnail_decodes_the_image_once(tmp_path: Path) -> None:
    """A 39.9-megapixel RGB render (the limit is 40): the thumbnail is made from one decoded
    copy of the pixels (Pillow keeps 4 bytes a pixel, 160 MB here); before, the decoded image
    was converted to RGB, a second full copy, before it was shrunk (320 MB)."""
    import subprocess
    import sys

    side = 6320
    path = tmp_path / "large.png"
    path.write_bytes(b"".join(png_stream(side, side, depth=8, channels=3, level=9)))
    done = subprocess.run(
        [sys.executable, "-c", _THUMBNAIL_COST, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    grew = int(done.stdout.split()[0])
    one_copy = side * side * 4
    assert grew < one_copy * 1.4, f"{grew >> 20} MiB for one copy of {one_copy >> 20} MiB"
    assert "(480, 480) RGB" in done.stdout


async def test_a_webp_output_lands_as_a_png_with_its_provenance(tmp_path: Path) -> None:
    """A guard: a graph ending in a WebP saver; the downloaded file is converted to PNG (with
    its provenance) as before, and nothing temporary is left."""
    import io

    from aiohttp import web
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 30, 30)).save(buffer, format="WEBP")
    body = buffer.getvalue()

    async def view(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/webp")

    result, root = await render(tmp_path, {"GET /view": view})
    assert result.rc == 0, result.output[-3000:]
    result.assert_bounded(seconds=40)
    [record] = records(load_project(root))
    image = root / record.path
    data = image.read_bytes()
    assert data.startswith(b"\x89PNG") and record.sha256 == hashlib.sha256(data).hexdigest()
    assert (record.width, record.height) == (96, 64)
    assert json.loads(read_png_texts(image)[PROVENANCE_KEY])["shot_id"] == record.shot_id
    assert _leftovers(root) == []
