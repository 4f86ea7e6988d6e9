"""The board tests build their fixture projects exactly like the asset tests."""

from tests.assets._project import add_render, build, copy_example, png_bytes, snapshot

__all__ = ["add_render", "build", "copy_example", "png_bytes", "snapshot"]
