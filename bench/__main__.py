"""``python -m bench [--quick] [--only NAME...]``: every benchmark, side by side, one table.

Prints ratios (absolute times on a shared 2-core machine are noise) with their targets and
PASS/FAIL, and writes ``bench/results.json``. ``--quick`` (< 60 s) is for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import _download, _overhead, _throughput
from bench._common import Row

BENCHMARKS = {
    "throughput": _throughput.run,
    "overhead": _overhead.run,
    "download": _download.run,
}
RESULTS = Path(__file__).parent / "results.json"


def _fmt(row: Row) -> str:
    verdict = {True: "PASS", False: "FAIL", None: "-"}[row.passed]
    return f"| {row.benchmark} | {row.metric} | {row.value:.3f} | {row.target} | {verdict} |"


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | measure | value | target | result |", "|---|---|---|---|---|"]
    return "\n".join(lines + [_fmt(r) for r in rows])


async def _main(names: list[str], quick: bool) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="storycore-bench-") as tmp:
        for name in names:
            started = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            work = Path(tmp) / name
            work.mkdir()
            rows += await BENCHMARKS[name](work, quick=quick)
            print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s), for CI")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 1 when a row misses its target"
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    rows = asyncio.run(_main(names, args.quick))
    elapsed = time.perf_counter() - started
    print(table(rows))
    result = {
        "mode": "quick" if args.quick else "full",
        "seconds": round(elapsed, 1),
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}",
        "rows": [asdict(r) for r in rows],
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; written to {args.output}", file=sys.stderr)
    missed = [r.metric for r in rows if r.passed is False]
    return 1 if args.fail_on_miss and missed else 0


if __name__ == "__main__":
    sys.exit(main())
