"""datasets/folder_dataset.py: intrinsics from files or --intrinsics, the stereo pair of a
right/ folder with its baseline, and stereo training and evaluation on a folder dataset."""
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


def write_sequence(root, frames=3, size=(48, 32), right=True, intrinsics="24 24 20 16 0.3"):
    rng = np.random.default_rng(0)
    for folder in ["seq"] + (["seq/right"] if right else []):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for i in range(frames):
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(image).save(os.path.join(root, folder, "{:010d}.png".format(i)))
    if intrinsics is not None:
        with open(os.path.join(root, "intrinsics.txt"), "w") as f:
            f.write(intrinsics + "\n")


def dataset(root, lines, frame_ids, **kwargs):
    return FolderDataset(str(root), lines, 32, 64, frame_ids, 2, img_ext=".png", **kwargs)


def test_stereo_pair_from_right_folder_and_baseline(tmp_path):
    write_sequence(tmp_path)
    left, right = dataset(tmp_path, ["seq 1", "seq 1 r"], [0, -1, "s"])
    assert left["stereo_T"][0, 3] == np.float32(-0.3) and right["stereo_T"][0, 3] == np.float32(0.3)
    expected = np.asarray(Image.open(tmp_path / "seq" / "right" / "0000000001.png").resize((64, 32), Image.LANCZOS))
    np.testing.assert_array_equal(np.round(left[("color", "s", 0)] * 255).transpose(1, 2, 0), expected)
    np.testing.assert_array_equal(right[("color", "s", 0)], left[("color", 0, 0)])
    # the right frames share the intrinsics, normalised by 48x32 and scaled to 64x32 and 32x16
    np.testing.assert_allclose(right[("K", 1)][:2, :3], [[16, 0, 40 / 3], [0, 12, 8]], rtol=1e-6)
    with pytest.raises(ValueError, match="split line 1 'seq 1 x': expected 'sequence frame' or 'sequence frame l|r'"):
        dataset(tmp_path, ["seq 1 x"], [0])


def test_stereo_errors_name_the_file(tmp_path):
    write_sequence(tmp_path, intrinsics="24 24 20 16")
    assert dataset(tmp_path, ["seq 1"], [0, -1, 1])[0][("K", 0)][0, 0] == pytest.approx(32)  # mono needs no baseline
    with pytest.raises(ValueError, match="baseline of sequence seq: add it in metres as a fifth number to .*intrinsics.txt"):
        dataset(tmp_path, ["seq 1"], [0, "s"])
    shutil.rmtree(tmp_path / "seq" / "right")
    with pytest.raises(FileNotFoundError, match="frame s is missing: .*seq/right/0000000001.png"):
        dataset(tmp_path, ["seq 1"], [0, "s"], intrinsics=[24, 24, 20, 16, 0.5])
    for text in ("24 24 20", "24 24 20 16 -1", "24 0 20 16", "24 24 20 16 0.5 1", "nan 24 20 16", "24 24 inf 16",
                 "24 24 20 16 inf"):
        with open(tmp_path / "intrinsics.txt", "w") as f:
            f.write(text)
        with pytest.raises(ValueError, match="intrinsics.txt: expected 'fx fy cx cy' in pixels"):
            dataset(tmp_path, ["seq 1"], [0, 1])
    with open(tmp_path / "intrinsics.txt", "w") as f:
        f.write("fx 24 20 16")
    with pytest.raises(ValueError, match="intrinsics.txt: expected numbers 'fx fy cx cy \\[baseline\\]', got 'fx 24 20 16'"):
        dataset(tmp_path, ["seq 1"], [0, 1])


def test_intrinsics_given_replace_the_files(tmp_path):
    write_sequence(tmp_path, right=False, intrinsics="1 1 1 1")
    sample = dataset(tmp_path, ["seq 1"], [0, 1], intrinsics=[48, 16, 12, 8])
    np.testing.assert_allclose(sample[0][("K", 0)][:2, :3], [[64, 0, 16], [0, 16, 8]], rtol=1e-6)
    os.remove(tmp_path / "intrinsics.txt")
    with pytest.raises(ValueError, match="--intrinsics: expected 'fx fy cx cy' in pixels .* got 48 16 12$"):
        dataset(tmp_path, ["seq 1"], [0, 1], intrinsics=[48, 16, 12])


def test_frames_of_different_sizes_in_a_sequence_are_refused(tmp_path):
    write_sequence(tmp_path, intrinsics="24 24 20 16 0.3")
    assert dataset(tmp_path, ["seq 1"], [0, -1, 1, "s"])[0][("K", 0)][0, 0] == pytest.approx(32)
    for odd in ("0000000002.png", "right/0000000001.png"):  # a neighbour, the other camera
        path = tmp_path / "seq" / odd
        Image.new("RGB", (64, 32)).save(path)
        with pytest.raises(ValueError, match="sequence seq has frames of different sizes: .*seq/0000000001.png is "
                                             "48x32, .*seq/{} is 64x32".format(odd)):
            dataset(tmp_path, ["seq 1"], [0, -1, 1, "s"])
        write_sequence(tmp_path, intrinsics="24 24 20 16 0.3")


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "folder", "--intrinsics", "1", "2", "3"], "--intrinsics: expected 'fx fy cx cy'"),
    (["--intrinsics", "1", "2", "3", "4"], "--intrinsics is for --dataset folder"),
    (["--dataset", "folder", "--intrinsics", "inf", "2", "3", "4"], "--intrinsics: expected 'fx fy cx cy'"),
    (["--dataset", "folder", "--intrinsics", "1", "2", "nan", "4"], "--intrinsics: expected 'fx fy cx cy'"),
])
def test_intrinsics_flag_errors(flags, message, capsys):
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(flags)
    assert message in capsys.readouterr().err


def test_stereo_training_and_evaluation_on_a_folder_dataset(tmp_path, capsys):
    """A synthetic drive's two cameras as a folder dataset (baseline 0.54 m given with
    --intrinsics): stereo training runs, and --eval_stereo scales its metric depth by 1."""
    width, height, frames = 192, 64, 6
    drive = os.path.join(tmp_path, generate_drive(str(tmp_path), num_frames=frames, width=width, height=height,
                                                  workers=1)["folder"])
    root = tmp_path / "footage"
    for camera, folder in (("2", root / "drive"), ("3", root / "drive" / "right")):
        shutil.copytree(os.path.join(drive, "image_0" + camera, "data"), folder, dirs_exist_ok=True)
        shutil.copytree(os.path.join(drive, "proj_depth", "groundtruth", "image_0" + camera), folder / "depth")
    lines = ["drive {} {}".format(i, side) for i in range(frames) for side in "lr"]
    for part, part_lines in (("train", lines[:8]), ("val", lines[8:]), ("test", lines)):
        with open(root / (part + "_files.txt"), "w") as f:
            f.write("\n".join(part_lines) + "\n")
    intrinsics = ["--intrinsics", str(0.58 * width), str(1.92 * height), str(width / 2), str(height / 2), "0.54"]
    Trainer(MonodepthOptions().parse([
        "--dataset", "folder", "--data_path", str(root), "--split", str(root), "--log_dir", str(tmp_path / "logs"),
        "--model_name", "stereo", "--height", str(height), "--width", str(width), "--weights_init", "scratch",
        "--frame_ids", "0", "--use_stereo", "--min_depth", "1", "--batch_size", "4", "--num_epochs", "1",
        "--num_workers", "0", "--seed", "1"] + intrinsics)).train()
    export_gt_depths(str(root), str(root), dataset="folder")
    capsys.readouterr()
    result = evaluate(MonodepthOptions().parse([
        "--dataset", "folder", "--data_path", str(root), "--eval_split", str(root), "--eval_stereo",
        "--num_workers", "0", "--load_weights_folder", str(tmp_path / "logs" / "stereo" / "models" / "weights_0")]
        + intrinsics))
    assert "Stereo evaluation - disabling median scaling, scaling by 1.0" in capsys.readouterr().out
    assert result["num_images"] == 2 * frames and result["mode"] == "stereo"
    assert 0 < result["metrics"]["abs_rel"] < 10
