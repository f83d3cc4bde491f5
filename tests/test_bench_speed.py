"""benchmarks/bench_speed.py: a --quick run of every section writes positive timings for
each measure, with the thread count asked for; bad flags are usage errors naming them."""
import json
import os
import statistics
import subprocess
import sys
from types import SimpleNamespace

import pytest

import inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_speed.py")


def bench(*flags):
    return subprocess.run([sys.executable, SCRIPT] + list(flags), capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_quick_run_times_every_measure(tmp_path):
    out = tmp_path / "speed.json"
    proc = bench("--quick", "--no_ref", "--threads", "1", "--infer_batches", "1", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    measures = result["measures"]
    # every installed backend in fp32 (Paddle Inference always), bf16 where it runs, int8 with NNCF
    modes = {k.split("/")[2] for k in measures if k.startswith("inference/predictor_creation/")}
    assert {b + "-fp32" for b in ("openvino", "onnxruntime", "paddle") if inference.installed(b)} <= modes
    assert modes <= {"openvino-fp32", "openvino-bf16", "openvino-int8", "onnxruntime-fp32", "paddle-fp32",
                     "paddle-bf16"}
    assert ("openvino-int8" in modes) == (inference.installed("openvino") and inference.installed("nncf"))
    precisions = {m.split("-")[1] for m in modes}
    assert set(measures) == {
        "train/in_memory", "train/with_loading", "eval/end_to_end", "video/demo"} | {
        "inference/{}/192x64/{}".format(mode, batch) for mode in ["eager"] + sorted(modes) for batch in (1, 3)} | {
        "inference/predictor_creation/{}/192x64".format(mode) for mode in modes} | {
        "eval/exported_{}_end_to_end".format(p) for p in precisions}
    for key in ("eval/end_to_end", "eval/exported_fp32_end_to_end"):  # the metrics agree
        for name, value in measures[key]["metrics"].items():
            assert value == pytest.approx(measures["eval/end_to_end"]["metrics"][name], abs=1e-6), (key, name)
    for name, row in measures.items():
        repeats = row["ours"]["repeats"]
        assert len(repeats) == (1 if "creation" in name else 2), name
        assert all(t > 0 for t in repeats), name
        assert min(repeats) <= row["ours"]["median"] <= max(repeats), name
        assert row["reference"] is None and row["ratio"] is None, name
    assert measures["train/in_memory"]["ours"]["per_second"] == pytest.approx(
        1 / measures["train/in_memory"]["ours"]["median"])
    assert result["machine"]["threads"] == 1
    assert not {"argv", "section_in"} & set(result["settings"])  # the sections' processes' plumbing
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    model = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")][0]
    assert result["machine"]["cpu"].endswith(model) and model in proc.stdout
    flags = [line for line in cpuinfo.splitlines() if line.startswith("flags")][0].split()
    assert ("avx2" in result["machine"]["cpu_flags"]) == ("avx2" in flags)
    assert result["reference"] is None
    assert "evaluation end to end, eager, 4 images at 192x64" in proc.stdout
    assert "demo on a video, exported (" in proc.stdout


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


def test_the_eager_network_and_the_reference_go_before_any_exported_runtime(monkeypatch, tmp_path):
    """Runtimes loaded in a process slow what runs after them (DEVELOPERS.md)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import bench_speed
    calls = []

    class Reference:
        def run(self, section, **cfg):
            calls.append("reference")
            return {}
    monkeypatch.setattr(bench_speed, "load_net_and_info", lambda weights: (lambda x: calls.append("eager") or x, {}))
    monkeypatch.setattr(bench_speed, "export_every_precision", lambda *args: calls.append("export"))
    monkeypatch.setattr(bench_speed, "exported_predictors", lambda prefix: calls.append("predictors") or iter(()))
    preset = {"infer_sizes": [(64, 192), (96, 320)], "infer_batches": [1, 2]}
    bench_speed.inference_section(SimpleNamespace(warmup=0, repeats=1), preset, "drive", "weights", Reference(),
                                  str(tmp_path))
    assert calls == ["eager"] * 4 + ["reference"] + ["export", "predictors"] * 2


def test_a_failing_section_stops_the_run_naming_it(tmp_path):
    proc = bench("--quick", "--no_ref", "--threads", "1", "--only", "train", "--train_batch", "100",
                 "--json", str(tmp_path / "speed.json"))
    assert proc.returncode == 1
    assert "the train section failed" in proc.stderr
    assert not (tmp_path / "speed.json").exists()


def test_rounds_pool_their_repeats(tmp_path):
    out = tmp_path / "speed.json"
    proc = bench("--quick", "--no_ref", "--threads", "1", "--only", "inference", "--rounds", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "timing inference, round 2 of 2" in proc.stdout
    for name, row in json.loads(out.read_text())["measures"].items():
        repeats = row["ours"]["repeats"]
        assert len(repeats) == (2 if "creation" in name else 4), name
        assert row["ours"]["median"] == pytest.approx(statistics.median(repeats)), name
        if "creation" not in name:  # images per second
            assert row["ours"]["per_second"] == pytest.approx(1 / row["ours"]["median"]), name
