"""tools/make_synthetic_kitti.py: KITTI raw layout, calibration, splits, determinism and geometric consistency
between the rendered images/depth, the velodyne scans and the oxts poses, on tiny drives."""
import importlib.util
import math
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from kitti_utils import generate_depth_map, read_calib_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "..", "shared", "kitti_sample", "2011_09_26")
WIDTH, HEIGHT, FRAMES, TEST_FRAMES, SEED = 160, 48, 6, 2, 3


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_synthetic_kitti",
                                                  os.path.join(ROOT, "tools", "make_synthetic_kitti.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # worker processes find the module's functions by name
    spec.loader.exec_module(module)
    return module


synth = _load_tool()
DATE = synth.DATE
TRAIN = synth.drive_folder(synth.TRAIN_DRIVE)
TEST = synth.drive_folder(synth.TEST_DRIVE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    summary = synth.generate_dataset(out, FRAMES, WIDTH, HEIGHT, SEED, ".jpg", TEST_FRAMES, workers=1)
    return out, summary


def _files(root):
    found = {}
    for base, _, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def _calib(out):
    date_dir = os.path.join(out, DATE)
    return (read_calib_file(os.path.join(date_dir, "calib_cam_to_cam.txt")),
            read_calib_file(os.path.join(date_dir, "calib_velo_to_cam.txt")),
            read_calib_file(os.path.join(date_dir, "calib_imu_to_velo.txt")))


def _rigid(rot, trans):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = np.reshape(rot, (3, 3)), trans
    return out


def _rendered_depth(out, folder, cam, frame):
    path = os.path.join(out, folder, "proj_depth", "groundtruth", "image_0{}".format(cam), "{:010d}.png".format(frame))
    return np.array(Image.open(path)).astype(np.float64) / 256.0


def test_raw_layout(data):
    out, summary = data
    assert summary["drives"] == [TRAIN, TEST]
    for folder, frames in ((TRAIN, FRAMES), (TEST, TEST_FRAMES)):
        drive = os.path.join(out, folder)
        for frame in range(frames):
            name = "{:010d}".format(frame)
            for sub in ("image_02/data/{}.jpg", "image_03/data/{}.jpg", "velodyne_points/data/{}.bin",
                        "oxts/data/{}.txt", "proj_depth/groundtruth/image_02/{}.png",
                        "proj_depth/groundtruth/image_03/{}.png"):
                assert os.path.isfile(os.path.join(drive, sub.format(name))), sub.format(name)
        for stamps in ("image_02/timestamps.txt", "image_03/timestamps.txt", "oxts/timestamps.txt",
                       "velodyne_points/timestamps.txt", "velodyne_points/timestamps_start.txt",
                       "velodyne_points/timestamps_end.txt"):
            with open(os.path.join(drive, stamps)) as f:
                lines = f.read().splitlines()
            assert len(lines) == frames
            assert all(re.fullmatch(r"2000-01-01 \d\d:\d\d:\d\d\.\d{9}", line) for line in lines), lines
        with open(os.path.join(drive, "image_02", "timestamps.txt")) as f:
            assert f.read().splitlines()[1] == "2000-01-01 12:00:00.100000000"


def test_calibration_matches_kitti_conventions(data):
    out, _ = data
    cam, velo, imu = _calib(out)
    fx, fy, cx, cy = 0.58 * WIDTH, 1.92 * HEIGHT, 0.5 * WIDTH, 0.5 * HEIGHT
    with open(os.path.join(out, DATE, "calib_cam_to_cam.txt")) as f:
        assert f.readline() == "calib_time: 01-Jan-2000 12:00:00\n"
    keys = ["calib_time", "corner_dist"] + ["{}_0{}".format(k, c) for c in range(4) for k in
                                             ("S", "K", "D", "R", "T", "S_rect", "R_rect", "P_rect")]
    assert list(cam) == keys
    assert list(velo) == ["calib_time", "R", "T", "delta_f", "delta_c"]
    assert list(imu) == ["calib_time", "R", "T"]
    np.testing.assert_array_equal(cam["S_rect_02"], [WIDTH, HEIGHT])
    p2, p3 = cam["P_rect_02"].reshape(3, 4), cam["P_rect_03"].reshape(3, 4)
    np.testing.assert_allclose(p2[:, :3], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose((p2[0, 3] - p3[0, 3]) / fx, 0.54, rtol=1e-5)  # stereo baseline
    np.testing.assert_allclose(p2[0, 3] / fx, 0.06, rtol=1e-5)                # cam 2 is left of cam 0
    np.testing.assert_allclose(cam["R_rect_00"], np.eye(3).ravel())
    # T is the velodyne's origin in camera-0 coordinates: 7.6 cm above camera 0 (1.73 m vs 1.65 m above the road)
    # and 0.27 m behind it; R maps its axes (x forward, y left, z up) to the camera's (x right, y down, z forward)
    np.testing.assert_allclose(velo["T"], [-0.004, -0.076, -0.272], atol=1e-9)
    np.testing.assert_allclose(velo["R"].reshape(3, 3) @ np.eye(3), [[0, -1, 0], [0, 0, -1], [1, 0, 0]])


@pytest.mark.skipif(not os.path.isdir(SAMPLE), reason="../shared/kitti_sample is absent (real KITTI calibration)")
def test_calibration_files_have_the_real_files_keys(data):
    out, _ = data
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        ours, real = read_calib_file(os.path.join(out, DATE, name)), read_calib_file(os.path.join(SAMPLE, name))
        assert list(ours) == list(real), name
        assert all(np.shape(ours[k]) == np.shape(real[k]) for k in real if k != "calib_time"), name


def test_images_are_textured_stereo_pairs(data):
    out, _ = data
    for folder, frame in ((TRAIN, 0), (TRAIN, FRAMES - 1), (TEST, 0)):
        left = Image.open(os.path.join(out, folder, "image_02", "data", "{:010d}.jpg".format(frame)))
        right = Image.open(os.path.join(out, folder, "image_03", "data", "{:010d}.jpg".format(frame)))
        assert left.size == right.size == (WIDTH, HEIGHT) and left.mode == "RGB"
        grey = np.asarray(left.convert("L"), np.float64)
        assert grey.std() > 20
        assert np.abs(np.diff(grey, axis=1)).mean() > 4  # texture, not flat shading
        assert np.abs(grey - np.asarray(right.convert("L"), np.float64)).mean() > 3


def test_splits_refer_to_existing_frames_with_neighbours(data):
    out, _ = data
    sides = {"l": "image_02", "r": "image_03"}
    seen = {}
    for split in ("train", "val", "test"):
        with open(os.path.join(out, "splits", split + "_files.txt")) as f:
            lines = f.read().splitlines()
        assert lines, split
        for line in lines:
            folder, frame, side = line.split(" ")
            frame = int(frame)
            offsets = (0,) if split == "test" else (-1, 0, 1)
            for k in offsets:
                path = os.path.join(out, folder, sides[side], "data", "{:010d}.jpg".format(frame + k))
                assert os.path.isfile(path), (split, line, k)
            seen.setdefault(split, set()).add((folder, frame))
        if split == "test":
            assert all(re.fullmatch(r"\S+ \d{10} l", line) for line in lines)
            assert {folder for folder, _ in seen[split]} == {TEST}
            assert all(os.path.isfile(os.path.join(out, folder, "velodyne_points", "data", "{:010d}.bin".format(i)))
                       for folder, i in seen[split])
    assert not seen["train"] & seen["val"]
    assert len(seen["train"]) + len(seen["val"]) == FRAMES - 2


def test_velodyne_projection_agrees_with_rendered_depth(data):
    """Projecting the scans with P_rect_0X @ R_rect_00 @ velo_to_cam lands every point on its own rendered depth."""
    out, _ = data
    cam_calib, velo_calib, _ = _calib(out)
    velo_to_cam = _rigid(velo_calib["R"], velo_calib["T"])
    for cam in (2, 3):
        proj = cam_calib["P_rect_0{}".format(cam)].reshape(3, 4) @ _rigid(cam_calib["R_rect_00"], 0) @ velo_to_cam
        errors = []
        for frame in range(FRAMES):
            scan = np.fromfile(os.path.join(out, TRAIN, "velodyne_points", "data", "{:010d}.bin".format(frame)),
                               np.float32).reshape(-1, 4).astype(np.float64)
            pts = scan[scan[:, 0] > 0.5]
            im = (proj @ np.hstack([pts[:, :3], np.ones((len(pts), 1))]).T).T
            u, v, z = im[:, 0] / im[:, 2], im[:, 1] / im[:, 2], im[:, 2]
            inside = (u >= 0) & (v >= 0) & (u <= WIDTH - 1.001) & (v <= HEIGHT - 1.001)
            u, v, z = u[inside], v[inside], z[inside]
            # inverse depth is affine in (u, v) across a plane, so bilinear interpolation of it is exact there
            inv = 1.0 / np.maximum(_rendered_depth(out, TRAIN, cam, frame), 1e-9)
            c0, r0 = np.floor(u).astype(int), np.floor(v).astype(int)
            fu, fv = u - c0, v - r0
            corners = np.stack([inv[r0, c0], inv[r0, c0 + 1], inv[r0 + 1, c0], inv[r0 + 1, c0 + 1]])
            valid = (corners < 1e8).all(0)
            interp = ((1 - fv) * ((1 - fu) * corners[0] + fu * corners[1]) +
                      fv * ((1 - fu) * corners[2] + fu * corners[3]))
            errors.append(np.abs(z[valid] * interp[valid] - 1))
        errors = np.concatenate(errors)
        assert len(errors) > 500
        # exact up to the depth PNG's 1/256 m steps except near depth edges; half a pixel or 5% of baseline off
        # already gives a median of 2e-4 or more and a 75th percentile above 1e-3
        assert np.median(errors) < 2e-4 and np.percentile(errors, 75) < 1e-3, (cam, np.median(errors))


def test_generate_depth_map_reads_the_drive_like_kitti(data):
    """The project's generate_depth_map (KITTI's rounding and -1 pixel offset) agrees with the rendered depth
    shifted by that one pixel."""
    out, _ = data
    for cam in (2, 3):
        velo = os.path.join(out, TEST, "velodyne_points", "data", "0000000000.bin")
        gt = generate_depth_map(os.path.join(out, DATE), velo, cam)
        assert gt.shape == (HEIGHT, WIDTH)
        rendered = _rendered_depth(out, TEST, cam, 0)[1:, 1:]
        both = (gt[:-1, :-1] > 0) & (rendered > 0)
        assert both.sum() > 100
        rel = np.abs(gt[:-1, :-1][both] / rendered[both] - 1)
        assert np.median(rel) < 0.01, np.median(rel)


def test_depth_and_scan_ranges(data):
    out, _ = data
    depth = np.stack([_rendered_depth(out, TRAIN, 2, frame) for frame in range(FRAMES)])
    valid = depth[depth > 0]
    assert valid.min() < 8 and np.percentile(valid, 95) > 30 and valid.max() > 80  # near cars to far facades
    assert (depth == 0).mean() > 0.02  # sky
    scan = np.fromfile(os.path.join(out, TRAIN, "velodyne_points", "data", "0000000000.bin"), np.float32)
    scan = scan.reshape(-1, 4)
    dist = np.linalg.norm(scan[:, :3], axis=1)
    assert len(scan) > 30000 and dist.max() <= synth.LIDAR_RANGE + 1e-3 and dist.min() > 1.5
    assert 0 <= scan[:, 3].min() and scan[:, 3].max() <= 1 and scan[:, 3].std() > 0.05
    assert (scan[:, 0] < -5).any()  # a full turn, not only the camera's view
    ground = scan[np.hypot(scan[:, 0], scan[:, 1]) < 12]
    assert np.median(ground[:, 2]) == pytest.approx(-1.73, abs=0.1)  # road seen 1.73 m below the sensor


def _oxts_pose(values, scale):
    """IMU -> local metric frame from one oxts record (Mercator position, as the KITTI devkit computes it)."""
    lat, lon, alt, roll, pitch, yaw = values[:6]
    er = 6378137.0
    trans = [scale * lon * math.pi * er / 180, scale * er * math.log(math.tan((90 + lat) * math.pi / 360)), alt]
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return _rigid(rz @ ry @ rx, trans)


def test_oxts_poses_reproduce_the_camera_motion(data):
    out, summary = data
    _, velo_calib, imu_calib = _calib(out)
    cam_from_imu = _rigid(velo_calib["R"], velo_calib["T"]) @ _rigid(imu_calib["R"], imu_calib["T"])
    records = []
    for frame in range(FRAMES):
        with open(os.path.join(out, TRAIN, "oxts", "data", "{:010d}.txt".format(frame))) as f:
            fields = f.read().split()
        assert len(fields) == 30 and all(re.fullmatch(r"-?\d+", v) for v in fields[-5:])
        records.append([float(v) for v in fields])
    scale = math.cos(records[0][0] * math.pi / 180)
    cams = [_oxts_pose(r, scale) @ np.linalg.inv(cam_from_imu) for r in records]
    poses = summary["poses"][0]
    for frame in range(1, FRAMES):
        from_oxts = np.linalg.inv(cams[0]) @ cams[frame]
        truth = np.linalg.inv(poses[0]) @ poses[frame]
        np.testing.assert_allclose(from_oxts[:3, 3], truth[:3, 3], atol=1e-4)
        np.testing.assert_allclose(from_oxts[:3, :3], truth[:3, :3], atol=1e-6)
        assert 5 < records[frame][8] < 15  # forward speed (m/s) at 10 Hz


def test_rig_path_gives_pose_nets_something_to_learn():
    poses = synth.make_path(np.random.default_rng(7), 300)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert 0.5 <= steps.min() and steps.max() <= 1.55 and steps.std() > 0.05
    forward = poses[:, :3, 2]
    yaw, pitch = np.arctan2(forward[:, 0], forward[:, 2]), np.arcsin(forward[:, 1])
    assert 0.001 < yaw.std() < 0.05 and 0.001 < pitch.std() < 0.02


def test_cli_is_deterministic_and_writes_extra_splits(data, tmp_path, capsys):
    out, _ = data
    again, splits = str(tmp_path / "again"), str(tmp_path / "splits_copy")
    synth.main(["--out", again, "--frames", str(FRAMES), "--test_frames", str(TEST_FRAMES), "--width", str(WIDTH),
                "--height", str(HEIGHT), "--seed", str(SEED), "--workers", "2", "--splits_dir", splits])
    printed = capsys.readouterr().out
    assert "frames/s" in printed and os.path.join(again, TRAIN) in printed
    first, second = _files(out), _files(again)
    assert sorted(first) == sorted(second)
    assert all(first[k] == second[k] for k in first), [k for k in first if first[k] != second[k]]
    assert _files(splits) == {k[len("splits/"):]: v for k, v in first.items() if k.startswith("splits/")}


def test_seed_changes_the_street(tmp_path):
    paths = []
    for seed in (1, 2):
        summary = synth.generate_drive(str(tmp_path / str(seed)), num_frames=1, width=64, height=32, seed=seed,
                                       workers=1)
        paths.append(os.path.join(str(tmp_path / str(seed)), summary["folder"], "image_02", "data", "0000000000.jpg"))
    assert np.abs(np.asarray(Image.open(paths[0]), float) - np.asarray(Image.open(paths[1]), float)).mean() > 5


def test_png_output(tmp_path):
    summary = synth.generate_drive(str(tmp_path), num_frames=1, width=64, height=32, ext=".png", workers=1)
    image = Image.open(os.path.join(str(tmp_path), summary["folder"], "image_03", "data", "0000000000.png"))
    assert image.format == "PNG" and image.size == (64, 32)


@pytest.mark.parametrize("flags, message", [
    (["--frames", "3"], "--frames must be an integer >= 4"),
    (["--width", "8"], "--width must be an integer in 32..4096"),
    (["--height", "0"], "--height must be an integer in 16..4096"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--test_frames", "0"], "--test_frames must be an integer >= 1"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
])
def test_bad_arguments_are_reported(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        synth.main(["--out", str(tmp_path / "x")] + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_existing_drive_is_not_overwritten(data, capsys):
    out, _ = data
    with pytest.raises(SystemExit):
        synth.main(["--out", out, "--frames", "4", "--width", "64", "--height", "32"])
    assert "already exists" in capsys.readouterr().err


def test_mixed_image_sizes_in_one_date_folder_are_refused(data):
    out, _ = data
    with pytest.raises(ValueError, match="different calibration"):
        synth.generate_drive(out, drive=9, num_frames=1, width=64, height=32, workers=1)
