"""StoryCore benchmarks: ``python -m bench [--quick]`` (see bench/README_SECTION.md)."""
