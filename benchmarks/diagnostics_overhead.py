"""Wall time of the default run (`python train.py`) with and without diagnostics.

    python benchmarks/diagnostics_overhead.py [--pairs 5] [extra overrides ...]

Runs ``train.py`` as a user would (fresh process, MLflow store in a temporary folder), ``on`` and
``off`` alternately so that load from other processes falls on both, and prints each pair, the
medians and the overhead in percent, plus the time the callback itself reports
(``diagnostics took X s`` in the job log).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one(mode: str, store: Path, i: int, extra: list[str]) -> tuple[float, float, float | None]:
    out = store / f"{mode}{i}"
    args = [sys.executable, str(ROOT / "train.py"), f"tracking.tracking_uri=sqlite:///{store}/m.db",
            f"tracking.artifact_root={store}/art", f"hydra.run.dir={out}", *extra]
    if mode == "off":
        args.append("diagnostics=off")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(args, env=env, check=True, capture_output=True)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    found = [float(m) for log in out.glob("*.log")
             for m in re.findall(r"diagnostics took ([0-9.]+) s", log.read_text())]
    return wall, cpu, (found[0] if found else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        one("off", store, -1, extra)  # create the store and warm the file cache
        rows = []
        for i in range(args.pairs):
            (on, on_cpu, inside), (off, off_cpu, _) = (one("on", store, i, extra),
                                                       one("off", store, i, extra))
            rows.append((on, off, on_cpu, off_cpu, inside))
            print(f"pair {i}: wall on {on:.2f} s / off {off:.2f} s, cpu on {on_cpu:.2f} s / "
                  f"off {off_cpu:.2f} s, callback {inside} s", flush=True)
    med = [statistics.median(col) for col in list(zip(*rows))[:4]]
    inside = statistics.median(r[4] for r in rows if r[4] is not None)
    for what, on, off in (("wall", med[0], med[1]), ("cpu", med[2], med[3])):
        print(f"median {what}: on {on:.2f} s, off {off:.2f} s, overhead {on - off:+.2f} s "
              f"({(on - off) / off:+.1%})")
    print(f"callback's own time (median) {inside:.2f} s = {inside / med[1]:.1%} of the run "
          f"without diagnostics")


if __name__ == "__main__":
    main()
