"""tools/road_heights.py: the road's heights in point clouds of a drive whose exact depth is known."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from datasets.kitti_dataset import KITTIDataset
from metric_depth import backproject, camera_matrix
from scene_files import write_ply

sys.path.insert(0, os.path.join(ROOT, "tools"))
import road_heights  # noqa: E402
from demo import CLOUD_INTRINSICS  # noqa: E402

IMAGE = (621, 188)  # the synthetic drive's image size (W, H)
NET = (192, 64)
METRIC = "monodepth2-paddle point cloud in metres; camera frame x right, y down, z forward"  # as demo.py writes
# image pixels of a box above the road 6 m ahead; network pixel centres fall within a pixel of its
# top (139.03), bottom (171.34), left (250.16) and right (331.02) edges, so sampling off by a
# fraction of a pixel, or a road mask missing any one of a pixel's four corners, shows
BOX = (slice(140, 172), slice(251, 332))


def level_road(width, height, K, camera_height=1.65):
    """Depth of a level road `camera_height` below a level camera (0 above the horizon)."""
    rows = (np.arange(height)[:, None] - K[1, 2]) / K[1, 1] * np.ones((1, width))
    return np.where(rows > camera_height / 200, camera_height / np.maximum(rows, 1e-9), 0.0)


def write_exact_depth(drive, depth, name="0000000000"):
    folder = drive / "proj_depth" / "groundtruth" / "image_02"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(folder / (name + ".png"))


@pytest.fixture
def drive(tmp_path):
    """A drive folder with the exact depth (metres * 256, uint16) of frame 0: a level road with a
    box standing on it."""
    depth = level_road(*IMAGE, camera_matrix(KITTIDataset.K, *IMAGE))
    depth[BOX] = 6.0
    write_exact_depth(tmp_path / "drive", depth)
    return tmp_path / "drive"


def demo_comment(K, image=IMAGE):
    return METRIC + "\n" + CLOUD_INTRINSICS.format(K[0, 0], K[1, 1], K[0, 2], K[1, 2], *NET, *image)


def write_cloud(folder, K, comment=None):
    """The cloud the demo writes with intrinsics K for a network that sees the road's exact depth
    (through the resize: its pixels look where camera_matrix(..., image_size) says) and puts the
    box at 3 m instead of 6."""
    os.makedirs(folder, exist_ok=True)
    seen = level_road(*NET, camera_matrix(KITTIDataset.K, *NET, image_size=IMAGE))
    depth = np.where(seen > 0, seen, 80.0)
    v, u = np.meshgrid(*[(np.arange(n) + 0.5) * big / n - 0.5 for n, big in zip(NET[::-1], IMAGE[::-1])], indexing="ij")
    near_box = [(v > BOX[0].start - 1) & (v < BOX[0].stop), (u > BOX[1].start - 1) & (u < BOX[1].stop)]
    depth[near_box[0] & near_box[1]] = 3.0  # the pixels with an image neighbour in the box
    write_ply(os.path.join(folder, "0000000000.ply"), backproject(depth, K), np.zeros((NET[0] * NET[1], 3)),
              demo_comment(K) if comment is None else comment)


def test_road_of_a_cloud_back_projected_through_the_resize_is_at_the_camera_height(drive, tmp_path, capsys):
    write_cloud(tmp_path / "clouds", camera_matrix(KITTIDataset.K, *NET, image_size=IMAGE))
    write_ply(str(tmp_path / "clouds" / "data_drive.ply"), np.zeros((5, 3)), np.zeros((5, 3)), METRIC)  # left out
    heights, depths = road_heights.road_heights(str(tmp_path / "clouds"), str(drive), NET[1], NET[0])
    np.testing.assert_allclose(heights, 1.65, rtol=2e-3)  # the PNG holds depth to 1/256 m; the box is left out
    # the true depth where the resize puts the road pixels' centres
    big = camera_matrix(KITTIDataset.K, *IMAGE)
    v = (np.arange(NET[1]) + 0.5) * IMAGE[1] / NET[1] - 0.5
    row_depth = 1.65 * big[1, 1] / (v - big[1, 2])
    road_rows = [row for row in range(NET[1]) if v[row] > big[1, 2] + 1]
    assert len(depths) > 1000 and depths.max() > 40
    nearest = np.abs(depths[:, None] / row_depth[road_rows][None] - 1).min(axis=1)
    assert nearest.max() < 2e-3  # each is its row's depth, to the PNG's 1/256 m
    road_heights.main([str(tmp_path / "clouds"), str(drive)])
    assert "100.0% within 5% of 1.65 m" in capsys.readouterr().out


def test_a_cloud_without_the_resize_s_shift_has_its_far_road_too_high(drive, tmp_path):
    write_cloud(tmp_path / "clouds", camera_matrix(KITTIDataset.K, *NET))
    heights, depths = road_heights.road_heights(str(tmp_path / "clouds"), str(drive), NET[1], NET[0])
    far = depths > 40
    assert np.median(heights[far]) < 0.95 * 1.65 and np.median(heights[depths < 10]) > 0.98 * 1.65


def test_errors_name_the_file(drive, tmp_path, capsys):
    def error(clouds, truth=drive):
        with pytest.raises(SystemExit):
            road_heights.main([str(clouds), str(truth)])
        return capsys.readouterr().err

    assert "no .ply files" in error(tmp_path)
    write_ply(str(tmp_path / "c" / "0000000000.ply"), np.zeros((10, 3)), np.zeros((10, 3)), METRIC)
    assert "0000000000.ply: 10 points, not one per pixel of 64 x 192" in error(tmp_path / "c")
    write_ply(str(tmp_path / "nan" / "0000000000.ply"), np.full((NET[0] * NET[1], 3), np.nan),
              np.zeros((NET[0] * NET[1], 3)), METRIC)
    assert "0000000000.ply: points that are not finite numbers" in error(tmp_path / "nan")
    write_cloud(tmp_path / "units", camera_matrix(KITTIDataset.K, *NET), comment="point cloud in units")
    assert "0000000000.ply: not in metres (run demo.py with --camera_height)" in error(tmp_path / "units")
    write_cloud(tmp_path / "d", camera_matrix(KITTIDataset.K, *NET))
    assert "no exact depth for" in error(tmp_path / "d", tmp_path)
    write_exact_depth(tmp_path / "wall", np.full(IMAGE[::-1], 5.0))  # no road in view
    assert "image_02/0000000000.png: no ground plane" in error(tmp_path / "d", tmp_path / "wall")
    K = camera_matrix(KITTIDataset.K, *NET, image_size=(1242, 375))
    write_cloud(tmp_path / "big", K, comment=demo_comment(K, image=(1242, 375)))  # a full-size KITTI frame's cloud
    assert "big/0000000000.ply: a cloud of a 1242x375 image, but {} is 621x188".format(
        drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png") in error(tmp_path / "big")
    # a 128x96 network's cloud has as many points as a 192x64 one's; its comment tells them apart
    write_cloud(tmp_path / "other", K, comment=demo_comment(K).replace("192x64 depth map", "128x96 depth map"))
    assert "other/0000000000.ply: a cloud of a 128x96 depth map, not 192x64 (--width/--height)" in error(
        tmp_path / "other")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0000000000.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n"
                                                      b"property float x\nend_header\n\x00")
    assert "bad/0000000000.ply" in error(tmp_path / "bad")
