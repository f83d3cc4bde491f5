"""tools/gpu_check.py: the "no GPU" exit here, and every check run on the CPU (CPU against CPU)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(gpu_check.has_gpu(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_and_exits_0():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_check.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no GPU: this Paddle")
    assert "paddlepaddle-gpu" in done.stdout


def test_every_check_runs_on_the_cpu(tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--steps", "2", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PaddlePaddle" in out and "CPU build" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["check", "result"])
    rows = lines[header + 1:lines.index("", header)]
    assert len(rows) == 8 and all(" PASS " in line for line in rows), out
    # the same step on the same device gives the same loss and gradients exactly
    assert out.count("relative L2 0.0e+00") == 4 and "relative 0.0e+00" in out
    assert "all checks passed" in out
    assert os.path.isfile(tmp_path / "logs" / "amp" / "models" / "gpu_check" / "inference" / "depth.json")


def test_a_step_on_changed_weights_is_caught():
    """compare_step measures what differs: a weight changed between the two runs shows."""
    opt = gpu_check.MonodepthOptions().parse(["--height", "64", "--width", "192", "--frame_ids", "0", "-1", "1",
                                              "--weights_init", "scratch", "--batch_size", "1"])
    import paddle
    paddle.seed(0)
    model = gpu_check.MonodepthModel(opt, tie_break_noise=False)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    rng = np.random.RandomState(0)
    batch = {}
    for f in (0, -1, 1):
        batch[("color", f, 0)] = batch[("color_aug", f, 0)] = rng.rand(1, 3, 64, 192).astype(np.float32)
    for s in opt.scales[1:]:
        batch[("color", 0, s)] = rng.rand(1, 3, 64 // 2 ** s, 192 // 2 ** s).astype(np.float32)
    K = np.array([[[0.58 * 192, 0, 0.5 * 192, 0], [0, 1.92 * 64, 0.5 * 64, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], np.float32)
    batch[("K", 0)], batch[("inv_K", 0)] = K, np.linalg.inv(K).astype(np.float32)
    loss, grads, choices = gpu_check.one_step(opt, state, batch, "cpu")
    assert np.isfinite(loss) and set(grads) == {"encoder", "depth", "pose_encoder", "pose"}
    assert set(choices) == set(opt.scales)
    changed = dict(state)
    name = next(k for k in state if k.startswith("models.depth") and k.endswith("weight"))
    changed[name] = state[name] * 1.5
    loss2, grads2, _ = gpu_check.one_step(opt, changed, batch, "cpu", replay=choices)
    assert loss2 != loss
    assert gpu_check.relative_l2(grads2["depth"], grads["depth"]) > gpu_check.GRAD_RTOL


def test_table_and_verdicts():
    assert gpu_check.losses_fall([0.3, 0.2, 0.1])
    assert not gpu_check.losses_fall([0.1, 0.2])
    assert not gpu_check.losses_fall([0.3, float("nan"), 0.1])
    assert gpu_check.relative_l2([1.0, 2.0], [1.0, 2.0]) == 0
    assert gpu_check.relative_l2([3.0, 4.0], [0.0, 0.0]) == 5.0
    assert gpu_check.relative_l2([1.1, 0.0], [1.0, 0.0]) == pytest.approx(0.1)
    text = gpu_check.table([("a check", True, "x 1", 1.5), ("another", False, "y 2", 0.0)])
    lines = text.splitlines()
    assert lines[0].split() == ["check", "result", "time", "measured"]
    assert lines[1].split() == ["a", "check", "PASS", "1.5s", "x", "1"]
    assert lines[2].split()[1:3] == ["FAIL", "0.0s"]
