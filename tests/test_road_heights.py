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

IMAGE = (621, 188)  # the synthetic drive's image size (W, H)
NET = (192, 64)


def level_road(width, height, K, camera_height=1.65):
    """Depth of a level road `camera_height` below a level camera (0 above the horizon)."""
    rows = (np.arange(height)[:, None] - K[1, 2]) / K[1, 1] * np.ones((1, width))
    return np.where(rows > camera_height / 200, camera_height / np.maximum(rows, 1e-9), 0.0)


@pytest.fixture
def drive(tmp_path):
    """A drive folder with the exact depth (metres * 256, uint16) of a level road for frame 0."""
    folder = tmp_path / "drive" / "proj_depth" / "groundtruth" / "image_02"
    folder.mkdir(parents=True)
    depth = level_road(*IMAGE, camera_matrix(KITTIDataset.K, *IMAGE))
    Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(folder / "0000000000.png")
    return tmp_path / "drive"


def write_cloud(folder, K):
    """The cloud the demo writes with intrinsics K for a network that sees the road's exact depth
    (through the resize: its pixels look where camera_matrix(..., image_size) says)."""
    os.makedirs(folder, exist_ok=True)
    seen = level_road(*NET, camera_matrix(KITTIDataset.K, *NET, image_size=IMAGE))
    depth = np.where(seen > 0, seen, 80.0)
    write_ply(os.path.join(folder, "0000000000.ply"), backproject(depth, K), np.zeros((NET[0] * NET[1], 3)))


def test_road_of_a_cloud_back_projected_through_the_resize_is_at_the_camera_height(drive, tmp_path, capsys):
    write_cloud(tmp_path / "clouds", camera_matrix(KITTIDataset.K, *NET, image_size=IMAGE))
    heights, depths = road_heights.road_heights(str(tmp_path / "clouds"), str(drive), NET[1], NET[0])
    assert len(heights) > 1000 and depths.max() > 40
    np.testing.assert_allclose(heights, 1.65, rtol=2e-3)  # the PNG holds depth to 1/256 m
    road_heights.main([str(tmp_path / "clouds"), str(drive)])
    assert "100.0% within 5% of 1.65 m" in capsys.readouterr().out


def test_a_cloud_without_the_resize_s_shift_has_its_far_road_too_high(drive, tmp_path):
    write_cloud(tmp_path / "clouds", camera_matrix(KITTIDataset.K, *NET))
    heights, depths = road_heights.road_heights(str(tmp_path / "clouds"), str(drive), NET[1], NET[0])
    far = depths > 40
    assert np.median(heights[far]) < 0.95 * 1.65 and np.median(heights[depths < 10]) > 0.98 * 1.65


def test_errors_name_the_file(drive, tmp_path, capsys):
    with pytest.raises(SystemExit):
        road_heights.main([str(tmp_path), str(drive)])
    assert "no .ply files" in capsys.readouterr().err
    write_ply(str(tmp_path / "c" / "0000000000.ply"), np.zeros((10, 3)), np.zeros((10, 3)))
    with pytest.raises(SystemExit):
        road_heights.main([str(tmp_path / "c"), str(drive)])
    assert "0000000000.ply: 10 points, not one per pixel of 64 x 192" in capsys.readouterr().err
    write_cloud(tmp_path / "d", camera_matrix(KITTIDataset.K, *NET))
    with pytest.raises(SystemExit):
        road_heights.main([str(tmp_path / "d"), str(tmp_path)])
    assert "no exact depth for" in capsys.readouterr().err
