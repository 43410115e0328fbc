"""End-to-end bronze -> silver -> gold throughput and peak memory, workbench against its peers.

For each size: Meta-like bronze rows are generated once (cached under ``--cache-dir``), then
each contender runs in a process of its own (see ``bench/contenders.py``):

- ``workbench``: ``workbench.medallion.pipeline.transform`` on a fresh workbench home where
  the bronze rows were landed as one batch (the landing is set-up, done in another process);
- ``floor``: the hand-written Polars pipeline the stack facts measure as the floor;
- ``pandas``: the same steps written plainly with pandas (sizes up to ``--pandas-max``).

Only the transformation is timed. Peak memory is the contender process's maximum RSS
(``os.wait4``). Targets: workbench/floor <= 1.3, pandas/workbench >= 6, workbench peak < 6 GiB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTENDERS = HERE / "contenders.py"
TARGET_VS_FLOOR = 1.3
TARGET_PANDAS = 6.0
TARGET_PEAK_GIB = 6.0
GiB = 2**30
DEFAULT_SIZES = [1_000_000, 10_000_000]


def run_child(args: list[str], workdir: Path) -> dict[str, Any]:
    """Run ``contenders.py ARGS`` in its own process; its result plus its peak RSS in GiB."""
    result_path = workdir / f"result-{args[0]}.json"
    log_path = workdir / f"log-{args[0]}.txt"
    result_path.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(CONTENDERS), *args[:3], str(result_path),
                                 *args[3:]], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "WORKBENCH_PROGRESS": "false"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"contender {args[0]} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(result_path.read_text())
    result["peak_gib"] = usage.ru_maxrss * 1024 / GiB  # ru_maxrss is in KiB on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["load_before"] = load_before  # the machine is shared: 1-minute load average
    return result


def measure(contender: str, bronze: Path, scratch: Path, sample: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{contender}-", dir=scratch))
    try:
        if contender == "workbench":
            setup = run_child(["setup", str(bronze), str(workdir)], workdir)
            print(f"    workbench set-up (landing bronze, untimed): {setup['seconds']:.1f} s",
                  flush=True)
            return run_child(["workbench", str(bronze), str(workdir)] +
                             (["--sample"] if sample else []), workdir)
        return run_child([contender, str(bronze), str(workdir)], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summarise(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in runs)
    last = runs[-1]
    return {
        "seconds": seconds, "seconds_all": [r["seconds"] for r in runs],
        "rows_per_second": rows / seconds, "peak_gib": max(r["peak_gib"] for r in runs),
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "load_before": [r["load_before"] for r in runs],
        **{k: last[k] for k in ("rows_in", "rows_silver", "rows_quarantined", "gold_rows",
                                "gold_spend_org", "gold_conversions", "quarantine_by_check")},
        **({"sample": last["sample"]} if "sample" in last else {}),
        **({"stages": last["stages"]} if "stages" in last else {}),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(size: int, res: dict[str, dict[str, Any]]) -> list[str]:
    """The ratio and check lines of one size."""
    lines = []
    wb, fl, pd_ = res.get("workbench"), res.get("floor"), res.get("pandas")
    if wb:
        balanced = wb["rows_in"] == wb["rows_silver"] + wb["rows_quarantined"]
        lines.append(f"check {size:,}: workbench rows_in {wb['rows_in']:,} = silver "
                     f"{wb['rows_silver']:,} + quarantined {wb['rows_quarantined']:,} "
                     f"{verdict(balanced)}")
        lines.append(f"peak {size:,}: workbench {wb['peak_gib']:.2f} GiB "
                     f"(target < {TARGET_PEAK_GIB:g}) {verdict(wb['peak_gib'] < TARGET_PEAK_GIB)}")
    if wb and fl:
        ratio = wb["seconds"] / fl["seconds"]
        lines.append(f"ratio {size:,}: workbench/floor = {ratio:.2f} "
                     f"(target <= {TARGET_VS_FLOOR}) {verdict(ratio <= TARGET_VS_FLOOR)}; "
                     f"CPU seconds {wb['cpu_seconds'] / fl['cpu_seconds']:.2f}")
        rel = abs(wb["gold_spend_org"] - fl["gold_spend_org"]) / max(abs(fl["gold_spend_org"]), 1e-9)
        lines.append(f"check {size:,}: gold spend_org workbench {wb['gold_spend_org']:,.2f} vs "
                     f"floor {fl['gold_spend_org']:,.2f} (relative difference {rel:.1e}) "
                     f"{verdict(rel <= 1e-6)}")
        same = (wb["rows_silver"], wb["rows_quarantined"]) == (fl["rows_silver"], fl["rows_quarantined"])
        lines.append(f"check {size:,}: silver/quarantine rows workbench {wb['rows_silver']:,}/"
                     f"{wb['rows_quarantined']:,} vs floor {fl['rows_silver']:,}/"
                     f"{fl['rows_quarantined']:,} {verdict(same)}")
    if wb and pd_:
        ratio = pd_["seconds"] / wb["seconds"]
        lines.append(f"ratio {size:,}: pandas/workbench = {ratio:.2f} "
                     f"(target >= {TARGET_PANDAS:g}) {verdict(ratio >= TARGET_PANDAS)}; "
                     f"CPU seconds {pd_['cpu_seconds'] / wb['cpu_seconds']:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    ap.add_argument("--pandas-max", type=int, default=1_000_000,
                    help="run pandas only at sizes up to this (it decodes JSON row by row)")
    ap.add_argument("--no-pandas-limit", action="store_true", help="run pandas at every size")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender and size (median)")
    ap.add_argument("--contenders", nargs="+", default=["workbench", "floor", "pandas"],
                    choices=["workbench", "floor", "pandas"])
    ap.add_argument("--payload", choices=["compact", "full"], default="compact",
                    help="compact: ~525-byte records; full: every action type the synthetic "
                         "connector writes (~750 bytes)")
    ap.add_argument("--sample", action="store_true",
                    help="sample the workbench's stack and RSS every 50 ms (where time goes)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/pipeline.json for the default "
                         "sizes, else pipeline-<sizes>.json, so quick runs keep the full results)")
    ap.add_argument("--cache-dir", type=Path, default=HERE / "results" / "cache")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="folder for the contenders' temporary homes (default: system temp)")
    args = ap.parse_args(argv)
    if args.out is None:
        suffix = "" if args.sizes == DEFAULT_SIZES else "-" + "-".join(map(str, args.sizes))
        args.out = HERE / "results" / f"pipeline{suffix}.json"
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-", dir=args.scratch))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                        / GiB, 1)},
        "payload": args.payload, "repeat": args.repeat, "sizes": {},
    }
    lines: list[str] = []
    table = [f"{'size':>12}  {'contender':<10} {'seconds':>9} {'rows/s':>12} {'peak GiB':>9} "
             f"{'CPU s':>8} {'load':>5}"]
    try:
        for size in args.sizes:
            print(f"size {size:,}: generating bronze (cached)...", flush=True)
            gen = run_child(["generate", str(size), str(args.cache_dir), args.payload], scratch)
            bronze = Path(gen["path"])
            print(f"    bronze {bronze.name}: {gen['mean_payload_bytes']:.0f} bytes per payload, "
                  f"{gen['seconds']:.1f} s", flush=True)
            res: dict[str, dict[str, Any]] = {}
            for contender in args.contenders:
                if contender == "pandas" and not args.no_pandas_limit and size > args.pandas_max:
                    continue
                runs = []
                for i in range(args.repeat):
                    print(f"    {contender} run {i + 1}/{args.repeat}...", flush=True)
                    runs.append(measure(contender, bronze, scratch,
                                        args.sample and contender == "workbench"))
                    print(f"    {contender}: {runs[-1]['seconds']:.2f} s, peak "
                          f"{runs[-1]['peak_gib']:.2f} GiB", flush=True)
                res[contender] = summarise(runs, size)
                table.append(f"{size:>12,}  {contender:<10} {res[contender]['seconds']:>9.2f} "
                             f"{res[contender]['rows_per_second']:>12,.0f} "
                             f"{res[contender]['peak_gib']:>9.2f} "
                             f"{res[contender]['cpu_seconds']:>8.1f} "
                             f"{max(res[contender]['load_before']):>5.1f}")
            results["sizes"][str(size)] = {"bronze": gen, "results": res}
            lines += report(size, res)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            results["summary"] = table + lines
            args.out.write_text(json.dumps(results, indent=1, default=str))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print("\n".join(table))
    print()
    print("\n".join(lines))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
