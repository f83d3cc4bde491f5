"""Calibration parsing, velodyne loading and the velodyne-to-depth projection."""
import os
from collections import OrderedDict

import numpy as np
import pytest

from kitti_utils import (generate_depth_map, load_velodyne_points, read_calib_file, sub2ind,
                         velo_to_image)

CALIB_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "kitti_sample", "2011_09_26")
needs_sample = pytest.mark.skipif(not os.path.isdir(CALIB_DIR),
                                  reason="../shared/kitti_sample is absent (real KITTI calibration)")

# A tiny camera: 20x10 pixels, focal length 10, principal point (10, 5).  The
# velodyne frame (x forward, y left, z up) maps onto camera axes (x right,
# y down, z forward) with an offset t.
WIDTH, HEIGHT, FOCAL, CX, CY = 20, 10, 10.0, 10.0, 5.0
VELO_TO_CAM = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)


def write_calib(folder, t=(0.0, 0.0, 0.0), drop=None):
    def fmt(values):
        return " ".join(f"{v:e}" for v in np.ravel(values))
    p_rect = [[FOCAL, 0, CX, 0], [0, FOCAL, CY, 0], [0, 0, 1, 0]]
    cam = OrderedDict([("calib_time", "09-Jan-2012 13:57:47"), ("S_rect_02", fmt([WIDTH, HEIGHT])),
                       ("R_rect_00", fmt(np.eye(3))), ("P_rect_02", fmt(p_rect)), ("P_rect_03", fmt(p_rect))])
    velo = OrderedDict([("calib_time", "15-Mar-2012 11:37:16"), ("R", fmt(VELO_TO_CAM)), ("T", fmt(t))])
    for name, entries in (("calib_cam_to_cam.txt", cam), ("calib_velo_to_cam.txt", velo)):
        with open(os.path.join(folder, name), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in entries.items() if k != drop)
    return str(folder)


def write_scan(path, points):
    """Velodyne scan of (x, y, z) points; reflectance is written as 0.5 and must be ignored."""
    pts = np.hstack([np.asarray(points, np.float32).reshape(-1, 3), np.full((len(points), 1), 0.5, np.float32)])
    pts.tofile(path)
    return str(path)


def reference_semantics(points, t=(0.0, 0.0, 0.0)):
    """Slow, literal restatement of the projection rules for the tiny camera."""
    depth = np.zeros((HEIGHT, WIDTH))
    groups = OrderedDict()
    for x, y, z in points:
        if x < 0:
            continue
        cam = VELO_TO_CAM @ np.array([x, y, z], dtype=np.float32).astype(float) + np.array(t)
        u, v = FOCAL * cam[0] / cam[2] + CX, FOCAL * cam[1] / cam[2] + CY
        col, row = np.round(u) - 1, np.round(v) - 1
        if not (0 <= col < WIDTH and 0 <= row < HEIGHT):
            continue
        depth[int(row), int(col)] = cam[2]
        groups.setdefault(row * (WIDTH - 1) + col - 1, []).append((int(row), int(col), cam[2]))
    for members in groups.values():
        if len(members) > 1:
            row, col, _ = members[0]
            depth[row, col] = min(m[2] for m in members)
    depth[depth < 0] = 0
    return depth


@needs_sample
def test_read_calib_file_on_real_kitti_files():
    cam = read_calib_file(os.path.join(CALIB_DIR, "calib_cam_to_cam.txt"))
    assert cam["calib_time"] == "09-Jan-2012 13:57:47"
    assert cam["S_rect_02"].tolist() == [1242.0, 375.0]
    assert cam["P_rect_02"].shape == (12,)
    assert cam["P_rect_02"][[0, 2, 3]].tolist() == [721.5377, 609.5593, 44.85728]
    assert cam["corner_dist"].tolist() == [0.0995]
    velo = read_calib_file(os.path.join(CALIB_DIR, "calib_velo_to_cam.txt"))
    assert velo["R"].shape == (9,) and velo["T"].tolist() == [-0.004069766, -0.07631618, -0.2717806]
    assert isinstance(velo["calib_time"], str)


@needs_sample
def test_real_projection_puts_a_forward_point_near_the_principal_point():
    velo2im, shape = velo_to_image(CALIB_DIR, 2)
    assert shape == (375, 1242) and velo2im.shape == (3, 4)
    u, v, w = velo2im @ np.array([20.0, 0, 0, 1])
    # a point 20 m straight ahead of the velodyne projects near the image centre
    assert 600 < u / w < 640 and 150 < v / w < 200 and 19 < w < 21


def test_read_calib_file_ignores_blank_lines_and_names_bad_lines(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("a: 1 2  3\n\nname: left camera\nempty:\n")
    data = read_calib_file(str(path))
    assert data["a"].tolist() == [1, 2, 3] and data["name"] == "left camera" and data["empty"] == ""
    path.write_text("a: 1\nthis line has no colon\n")
    with pytest.raises(ValueError, match=r"calib.txt, line 2"):
        read_calib_file(str(path))


@pytest.mark.parametrize("key,name", [("P_rect_02", "calib_cam_to_cam.txt"), ("S_rect_02", "calib_cam_to_cam.txt"),
                                      ("T", "calib_velo_to_cam.txt")])
def test_missing_calibration_key_names_file_and_key(tmp_path, key, name):
    write_calib(tmp_path, drop=key)
    with pytest.raises(ValueError, match=f"{name} has no '{key}' entry"):
        velo_to_image(str(tmp_path), 2)


def test_missing_calibration_or_scan_file_is_named(tmp_path):
    scan = write_scan(tmp_path / "scan.bin", [[10, 0, 0]])
    with pytest.raises(FileNotFoundError, match="calib_cam_to_cam.txt"):
        generate_depth_map(str(tmp_path), scan)
    write_calib(tmp_path)
    with pytest.raises(FileNotFoundError, match="velodyne file not found: .*nope.bin"):
        generate_depth_map(str(tmp_path), str(tmp_path / "nope.bin"))


def test_load_velodyne_points_is_homogeneous_and_checks_size(tmp_path):
    pts = load_velodyne_points(write_scan(tmp_path / "a.bin", [[1, 2, 3], [4, 5, 6]]))
    assert pts.dtype == np.float32 and pts.tolist() == [[1, 2, 3, 1], [4, 5, 6, 1]]
    np.arange(6, dtype=np.float32).tofile(tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="bad.bin holds 24 bytes, not a multiple of 16"):
        load_velodyne_points(str(tmp_path / "bad.bin"))
    with open(tmp_path / "a.bin", "rb") as f:  # one whole point and half a float (np.fromfile drops it)
        (tmp_path / "cut.bin").write_bytes(f.read()[:18])
    with pytest.raises(ValueError, match="cut.bin holds 18 bytes, not a multiple of 16"):
        load_velodyne_points(str(tmp_path / "cut.bin"))


def test_sub2ind_keeps_the_reference_row_stride_of_width_minus_one():
    assert sub2ind((10, 20), 3, 5) == 3 * 19 + 4
    # the last pixel of a row and the first of the next share an index
    assert sub2ind((10, 20), 2, 19) == sub2ind((10, 20), 3, 0)


def test_generate_depth_map_hand_computed(tmp_path):
    calib = write_calib(tmp_path)
    points = [[10, 0, 0],       # camera (0, 0, 10): u=10, v=5 -> pixel (row 4, col 9)
              [5, -1, 0.5],     # camera (1, -0.5, 5): u=12, v=4 -> (3, 11)
              [8, 0.8, -0.8],   # camera (-0.8, 0.8, 8): u=9, v=6 -> (5, 8), depth 8 ...
              [6, 0.6, -0.6],   # ... and depth 6 on the same pixel: the nearer one wins
              [-5, 0, 0],       # behind the sensor
              [1, 5, 0]]        # camera (-5, 0, 1): u=-40, outside the image
    depth = generate_depth_map(calib, write_scan(tmp_path / "s.bin", points), cam=2)
    expected = np.zeros((HEIGHT, WIDTH))
    expected[4, 9], expected[3, 11], expected[5, 8] = 10, 5, 6
    assert depth.dtype == np.float64
    np.testing.assert_allclose(depth, expected, rtol=1e-6)


def test_generate_depth_map_duplicate_order_and_row_wrap_quirk(tmp_path):
    calib = write_calib(tmp_path)
    end_of_row = [9, -9, 1.8]      # camera (9, -1.8, 9): u=20, v=3 -> (row 2, col 19), depth 9
    start_of_next = [4, 3.6, 0.4]  # camera (-3.6, -0.4, 4): u=1, v=4 -> (row 3, col 0), depth 4
    # One sub2ind group: the pixel of the group's first point gets the minimum,
    # the other pixel keeps its own depth.
    depth = generate_depth_map(calib, write_scan(tmp_path / "a.bin", [end_of_row, start_of_next]))
    assert depth[2, 19] == pytest.approx(4) and depth[3, 0] == pytest.approx(4)
    depth = generate_depth_map(calib, write_scan(tmp_path / "b.bin", [start_of_next, end_of_row]))
    assert depth[3, 0] == pytest.approx(4) and depth[2, 19] == pytest.approx(9)
    assert np.count_nonzero(depth) == 2


def test_generate_depth_map_negative_depth_and_vel_depth(tmp_path):
    calib = write_calib(tmp_path, t=(0.0, 0.0, -20.0))
    # camera z = x - 20: both points land on the principal pixel, with depths -10 and 10
    scan = write_scan(tmp_path / "s.bin", [[10, 0, 0], [30, 0, 0]])
    depth = generate_depth_map(calib, scan)
    assert depth[4, 9] == 0 and np.count_nonzero(depth) == 0   # the minimum, -10, is zeroed
    depth = generate_depth_map(calib, scan, vel_depth=True)
    assert depth[4, 9] == pytest.approx(10)                    # forward distances 10 and 30


def test_generate_depth_map_matches_literal_rules_on_random_scans(tmp_path):
    rng = np.random.default_rng(0)
    t = (0.1, -0.2, 0.3)
    calib = write_calib(tmp_path, t=t)
    for trial in range(3):
        points = np.column_stack([rng.uniform(-2, 30, 400), rng.uniform(-20, 20, 400), rng.uniform(-8, 8, 400)])
        points[:100] = points[100:200] * rng.uniform(0.9, 1.1, (100, 1))    # many shared pixels
        scan = write_scan(tmp_path / f"{trial}.bin", points)
        expected = reference_semantics(np.asarray(points, np.float32), t)
        np.testing.assert_allclose(generate_depth_map(calib, scan), expected, rtol=1e-9, atol=1e-12)


def test_a_scan_with_non_finite_values_is_refused(tmp_path):
    points = np.ones((5, 4), np.float32)
    points[3, 1] = np.inf
    points[4, 3] = np.nan  # the reflectance too: the file is damaged
    points.tofile(tmp_path / "scan.bin")
    with pytest.raises(ValueError, match=r"scan.bin: 2 of its 5 points hold NaN or infinite values \(first: point 3\)"):
        load_velodyne_points(str(tmp_path / "scan.bin"))
