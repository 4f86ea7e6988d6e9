"""Asset storage: list, statistics, integrity checks and retention-based cleanup.

The layout of rendered images is the one :mod:`storycore.manifest` documents. Public surface:

- :func:`list_assets`, :func:`asset_stats`, :func:`verify_assets` read the project;
  :func:`read_record` reads one manifest item as received (odd types tolerated or named);
- :func:`clean_assets` applies a :class:`RetentionPolicy` (manifest written before any delete);
- :func:`clean_server` removes what StoryCore caused in a local ComfyUI's ``output/`` and
  ``input/`` folders, and lists what was left on servers it cannot clean.
"""

from storycore._text import plural
from storycore.assets._clean import (
    CacheUnit,
    CleanPlan,
    CleanReport,
    Removal,
    cache_units,
    clean_assets,
    plan_clean,
    select_records,
    select_temporary,
)
from storycore.assets._inventory import (
    CACHE_DIR,
    AssetEntry,
    AssetStats,
    KindTotals,
    StoredFile,
    VerifyProblem,
    VerifyReport,
    active_asset_ids,
    asset_stats,
    cache_files,
    file_sha256,
    list_assets,
    record_path_ok,
    temporary_files,
    unknown_files,
    verify_assets,
)
from storycore.assets._policy import RetentionPolicy, build_policy, load_retention_policy
from storycore.assets._records import read_record
from storycore.assets._server import (
    NO_DELETE_API,
    RemoteLeftovers,
    ServerCleanReport,
    ServerFile,
    clean_server,
    comfyui_dir_candidates,
    find_comfyui_dir,
    same_server,
)

__all__ = [
    "CACHE_DIR",
    "NO_DELETE_API",
    "AssetEntry",
    "AssetStats",
    "CacheUnit",
    "CleanPlan",
    "CleanReport",
    "KindTotals",
    "RemoteLeftovers",
    "Removal",
    "RetentionPolicy",
    "ServerCleanReport",
    "ServerFile",
    "StoredFile",
    "VerifyProblem",
    "VerifyReport",
    "active_asset_ids",
    "asset_stats",
    "build_policy",
    "cache_files",
    "cache_units",
    "clean_assets",
    "clean_server",
    "comfyui_dir_candidates",
    "file_sha256",
    "find_comfyui_dir",
    "list_assets",
    "load_retention_policy",
    "plan_clean",
    "plural",
    "read_record",
    "record_path_ok",
    "same_server",
    "select_records",
    "select_temporary",
    "temporary_files",
    "unknown_files",
    "verify_assets",
]
