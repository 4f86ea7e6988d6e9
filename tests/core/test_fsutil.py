"""Atomic writes: never half a file, permissions kept, nothing left behind on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storycore._fsutil import atomic_write_bytes, atomic_writer, json_bytes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_rewritten_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "project.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_bytes(target, b'{"a": 1}')
    assert target.read_bytes() == b'{"a": 1}' and _mode(target) == 0o640
    with atomic_writer(target) as handle:
        handle.write(b"streamed")
    assert target.read_bytes() == b"streamed" and _mode(target) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_new_file_gets_the_usual_permissions_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "deep" / "new.png", b"png")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "deep" / "new.png") == 0o644


def test_a_failed_stream_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "board.html"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half")
        raise RuntimeError("cut")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.html"]


def test_json_bytes_match_the_standard_library_and_fall_back_for_big_integers() -> None:
    import json

    data = {"é": [1, 2.5, None, True, {}, []], "n": {"deep": "text"}}
    assert json_bytes(data) == (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    huge = {"seed": 2**70}  # beyond orjson's 64-bit integers
    assert json_bytes(huge) == (json.dumps(huge, indent=2) + "\n").encode()
