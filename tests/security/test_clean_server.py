"""`storycore assets clean --server` trusts the project's journal only as far as it can prove:
a received project whose journal names the user's own ComfyUI outputs and inputs gets nothing
of theirs deleted; StoryCore's own outputs (its `<root>/<project>/<shot>/v<N>` prefixes) and
uploads (under `input/storycore/`, still holding the bytes it uploaded) go."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storycore.journal import Journal
from tests.assets._project import build
from tests.security._support import run_storycore

LOCAL = "http://127.0.0.1:8188"
OURS_PREFIX = "storycore/lighthouse/shot_01/v1"


async def test_a_hostile_journal_cannot_delete_the_users_comfyui_files(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    comfy = tmp_path / "ComfyUI"
    users = {
        "output/ComfyUI_00001_.png": b"the user's render",
        "output/portrait_00007_.png": b"another of theirs",
        "output/storycore_00001_.png": b"a flat prefix StoryCore never uses",
        "input/example.png": b"ComfyUI's bundled example",
        "input/pose.png": b"the user's pose reference",
        "input/storycore/unhashed.png": b"named without a checksum",
    }
    ours = {
        f"output/{OURS_PREFIX}_00001_.png": b"our output",
        "input/storycore/ref.png": b"our upload",
    }
    for rel, data in {**users, **ours}.items():
        (comfy / rel).parent.mkdir(parents=True, exist_ok=True)
        (comfy / rel).write_bytes(data)
    (comfy / "main.py").write_text("# ComfyUI\n")
    with Journal(project.root) as journal:
        for number, prefix in enumerate(("ComfyUI", "portrait", "storycore", OURS_PREFIX)):
            journal.append("submit", prompt_id=f"p{number}", backend=LOCAL, filename_prefix=prefix)
            journal.append("done", prompt_id=f"p{number}")
        # uploads the hostile journal claims: no checksum, or the user's file's own checksum
        # outside StoryCore's upload folder
        journal.append("upload", backend=LOCAL, name="example.png", subfolder="")
        journal.append(
            "upload",
            backend=LOCAL,
            name="pose.png",
            subfolder="",
            sha256=hashlib.sha256(users["input/pose.png"]).hexdigest(),
        )
        journal.append("upload", backend=LOCAL, name="unhashed.png", subfolder="storycore")
        journal.append(
            "upload",
            backend=LOCAL,
            name="ref.png",
            subfolder="storycore",
            sha256=hashlib.sha256(ours["input/storycore/ref.png"]).hexdigest(),
        )
    result = await run_storycore(
        "assets", "clean", "-p", str(project.root), "--server", "--comfyui-dir", str(comfy)
    )
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output
    assert "Traceback" not in result.output
    for rel, data in users.items():
        assert (comfy / rel).read_bytes() == data, rel
    for rel in ours:
        assert not (comfy / rel).exists(), rel
