"""benchmarks/bench_speed.py: a --quick run of every section writes positive timings for
each measure, with the thread count asked for; bad flags are usage errors naming them."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_speed.py")


def bench(*flags):
    return subprocess.run([sys.executable, SCRIPT] + list(flags), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_quick_run_times_every_measure(tmp_path):
    out = tmp_path / "speed.json"
    proc = bench("--quick", "--no_ref", "--threads", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    measures = result["measures"]
    assert set(measures) == {
        "train/in_memory", "train/with_loading",
        "inference/eager/192x64/1", "inference/eager/192x64/2",
        "inference/exported/192x64/1", "inference/exported/192x64/2",
        "inference/predictor_creation/192x64", "eval/end_to_end"}
    for name, row in measures.items():
        repeats = row["ours"]["repeats"]
        assert len(repeats) == (1 if "creation" in name else 2), name
        assert all(t > 0 for t in repeats), name
        assert min(repeats) <= row["ours"]["median"] <= max(repeats), name
        assert row["reference"] is None and row["ratio"] is None, name
    assert measures["train/in_memory"]["ours"]["per_second"] == pytest.approx(
        1 / measures["train/in_memory"]["ours"]["median"])
    assert result["machine"]["threads"] == 1
    assert result["reference"] is None
    assert "evaluation end to end, 4 images at 192x64" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    (["--repeats", "0"], "argument --repeats: must be an integer >= 1, got '0'"),
    (["--threads", "two"], "argument --threads: must be an integer >= 1, got 'two'"),
    (["--only", "training"], "argument --only: invalid choice: 'training'"),
    (["--data_path", "/nonexistent"], "--data_path /nonexistent: no splits/ folder"),
])
def test_bad_flags_are_usage_errors(flags, message):
    proc = bench(*flags)
    assert proc.returncode == 2
    assert message in proc.stderr
