"""`make run`'s sweep three ways: no compilation cache, a cold cache, the same cache warm.

Each run is a fresh process into a fresh workdir (what a user waits for), timed from launch
to exit; the summaries must come out identical (the cache never changes a result).

    .venv/bin/python benchmarks/compile_cache.py [--config=experiments/configs/default.py]
"""
import argparse
import filecmp
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_sweep(config: str, workdir: str, cache: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "sweep.py"),
                    f"--config={config}", f"--workdir={workdir}",
                    f"--config.compile_cache={cache}", "--progress=false"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs",
                                                         "default.py"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        runs = [("no cache", ""), ("cold cache", cache), ("warm cache", cache)]
        rows = []
        for i, (label, setting) in enumerate(runs):
            workdir = os.path.join(tmp, f"run{i}")
            rows.append((label, timed_sweep(args.config, workdir, setting), workdir))
        entries = len(os.listdir(cache))
        same = all(filecmp.cmp(os.path.join(rows[0][2], "summary.csv"),
                               os.path.join(w, "summary.csv"), shallow=False)
                   for _, _, w in rows[1:])
    print(f"machine: {_cpu_model()}, {os.cpu_count()} cores; "
          f"config: {os.path.relpath(args.config, ROOT)}")
    print(f"{'run (fresh process, fresh workdir)':<36} {'wall s':>8} {'vs no cache':>12}")
    for label, seconds, _ in rows:
        print(f"{label:<36} {seconds:8.1f} {seconds / rows[0][1]:11.2f}x")
    print(f"cache entries written: {entries}; summaries identical: {same}")


if __name__ == "__main__":
    main()
