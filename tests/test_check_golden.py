"""tools/check_golden.py: passes on the reference's golden file and fails on any changed group."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, ROOT, need

sys.path.insert(0, os.path.join(ROOT, "tools"))
import check_golden  # noqa: E402


@pytest.fixture(scope="module")
def golden_run():
    golden = dict(np.load(need(GOLDEN)))
    return golden, check_golden.run(golden, os.path.dirname(GOLDEN))


def test_golden_check_passes_with_exact_gradients(golden_run):
    golden, got = golden_run
    worst, failures = check_golden.compare(golden, got)
    assert failures == []
    assert {"train/disp", "train/color", "loss/loss", "grad_norm/encoder", "eval/disp", "choice",
            "exact/loss/loss", "exact/grad/depth", "exact/grad_norm/pose_encoder",
            "bn_after_train_step/encoder", "layer/ssim/out"} <= set(worst)
    per_network = check_golden.worst_exact_per_network(worst)
    assert sorted(per_network) == ["depth", "encoder", "pose", "pose_encoder"]
    assert all(error <= 1e-6 for error, _ in per_network.values())


@pytest.mark.parametrize("prefix, factor", [
    ("train/disp/", 1.01), ("train/sample/", 1.01), ("train/color/", 1.01), ("train/cam_T_cam/", 1.01), ("eval/features/", 1.01),
    ("bn_after_train_step/pose_encoder/", 1.01), ("layer/ssim/out", 1.01), ("loss/loss", 1.01),
    ("exact/loss/loss/2", 1 + 1e-7), ("exact/grad/depth/", 1.01), ("exact/grad/pose/", 1 + 1e-5),
    ("exact/grad_norm/encoder/", 1.01), ("exact/grad_norm/pose_encoder/encoder.layer1", 1 + 1e-5)])
def test_golden_check_fails_on_one_changed_group(golden_run, prefix, factor):
    golden, got = golden_run
    changed = {k: (v * factor if k.startswith(prefix) else v) for k, v in golden.items()}
    _, failures = check_golden.compare(changed, got)
    assert failures and all(f.startswith(prefix) for f in failures)


@pytest.mark.parametrize("prefix", ["grad/encoder/encoder.layer1", "grad_norm/depth/"])
def test_float32_gradients_guard_against_gross_errors(golden_run, prefix):
    """A float32 gradient 10 % off fails, although float32 round-off decides some of them."""
    golden, got = golden_run
    wrong = {k: (v * 1.1 if k.startswith(prefix) else v) for k, v in got.items()}
    _, failures = check_golden.compare(golden, wrong)
    assert failures and all(f.startswith(prefix) for f in failures)


def test_golden_check_fails_on_unknown_keys_and_flipped_masks(golden_run):
    golden, got = golden_run
    extra = dict(golden, **{"train/mystery/0": np.zeros(3, np.float32)})
    assert any(f.startswith("train/mystery/0") for f in check_golden.compare(extra, got)[1])
    flipped = dict(golden)
    mask = golden["train/identity_selection/1"].copy()
    mask[0, 10, 10] = 1 - mask[0, 10, 10]
    flipped["train/identity_selection/1"] = mask
    assert any("identity_selection/1" in f for f in check_golden.compare(flipped, got)[1])


def test_golden_check_fails_on_a_few_flipped_choices(golden_run):
    """The float64 step replays the golden choices, so changing them changes the exact
    gradients too, and the choice itself disagrees with the float32 run."""
    golden, got = golden_run
    choice = golden["choice/0"].copy()
    candidates = got["candidates/0"]
    # five pixels decided by far more than round-off, switched to their largest candidate
    margin = np.sort(candidates, 1)[:, 1] - np.sort(candidates, 1)[:, 0]
    pixels = np.argsort(-margin.ravel())[:5]
    choice.ravel()[pixels] = candidates.argmax(1).ravel()[pixels]
    flipped = dict(golden, **{"choice/0": choice})
    _, failures = check_golden.compare(flipped, check_golden.run(flipped, os.path.dirname(GOLDEN)))
    assert any(f.startswith("choice/0:") for f in failures)
    assert any(f.startswith("exact/grad/") for f in failures)
    assert any(f.startswith("exact/loss/loss/0") for f in failures)


def test_choices_within_round_off_are_undecided():
    candidates = np.array([[[[0.5, 0.2]], [[0.5 + 1e-6, 0.9]], [[0.7, 0.3]]]])  # 1 x 3 candidates x 1 x 2
    have, want = np.array([[[0, 0]]]), np.array([[[1, 2]]])
    undecided = check_golden.undecided_choices("choice/0", candidates, have, want)
    assert undecided.tolist() == [[[True, False]]]
    # automask: unwarped (first half) against warped (second half); 3 candidates round down
    two = candidates[:, :2]
    assert check_golden.undecided_choices("train/identity_selection/0", two, have, want).tolist() == [[[True, False]]]


def test_golden_file_without_exact_keys_is_refused(tmp_path):
    golden = dict(np.load(need(GOLDEN)))
    old = {k: v for k, v in golden.items() if not k.startswith(("exact/", "choice/"))}
    with pytest.raises(ValueError, match="predates"):
        check_golden.run(old, os.path.dirname(GOLDEN))
    path = tmp_path / "old.npz"
    np.savez(path, **old)
    # the weights module sits beside the golden file
    os.symlink(os.path.join(os.path.dirname(GOLDEN), "golden_weights.py"), tmp_path / "golden_weights.py")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_golden.py"), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "predates" in result.stdout


def test_golden_check_command_exit_codes(tmp_path):
    golden = need(GOLDEN)
    ok = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_golden.py"), golden],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "worst exact-gradient error" in ok.stdout and "OK: 0 failures" in ok.stdout
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_golden.py"),
                              str(tmp_path / "none.npz")], capture_output=True, text=True)
    assert missing.returncode == 1 and "no such file" in missing.stdout
