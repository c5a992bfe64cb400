"""The training benchmark (benchmarks/bench_train.py) still runs: its --quick mode on a tiny
workload prints every row of its table.  Timings are never asserted (they are noise here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    "platform (tracking on)", "platform (tracking=none, no diag)", "bare loop (tensor slices)",
    "bare loop, Adam defaults", "S3 loop (DataLoader+ToTensor)", "job: train(cfg), tracking on", "Cost growth",
    "5-layer 512 net", "S4 circles", "platform (tracking on), fit", "bare loop", "GPU",
    "start-up (process start to first training step)", "bare imports of torch, Lightning",
    "first run on a new store", "peak RSS", "Targets (issue 10)", "Lightning floor (minimal module)",
    "platform / bare", "Lightning floor / bare", "platform / Lightning floor", "S3 / platform",
    "tracking+diagnostics / neither (epoch)", "circles: platform / bare", "start-up / bare imports",
]


@pytest.mark.slow  # about 45 s on 2 cores
def test_quick_benchmark_prints_the_whole_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--quick"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    missing = [row for row in ROWS if row not in proc.stdout]
    assert not missing, f"rows missing: {missing}\n{proc.stdout}"
