"""tools/prepare_frames.py and --dataset folder: a synthetic drive as a video, prepared,
trained on for a few steps and evaluated against the drive's rendered depth."""
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from datasets import FolderDataset
from evaluate_depth import evaluate
from export_gt_depth import export_gt_depths
from options import MonodepthOptions
from trainer import Trainer

sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_synthetic_kitti import generate_drive  # noqa: E402
from prepare_frames import main as prepare_frames, split_lines  # noqa: E402

WIDTH, HEIGHT, FRAMES = 192, 64, 16


def test_video_to_training_and_evaluation(tmp_path):
    cv2 = pytest.importorskip("cv2")
    drive = os.path.join(tmp_path, generate_drive(str(tmp_path), num_frames=FRAMES, width=WIDTH, height=HEIGHT,
                                                  workers=1)["folder"])
    video = str(tmp_path / "drive.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (WIDTH, HEIGHT))
    for i in range(FRAMES):
        writer.write(cv2.imread(os.path.join(drive, "image_02", "data", "{:010d}.jpg".format(i))))
    writer.release()
    root = str(tmp_path / "footage")
    prepare_frames([video, "--out", root, "--intrinsics", str(0.58 * WIDTH), str(1.92 * HEIGHT),
                    str(WIDTH / 2), str(HEIGHT / 2)])
    assert sorted(os.listdir(os.path.join(root, "drive"))) == ["{:010d}.jpg".format(i) for i in range(FRAMES)]
    train = open(os.path.join(root, "train_files.txt")).read().split("\n")[:-1]
    val = open(os.path.join(root, "val_files.txt")).read().split("\n")[:-1]
    test = open(os.path.join(root, "test_files.txt")).read().split("\n")[:-1]
    # training frames 0-4, 3 left out, validation 8-10, 3 left out, test 14-15 (the last 10%)
    assert train == ["drive {} l".format(i) for i in range(1, 4)] and val == ["drive 9 l"]
    assert test == ["drive 14 l", "drive 15 l"]
    # the drive's rendered depth as the folder dataset's ground truth
    os.makedirs(os.path.join(root, "drive", "depth"))
    for i in range(FRAMES):
        shutil.copy(os.path.join(drive, "proj_depth", "groundtruth", "image_02", "{:010d}.png".format(i)),
                    os.path.join(root, "drive", "depth"))

    sample = FolderDataset(root, train, HEIGHT, WIDTH, [0, -1, 1], 4)[0]
    np.testing.assert_allclose(sample[("K", 0)][:2, :3], [[0.58 * WIDTH, 0, WIDTH / 2], [0, 1.92 * HEIGHT, HEIGHT / 2]],
                               rtol=1e-6)
    assert sample["depth_gt"].shape == (1, HEIGHT, WIDTH)

    Trainer(MonodepthOptions().parse([
        "--dataset", "folder", "--data_path", root, "--split", root, "--log_dir", str(tmp_path / "logs"),
        "--model_name", "footage", "--height", str(HEIGHT), "--width", str(WIDTH), "--weights_init", "scratch",
        "--min_depth", "1", "--batch_size", "2", "--num_epochs", "1", "--num_workers", "0", "--seed", "1"])).train()
    export_gt_depths(root, root, dataset="folder")
    result = evaluate(MonodepthOptions().parse([
        "--dataset", "folder", "--data_path", root, "--eval_split", root, "--eval_mono", "--num_workers", "0",
        "--load_weights_folder", str(tmp_path / "logs" / "footage" / "models" / "weights_0")]))
    assert result["num_images"] == 2 and result["min_depth"] == 1  # the range travelled with the weights
    assert 0 < result["metrics"]["abs_rel"] < 1


def test_static_frames_every_and_fov(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    images = [still, still + 1] + [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(10)]
    for i, image in enumerate(images):  # frame 1 barely differs from frame 0: dropped
        Image.fromarray(image).save(frames / "f{:02d}.png".format(i))
    with pytest.warns(UserWarning, match="guessed from --fov 90"):
        prepare_frames([str(frames), "--out", str(tmp_path / "out"), "--fov", "90", "--frame_ids", "0", "1",
                        "--test_fraction", "0"])
    assert sorted(os.listdir(tmp_path / "out" / "frames")) == ["{:010d}.jpg".format(i) for i in range(11)] + [
        "intrinsics.txt"]
    assert open(tmp_path / "out" / "test_files.txt").read() == ""
    np.testing.assert_allclose(np.loadtxt(tmp_path / "out" / "frames" / "intrinsics.txt"), [24, 24, 24, 16])
    prepare_frames([str(frames), "--out", str(tmp_path / "every"), "--every", "2", "--min_change", "0",
                    "--frame_ids", "0", "1", "--fov", "60", "--test_fraction", "0"])
    assert len([n for n in os.listdir(tmp_path / "every" / "frames") if n.endswith(".jpg")]) == 6
    with pytest.raises(SystemExit):
        prepare_frames([str(tmp_path / "none.mp4"), "--out", str(tmp_path / "x")])
    assert "none.mp4: no such video or folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no intrinsics for sequence frames"):
        os.remove(tmp_path / "every" / "frames" / "intrinsics.txt")
        FolderDataset(str(tmp_path / "every"), ["frames 0"], 32, 64, [0, 1], 1)


def test_right_camera_follows_the_left_frames_kept(tmp_path, capsys):
    rng = np.random.default_rng(1)
    left, right = tmp_path / "left", tmp_path / "right"
    left.mkdir()
    right.mkdir()
    still = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    moving = [still, still] + [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(11)]  # 1 dropped
    right_images = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in moving]
    for i, (l_image, r_image) in enumerate(zip(moving, right_images)):
        Image.fromarray(l_image).save(left / "f{:02d}.png".format(i))
        Image.fromarray(r_image).save(right / "f{:02d}.png".format(i))
    out = tmp_path / "out"
    prepare_frames([str(left), "--right", str(right), "--out", str(out), "--intrinsics", "24", "24", "24", "16", "0.2",
                    "--frame_ids", "0", "1", "--val_fraction", "0.2", "--test_fraction", "0.2"])
    kept = [np.asarray(Image.open(out / "left" / "right" / "{:010d}.jpg".format(i)), dtype=np.float32) for i in range(12)]
    for image, source in zip(kept, right_images[:1] + right_images[2:]):
        assert np.abs(image - source).mean() < np.abs(image - right_images[1]).mean()  # JPEG: nearest, not equal
    # 12 frames: training 0-3, 2 left out, validation 6-7, 2 left out, test 10-11
    assert open(out / "train_files.txt").read() == "".join("left {} {}\n".format(i, s) for i in range(3) for s in "lr")
    assert open(out / "val_files.txt").read() == "left 6 l\nleft 6 r\n"
    assert open(out / "test_files.txt").read() == "left 10 l\nleft 11 l\n"
    np.testing.assert_allclose(np.loadtxt(out / "intrinsics.txt"), [24, 24, 24, 16, 0.2])
    sample = FolderDataset(str(out), ["left 0 r"], 32, 64, [0, 1, "s"], 1)[0]
    assert sample["stereo_T"][0, 3] == np.float32(0.1)  # the rig's baseline is the network's 0.1
    # --right alone prepares stereo training (--frame_ids 0): the first and last frames too
    capsys.readouterr()
    prepare_frames([str(left), "--right", str(right), "--out", str(tmp_path / "stereo"), "--intrinsics", "24", "24",
                    "24", "16", "0.2", "--val_fraction", "0.2", "--test_fraction", "0.2"])
    assert "--right: lines for stereo training (--frame_ids 0)" in capsys.readouterr().out
    assert open(tmp_path / "stereo" / "train_files.txt").read().split("\n")[:2] == ["left 0 l", "left 0 r"]
    # training 0-5, 1 left out, validation 7-8, 1 left out, test 10-11
    assert open(tmp_path / "stereo" / "val_files.txt").read() == "left 7 l\nleft 7 r\nleft 8 l\nleft 8 r\n"
    for argv, message in (([str(left), "--right", str(right), str(right)], "--right gives 2 right cameras for 1 inputs"),
                          ([str(left), "--intrinsics", "1", "2", "3"], "--intrinsics takes FX FY CX CY and optionally"),
                          ([str(left), "--intrinsics", "inf", "2", "3", "4"], "--intrinsics: expected 'fx fy cx cy'"),
                          ([str(left), "--intrinsics", "1", "2", "nan", "4"], "--intrinsics: expected 'fx fy cx cy'"),
                          ([str(left), "--fov", "0"], "--fov must be between 0 and 180 degrees")):
        with pytest.raises(SystemExit):
            prepare_frames(argv + ["--out", str(tmp_path / "bad")])
        assert message in capsys.readouterr().err


def test_frames_of_mixed_sizes_are_named(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(2)
    for i, size in enumerate([(32, 48), (32, 48), (40, 48)]):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(frames / "f{}.png".format(i))
    with pytest.raises(SystemExit):
        prepare_frames([str(frames), "--out", str(tmp_path / "out"), "--fov", "90"])
    assert capsys.readouterr().err.strip().endswith(
        "error: {} is 48x40, but {} is 48x32: the frames of a sequence must have one size".format(
            frames / "f2.png", frames / "f0.png"))


@pytest.mark.parametrize("frame_ids", [[0, -1, 1], [0], [0, 1], [0, -2, -1, 1, 2]])
def test_held_out_parts_share_no_frame_and_keep_a_gap(frame_ids):
    train, val, test = split_lines("seq", 100, frame_ids, 0.1, 0.1, "lr")
    read = {}
    for part, lines, ids in (("train", train, frame_ids), ("val", val, frame_ids), ("test", test, [0])):
        assert lines, part
        read[part] = {int(line.split()[1]) + f for line in lines for f in ids}
        assert min(read[part]) >= 0 and max(read[part]) < 100
    assert [int(line.split()[1]) for line in test] == list(range(90, 100))  # the last 10%, left camera
    assert {line.split()[2] for line in test} == {"l"} and {line.split()[2] for line in train + val} == {"l", "r"}
    assert max(read["train"]) + len(frame_ids) < min(read["val"])  # len(frame_ids) frames left out between
    assert max(read["val"]) + len(frame_ids) < min(read["test"])
    assert len(val) == 2 * (10 - max(frame_ids) + min(frame_ids))  # about 10% of the frames


def test_fractions_are_checked(tmp_path, capsys):
    for flag in ("--val_fraction", "--test_fraction"):
        with pytest.raises(SystemExit):
            prepare_frames([str(tmp_path), "--out", str(tmp_path / "x"), flag, "1"])
        assert "{} must be in [0, 1), got 1.0".format(flag) in capsys.readouterr().err


def test_a_short_sequence_has_no_line_whose_neighbours_are_missing():
    for count in range(1, 12):
        for part in split_lines("seq", count, [0, -1, 1], 0.1, 0.1, "lr")[:2]:
            frames = [int(line.split()[1]) for line in part]
            assert all(0 <= i - 1 and i + 1 < count for i in frames), (count, part)
