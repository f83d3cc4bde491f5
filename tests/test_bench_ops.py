"""benchmarks/bench_ops.py: a --quick run prints and writes a row per op and mode, with
positive timings, torch's beside them (and their ratio) where its Python is present."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_ops.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_ops  # noqa: E402


def run(*flags):
    return subprocess.run([sys.executable, SCRIPT] + list(flags), capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("no_ref", [True, False])
def test_quick_run_writes_a_row_per_op_and_mode(tmp_path, no_ref):
    ref_python = os.path.join(ROOT, "..", "refvenv", "bin", "python")
    if not no_ref and not os.path.exists(ref_python):
        pytest.skip("{} is absent: no torch to compare with".format(ref_python))
    out = tmp_path / "ops.json"
    proc = run("--quick", "--threads", "1", "--json", str(out), *(["--no_ref"] if no_ref else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["quick"] and (result["torch"] is None) == no_ref
    rows = result["rows"]
    assert [(r["op"], r["mode"]) for r in rows] == [(op, mode) for op in bench_ops.OPS for mode in bench_ops.MODES]
    for row in rows:
        assert len(row["paddle_times"]) == 2 and all(t > 0 for t in row["paddle_times"])
        assert row["paddle_ms"] == pytest.approx(1000 * sorted(row["paddle_times"])[0] / 2 +
                                                 1000 * sorted(row["paddle_times"])[1] / 2)
        if no_ref:
            assert row["torch_times"] == [] and row["torch_ms"] is None and row["ratio"] is None
        else:
            assert len(row["torch_times"]) == 2 and row["ratio"] == pytest.approx(row["paddle_ms"] / row["torch_ms"])
        line = next(line for line in proc.stdout.splitlines() if line.startswith(row["op"]) and
                    line.split()[-4] == row["mode"])
        assert float(line.split()[-3]) == pytest.approx(row["paddle_ms"], abs=0.006)


def test_inputs_are_seeded_and_shrunk_by_quick():
    expression, spec = bench_ops.OPS["grid_sample bilinear border 192x640"]
    full, again = bench_ops.input_arrays(spec, False), bench_ops.input_arrays(spec, False)
    assert all((a == b).all() for a, b in zip(full, again))
    assert [a.shape for a in full] == [(2, 3, 192, 640), (2, 192, 640, 2)]
    assert [a.shape for a in bench_ops.input_arrays(spec, True)] == [(2, 3, 24, 80), (2, 24, 80, 2)]
    grid = full[1]  # a warp's: neighbours a pixel or so apart, some points outside the image
    assert -1.1 <= grid.min() < -1 and 1 < grid.max() <= 1.2
    assert np.abs(np.diff(grid[..., 0], axis=2)).max() < 4 / 640


def test_bad_flag_is_a_usage_error():
    proc = run("--rounds", "0")
    assert proc.returncode == 2 and "argument --rounds: must be an integer >= 1, got '0'" in proc.stderr
