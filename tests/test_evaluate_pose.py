"""evaluate_pose.py: the trajectory error on hand-made snippets, ground-truth motions, a run
of a tiny untrained pose network on a tiny odometry sequence, and the errors."""
import json
import os

import numpy as np
import paddle
import pytest
from PIL import Image

import evaluate_pose
import network
from evaluate_pose import evaluate, load_gt_motions, snippet_ate, snippet_positions
from options import MonodepthOptions


def translation(x, y, z):
    m = np.eye(4)
    m[:3, 3] = x, y, z
    return m


def test_snippet_positions_chain_the_motions():
    turn = np.eye(4)
    turn[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    positions = snippet_positions([translation(1, 0, 0) @ turn, translation(1, 0, 0)])
    np.testing.assert_allclose(positions, [[0, 0, 0], [1, 0, 0], [1, 1, 0]], atol=1e-12)


def test_trajectory_error_is_scale_and_offset_free_and_not_an_rmse():
    gt = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float)
    assert snippet_ate(gt, 3 * gt + 5) == pytest.approx(0)
    # pred goes sideways: the best scale is 0, leaving the ground truth's own length
    pred = np.array([[0, 0, 0], [0, 1, 0], [0, 2, 0]], float)
    assert snippet_ate(gt, pred) == pytest.approx(np.sqrt(5) / 3)  # a true RMSE: sqrt(5 / 3)


def test_ground_truth_motions_are_the_inverse_relative_poses(tmp_path):
    lines = ["1 0 0 {} 0 1 0 {} 0 0 1 {}".format(*t) for t in ([0, 0, 0], [0, 0, 1], [0, 1, 3])]
    (tmp_path / "09.txt").write_text("\n".join(lines) + "\n")
    motions = load_gt_motions(str(tmp_path / "09.txt"))
    np.testing.assert_allclose(motions, [translation(0, 0, -1), translation(0, -1, -2)], atol=1e-12)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="12 numbers per line"):
        load_gt_motions(str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="poses"):
        load_gt_motions(str(tmp_path / "none.txt"))


@pytest.fixture(scope="module")
def odometry(tmp_path_factory):
    """Sequence 09 with 5 frames (4 split lines), its poses, and untrained pose weights."""
    root = tmp_path_factory.mktemp("odom")
    images = root / "data" / "sequences" / "09" / "image_2"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64, 192, 3), dtype=np.uint8)).save(images / "{:06d}.jpg".format(i))
    (root / "data" / "poses").mkdir()
    poses = ["1 0 0 0 0 1 0 0 0 0 1 {}".format(0.8 * i) for i in range(5)]
    (root / "data" / "poses" / "09.txt").write_text("\n".join(poses) + "\n")
    (root / "splits" / "odom").mkdir(parents=True)
    (root / "splits" / "odom" / "test_files_09.txt").write_text("".join("9 {} l\n".format(i) for i in range(4)))
    paddle.seed(0)
    encoder = network.ResnetEncoder(18, False, num_input_images=2)
    decoder = network.PoseDecoder(encoder.num_ch_enc, 1, 2)
    weights = root / "weights"
    weights.mkdir()
    paddle.save(encoder.state_dict(), str(weights / "pose_encoder.pdparams"))
    paddle.save(decoder.state_dict(), str(weights / "pose.pdparams"))
    return root


@pytest.fixture
def run(odometry, monkeypatch):
    monkeypatch.setattr(evaluate_pose, "SPLITS_DIR", str(odometry / "splits"))

    def run_(*args, weights=str(odometry / "weights")):
        opt = MonodepthOptions().parse(["--data_path", str(odometry / "data"), "--eval_split", "odom_9",
                                        "--load_weights_folder", weights, "--height", "64", "--width", "192",
                                        "--num_workers", "0", "--batch_size", "3", *args])
        return evaluate(opt)
    return run_


def test_run_saves_poses_and_json(run, odometry, capsys):
    result = run()
    weights = odometry / "weights"
    motions = np.load(weights / "poses.npy")
    assert motions.shape == (4, 4, 4)
    np.testing.assert_allclose(motions[:, 3], np.tile([0, 0, 0, 1], (4, 1)), atol=1e-6)
    gt = load_gt_motions(str(odometry / "data" / "poses" / "09.txt"))
    errors = [snippet_ate(snippet_positions(gt[i:i + 4]), snippet_positions(motions[i:i + 4])) for i in range(4)]
    assert result["trajectory_error"] == pytest.approx(np.mean(errors))
    assert result["trajectory_error_std"] == pytest.approx(np.std(errors))
    assert result["num_snippets"] == 4
    with open(weights / "eval_pose_odom_9.json") as f:
        assert json.load(f) == result
    assert "Trajectory error: {:0.3f}, std: {:0.3f}".format(np.mean(errors), np.std(errors)) in capsys.readouterr().out


def test_bad_inputs(run, odometry, tmp_path):
    with pytest.raises(ValueError, match="holds a ResNet-18 encoder but --num_layers is 50"):
        run("--num_layers", "50")
    with pytest.raises(FileNotFoundError, match="pose_encoder.pdparams not found.*separate_resnet"):
        run(weights=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        run(weights=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="odom_9 or odom_10"):
        run("--eval_split", "eigen")
    with pytest.raises(FileNotFoundError, match="test_files_10.txt"):
        run("--eval_split", "odom_10")
    poses = odometry / "data" / "poses" / "09.txt"
    text = poses.read_text()
    poses.write_text(text + text.splitlines()[-1] + "\n")
    try:
        with pytest.raises(ValueError, match="4 lines but .*09.txt holds 6 poses"):
            run()
    finally:
        poses.write_text(text)


def test_help_says_the_error_is_not_a_true_rmse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_pose.main(["--help"])
    assert exit_info.value.code == 0
    assert "true RMSE" in " ".join(capsys.readouterr().out.split())
