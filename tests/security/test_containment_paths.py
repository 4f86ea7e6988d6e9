"""The containment check's own path walk agrees with ``os.path.realpath`` on links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storycore._fsutil import _real_path_under, _real_root, ensure_inside
from storycore.errors import OutsideProjectError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "in_link").symlink_to(root / "a")
    (root / "a" / "rel_link").symlink_to("b")
    (root / "out_link").symlink_to(tmp_path / "outside")
    (root / "chain").symlink_to("in_link/rel_link")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    return root


@pytest.mark.parametrize(
    "relative",
    [
        "a/b/file.png",
        "in_link/b/x",
        "a/rel_link/new/deeper.txt",
        "out_link/x",
        "chain/y",
        "dangling",
        "missing/one/two",
        "a/../a/b",
        ".",
    ],
)
def test_the_walk_gives_what_realpath_gives(tree: Path, relative: str) -> None:
    path = tree / relative
    assert _real_path_under(tree, _real_root(tree), path) == os.path.realpath(path)


def test_links_that_leave_are_refused_and_links_inside_are_not(tree: Path) -> None:
    assert ensure_inside(tree, tree / "chain" / "f") == tree / "chain" / "f"
    for relative in ("out_link/f", "dangling"):
        with pytest.raises(OutsideProjectError):
            ensure_inside(tree, tree / relative)


def test_a_root_replaced_by_a_link_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    ensure_inside(root, root / "x")  # remembered
    root.rmdir()
    (tmp_path / "elsewhere").mkdir()
    root.symlink_to(tmp_path / "elsewhere")
    assert _real_root(root) == os.path.realpath(tmp_path / "elsewhere")
