"""The thumbnail cache: one SQLite file, shared by threads, never an error for its user."""

from __future__ import annotations

import threading
from pathlib import Path

from storycore.review._thumbcache import ThumbCache


def test_thumbnails_survive_the_process_that_made_them(tmp_path: Path) -> None:
    with ThumbCache(tmp_path / "cache") as cache:
        assert cache.get("k1") is None
        cache.put("k1", b"\xff\xd8jpeg")
    with ThumbCache(tmp_path / "cache") as again:
        assert again.get("k1") == b"\xff\xd8jpeg"
        assert len(again) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir())[0] == "thumbs.sqlite"


def test_a_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "thumbs.sqlite").write_bytes(b"this is not a database" * 100)
    with ThumbCache(folder) as cache:
        assert cache.get("k") is None
        cache.put("k", b"data")
        assert cache.get("k") == b"data"


def test_an_unwritable_cache_reads_as_misses(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with ThumbCache(blocker) as cache:
        cache.put("k", b"data")  # no error: the cache is an optimisation only
        assert cache.get("k") is None
        assert len(cache) == 0


def test_threads_share_one_cache(tmp_path: Path) -> None:
    with ThumbCache(tmp_path) as cache:

        def work(n: int) -> None:
            for i in range(50):
                cache.put(f"{n}-{i}", bytes([n, i]))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(cache) == 200
        assert cache.get("3-49") == bytes([3, 49])
