"""export_gt_depth.py: ground truth of a tiny synthetic drive, the portable file format,
reading the reference's files, and errors for bad input."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

import export_gt_depth
from export_gt_depth import GroundTruth, export_gt_depths, save_gt_depths
from kitti_utils import generate_depth_map

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from make_synthetic_kitti import TEST_DRIVE, generate_drive  # noqa: E402


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """A 3-frame 192x64 synthetic drive and a splits folder listing it (left then right camera)."""
    root = tmp_path_factory.mktemp("data")
    folder = generate_drive(str(root), TEST_DRIVE, num_frames=3, width=192, height=64, workers=1)["folder"]
    lines = ["{} {:010d} l".format(folder, i) for i in range(3)] + ["{} 1 r".format(folder)]
    splits = root / "splits"
    for split in ("synthetic", "eigen", "eigen_benchmark"):
        (splits / split).mkdir(parents=True)
        (splits / split / "test_files.txt").write_text("\n".join(lines) + "\n")
    return {"root": str(root), "folder": folder, "lines": lines, "splits": str(splits)}


def test_velodyne_splits_project_each_lines_scan_into_its_camera(drive):
    for split in ("synthetic", "eigen"):
        path = export_gt_depths(drive["root"], split, drive["splits"])
        assert path == os.path.join(drive["splits"], split, "gt_depths.npz")
        gt = GroundTruth(path)
        assert gt.split == split and gt.lines == drive["lines"] and len(gt) == 4
        calib = os.path.join(drive["root"], drive["folder"].split("/")[0])
        for i, (frame, cam) in enumerate([(0, 2), (1, 2), (2, 2), (1, 3)]):
            velo = os.path.join(drive["root"], drive["folder"], "velodyne_points", "data", "{:010d}.bin".format(frame))
            expected = generate_depth_map(calib, velo, cam, True)
            assert gt[i].dtype == np.float32 and gt[i].shape == (64, 192)
            np.testing.assert_array_equal(gt[i], expected.astype(np.float32))
            assert (gt[i] > 0).sum() > 100
        # the right camera's map is not the left one's
        assert not np.array_equal(gt[1], gt[3])


def test_eigen_benchmark_reads_the_16_bit_pngs(drive):
    gt = GroundTruth(export_gt_depths(drive["root"], "eigen_benchmark", drive["splits"]))
    png = os.path.join(drive["root"], drive["folder"], "proj_depth", "groundtruth", "image_03", "0000000001.png")
    raw = np.array(Image.open(png))
    assert raw.max() > 256  # real 16-bit content
    np.testing.assert_array_equal(gt[3], raw.astype(np.float32) / 256)


def test_file_loads_with_plain_numpy_and_no_pickle(drive):
    path = export_gt_depths(drive["root"], "synthetic", drive["splits"])
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["depth_00000", "depth_00001", "depth_00002", "depth_00003", "lines", "split"]
        assert str(npz["split"]) == "synthetic"
        assert npz["depth_00002"].shape == (64, 192)


def test_maps_of_several_sizes_round_trip(tmp_path):
    maps = [np.full((2, 3), 1.5, np.float32), np.arange(20, dtype=np.float32).reshape(4, 5)]
    save_gt_depths(str(tmp_path / "gt.npz"), "eigen", ["a 1 l", "b 2 l"], iter(maps))
    gt = GroundTruth(str(tmp_path / "gt.npz"))
    assert len(gt) == 2 and gt.lines == ["a 1 l", "b 2 l"] and gt.split == "eigen"
    for i in range(2):
        np.testing.assert_array_equal(gt[i], maps[i])
    assert not [f for f in os.listdir(tmp_path) if f != "gt.npz"]  # no temporary left behind


def test_reads_the_references_plain_array_file(tmp_path):
    data = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    np.savez_compressed(tmp_path / "gt.npz", data=data)
    gt = GroundTruth(str(tmp_path / "gt.npz"))
    assert len(gt) == 3 and gt.split is None and gt.lines is None
    np.testing.assert_array_equal(gt[2], data[2])


def test_refuses_the_references_pickled_object_array(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((2, 3)), np.zeros((4, 5))
    np.savez_compressed(tmp_path / "gt.npz", data=ragged)
    with pytest.raises(ValueError, match="pickled object array.*export_gt_depth.py"):
        GroundTruth(str(tmp_path / "gt.npz"))


def test_bad_ground_truth_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_gt_depth.py"):
        GroundTruth(str(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz is damaged or truncated .*: re-create it with export_gt_depth.py"):
        GroundTruth(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a ground-truth file"):
        GroundTruth(str(tmp_path / "other.npz"))


def test_missing_scan_names_line_and_file(drive, tmp_path):
    split = tmp_path / "eigen"
    split.mkdir()
    (split / "test_files.txt").write_text("{} 0 l\n{} 7 l\n".format(drive["folder"], drive["folder"]))
    with pytest.raises(FileNotFoundError, match=r"line 2 .* missing .*0000000007\.bin"):
        export_gt_depths(drive["root"], "eigen", str(tmp_path))
    assert not (split / "gt_depths.npz").exists()


def test_bad_split_input(drive, tmp_path):
    with pytest.raises(FileNotFoundError, match="test_files.txt"):
        export_gt_depths(drive["root"], "eigen", str(tmp_path))
    (tmp_path / "eigen").mkdir()
    (tmp_path / "eigen" / "test_files.txt").write_text("{} zero l\n".format(drive["folder"]))
    with pytest.raises(ValueError, match="line 1: expected 'folder frame side'"):
        export_gt_depths(drive["root"], "eigen", str(tmp_path))
    with pytest.raises(ValueError, match="--split odom"):
        export_gt_depths(drive["root"], "odom", str(tmp_path))


def test_command_line(drive, monkeypatch, capsys):
    monkeypatch.setattr(export_gt_depth, "SPLITS_DIR", drive["splits"])
    export_gt_depth.main(["--data_path", drive["root"], "--split", "synthetic"])
    assert "Saved 4 depth maps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        export_gt_depth.main(["--data_path", os.path.join(drive["root"], "nowhere"), "--split", "eigen"])
    assert exit_info.value.code == 1
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        export_gt_depth.main(["--data_path", drive["root"], "--split", "benchmark"])
    assert exit_info.value.code == 2  # argparse: no ground truth for the benchmark split


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_file_is_named_with_the_fix(drive, tmp_path, damage):
    path = export_gt_depths(drive["root"], "synthetic", drive["splits"])
    data = bytearray(open(path, "rb").read())
    if damage == "truncate":
        data = data[:len(data) * 2 // 3]
    else:
        data[len(data) // 2] ^= 0x10  # one bit inside a compressed depth map
    broken = tmp_path / "synthetic" / "gt_depths.npz"
    broken.parent.mkdir()
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"{} is damaged or truncated \(.*\): re-create it with "
                                         r"export_gt_depth.py --split synthetic".format(broken)):
        gt = GroundTruth(str(broken))
        [gt[i] for i in range(len(gt))]


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_scan_stops_the_export_naming_it_and_keeps_the_previous_file(drive, monkeypatch, capsys, damage):
    monkeypatch.setattr(export_gt_depth, "SPLITS_DIR", drive["splits"])
    previous = export_gt_depths(drive["root"], "synthetic", drive["splits"])
    before = open(previous, "rb").read()
    scan = os.path.join(drive["root"], drive["folder"], "velodyne_points", "data", "0000000001.bin")
    whole = open(scan, "rb").read()
    if damage == "truncated":  # whole points and half a float, which np.fromfile drops
        data, message = whole[:-14], "{} holds {} bytes, not a multiple of 16".format(scan, len(whole) - 14)
    else:  # random floats include NaN and inf, which projected would make a nonsense map
        data, message = np.random.RandomState(0).bytes(len(whole)), "velodyne file {}: ".format(scan)
        assert not np.isfinite(np.frombuffer(data, np.float32)).all()
    try:
        with open(scan, "wb") as f:
            f.write(data)
        with pytest.raises(SystemExit) as exit_info:
            export_gt_depth.main(["--data_path", drive["root"], "--split", "synthetic"])
    finally:
        with open(scan, "wb") as f:
            f.write(whole)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and (damage == "truncated" or "hold NaN or infinite values" in err)
    assert open(previous, "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(previous))) == ["gt_depths.npz", "test_files.txt"]
