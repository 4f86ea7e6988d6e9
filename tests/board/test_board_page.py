"""The storyboard page as a review document: per panel what was rendered (prompts, seed,
sampler settings, size, models, render number, take/profile, times), a link to the full-size
image, local timestamps, and what changed in the storyboard since."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, PngImagePlugin

from storycore.manifest import active_record
from storycore.panels import panels_from_project
from storycore.project import load_project, save_project
from storycore.review._board import write_board
from tests.engine.conftest import fast_settings

from ._page import read_page
from ._project import add_render, copy_example
from ._renders import SETTINGS, rendered_project


async def test_each_panel_shows_what_it_was_rendered_with(tmp_path: Path) -> None:
    root = await rendered_project(tmp_path)
    project = load_project(root)
    wanted = {p.shot_id: p for p in panels_from_project(project, fast_settings(**SETTINGS))}
    html_path = root / "storyboard" / "board.html"  # written by the engine at the end of the run
    text = html_path.read_text(encoding="utf-8")
    page = read_page(text)
    panel, plan = page.panels["shot_01"], wanted["shot_01"]
    record = active_record(project, "shot_01")
    assert record is not None

    assert panel.row("Prompt") == plan.positive
    assert "Mara &amp; the &lt;lamp&gt; &quot;keeper&quot;" in text  # escaped, never markup
    assert panel.row("Negative") == "blurry, <b>text</b>" == plan.negative
    assert "<b>text</b>" not in text
    assert panel.row("Seed") == str(plan.seed) == str(record.seed)
    assert panel.row("Steps") == "5"
    assert panel.row("CFG") == "6.5"
    assert panel.row("Sampler") == plan.sampler
    assert panel.row("Scheduler") == plan.scheduler
    assert panel.row("Size") == f"{record.width} × {record.height} px"
    assert panel.row("Checkpoint") == "v1-5-pruned-emaonly.safetensors"
    assert panel.row("LoRA") == "ink-style.safetensors strength 0.6 / 1 (model / clip)"
    assert panel.row("ControlNet") == "control_v11p_sd15_canny.pth"
    assert panel.row("IP-Adapter") == "ip-adapter_sd15.safetensors"
    assert panel.row("CLIP vision") == "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    assert panel.row("Render") == "v1 · render 1 · shot_01_v1_r001.png"
    assert panel.row("Status") == "rendered"
    assert panel.row("Execution").endswith(" s on the server")
    assert panel.row("Queue wait").endswith(" s")
    assert panel.notes["source"].startswith("As rendered")
    assert "changed" not in panel.notes
    assert not panel.has("Take") and not panel.has("Profile")

    # the thumbnail links to the full-size image in the project, by a relative link
    assert panel.links == ["../" + record.path, "../" + record.path]
    assert (html_path.parent / panel.links[0]).resolve() == (root / record.path).resolve()
    assert panel.images[0].startswith("data:image/jpeg;base64,")

    # a panel without references lists only the checkpoint
    other = page.panels["shot_02"]
    assert [k for k, _ in other.rows if k in ("LoRA", "ControlNet", "IP-Adapter")] == []
    assert other.row("Prompt") == wanted["shot_02"].positive
    assert other.row("Steps") == "3"  # the settings' default, as rendered


async def test_the_page_says_what_changed_in_the_storyboard_since_the_render(
    tmp_path: Path,
) -> None:
    root = await rendered_project(tmp_path)
    board = json.loads((root / "storyboard.json").read_text())
    board["shots"][1]["prompt_modules"]["subject"] = "a new idea for panel two"
    board["shots"][1]["prompt_modules"]["technical"]["steps"] = 30
    (root / "storyboard.json").write_text(json.dumps(board))
    page = read_page(write_board(load_project(root)).html.read_text(encoding="utf-8"))
    panel = page.panels["shot_02"]
    assert "has changed since this render (prompt, steps)" in panel.notes["changed"]
    assert "panel number 2" in panel.row("Prompt")  # what was rendered, and beside it:
    assert panel.now["Prompt"].startswith("a new idea for panel two, ")
    assert panel.row("Steps") == "3" and panel.now["Steps"] == "30"
    assert set(panel.now) == {"Prompt", "Steps"}
    assert "changed" not in page.panels["shot_03"].notes


async def test_the_end_of_run_refresh_reads_cached_details_not_the_images(tmp_path: Path) -> None:
    root = await rendered_project(tmp_path)
    # the engine made each panel's details as it landed. Hide the image's text chunks (their
    # keywords overwritten in place: same size, same time, so the same cache key): a refresh
    # still shows the details, from the cache
    image = root / "assets/images/generated/shot_03/shot_03_v1_r001.png"
    before = image.stat()
    data = image.read_bytes()
    hidden = data.replace(b"tEXtprompt\0", b"tEXtxrompt\0").replace(
        b"tEXtstorycore\0", b"tEXtxtorycore\0"
    )
    assert hidden != data and len(hidden) == len(data)
    image.write_bytes(hidden)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    html = write_board(load_project(root)).html.read_text(encoding="utf-8")
    panel = read_page(html).panels["shot_03"]
    assert panel.row("Steps") == "3" and panel.notes["source"].startswith("As rendered")
    # without the cache the same image says it carries no workflow
    shutil.rmtree(root / ".storycore" / "cache")
    html = write_board(load_project(root)).html.read_text(encoding="utf-8")
    assert "carries no workflow" in read_page(html).panels["shot_03"].notes["source"]


def _png_with_chunks(texts: dict[str, str], color: tuple[int, int, int]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_every_text_from_the_image_is_escaped(tmp_path: Path) -> None:
    project = load_project(copy_example(tmp_path))
    record = add_render(project, "shot_01")
    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {"steps": 9, "cfg": 4, "sampler_name": "<i>euler</i>", "scheduler": "x"},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "<img src=x>.ckpt"}},
        "5": {"class_type": "LoraLoader", "inputs": {"lora_name": '"><script>1</script>'}},
    }
    ours = {"positive": "<script>alert(1)</script>", "negative": "a & b"}
    data = _png_with_chunks({"prompt": json.dumps(graph), "storycore": json.dumps(ours)}, (9, 9, 9))
    (project.root / record.path).write_bytes(data)
    items = project.data["asset_manifest"]["generated_images"]
    items[-1].update(sha256="changed", size=len(data), template="mine")
    save_project(project)
    text = write_board(load_project(project.root)).html.read_text(encoding="utf-8")
    page = read_page(text)
    assert "script" not in page.tags and page.tags.count("img") == 1  # the one thumbnail
    panel = page.panels["shot_01"]
    assert panel.row("Prompt") == "<script>alert(1)</script>"
    assert panel.now["Prompt"].startswith("a lone white lighthouse")  # the storyboard's
    assert panel.row("Negative") == "a & b"
    assert panel.row("Sampler") == "<i>euler</i>"
    assert panel.row("Checkpoint") == "<img src=x>.ckpt"
    assert panel.row("LoRA") == '"><script>1</script>'
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<i>" not in text


def test_an_image_without_its_workflow_shows_the_storyboard_values_marked(tmp_path: Path) -> None:
    # a PNG without text chunks: what a ComfyUI started with --disable-metadata sends
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01", seed=42)
    save_project(project)
    page = read_page(write_board(load_project(project.root)).html.read_text(encoding="utf-8"))
    panel = page.panels["shot_01"]
    assert "carries no workflow" in panel.notes["source"]
    assert panel.row("Steps") == "20 (storyboard)"  # the shot's own technical.steps
    assert panel.row("CFG") == "7 (storyboard)"
    assert panel.row("Seed") == "42"
    assert panel.row("Negative").endswith("(storyboard)")
    assert panel.row("Render time") == "3.5 s submitted to saved"  # no server time recorded
    # a panel not rendered yet: the storyboard's prompt, marked as such
    pending = page.panels["shot_03"]
    assert pending.notes["source"].startswith("Not rendered yet")
    assert pending.row("Prompt").endswith("(storyboard)")
    assert pending.row("Status") == "not rendered yet"
    assert not pending.links and not pending.has("Execution")


def test_take_and_profile_are_shown_when_the_record_has_them(tmp_path: Path) -> None:
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01")
    add_render(project, "shot_02", placeholder=True)
    items = project.data["asset_manifest"]["generated_images"]
    items[0].update(take=3, profile={"name": "draft-fast", "steps": 8})
    save_project(project)
    page = read_page(write_board(load_project(project.root)).html.read_text(encoding="utf-8"))
    assert page.panels["shot_01"].row("Take") == "3"
    assert page.panels["shot_01"].row("Profile") == "draft-fast"
    placeholder = page.panels["shot_02"]
    assert not placeholder.has("Take") and not placeholder.has("Profile")
    assert "placeholder" in placeholder.classes.split()
    assert placeholder.row("Status").startswith("PLACEHOLDER: a stand-in frame")


def test_timestamps_are_local_with_the_instant_in_the_datetime_attribute(tmp_path: Path) -> None:
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01")
    project.data["asset_manifest"]["generated_images"][0]["created_at"] = (
        "2026-12-01T21:32:05.250000Z"
    )
    save_project(project)
    # the page is written in the local zone of the machine writing it: here UTC+05:30
    env = {**os.environ, "TZ": "IST-5:30"}
    result = subprocess.run(
        [sys.executable, "-m", "storycore", "board", "--project", str(project.root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    page = read_page((project.root / "storyboard" / "board.html").read_text(encoding="utf-8"))
    assert page.panels["shot_01"].times == [("2026-12-01T21:32:05.250Z", "2 Dec 2026, 03:02")]
    assert page.panels["shot_01"].row("Rendered") == "2 Dec 2026, 03:02"
    assert "times are local (IST, UTC+05:30)" in page.header
    [(instant, shown)] = page.header_times
    assert instant.endswith("Z") and shown.count(",") == 1
