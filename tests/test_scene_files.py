"""scene_files.py: PLY point clouds and KITTI odometry camera paths written and read back."""
import numpy as np
import pytest
from PIL import Image

from scene_files import plot_trajectory, read_ply, read_trajectory, write_ply, write_trajectory


def test_ply_has_the_standard_header_and_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    colours = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    path = tmp_path / "cloud.ply"
    write_ply(path, points, colours, comment="in metres")
    data = path.read_bytes()
    header = data[:data.index(b"end_header\n") + len(b"end_header\n")].decode("ascii")
    assert header == ("ply\nformat binary_little_endian 1.0\ncomment in metres\nelement vertex 50\n"
                      "property float x\nproperty float y\nproperty float z\n"
                      "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    assert len(data) == len(header) + 50 * 15  # 3 floats and 3 bytes per point, nothing else
    np.testing.assert_array_equal(np.frombuffer(data[len(header):len(header) + 12], "<f4"), points[0])
    read_points, read_colours, comments = read_ply(path)
    np.testing.assert_array_equal(read_points, points)
    np.testing.assert_array_equal(read_colours, colours)
    assert comments == ["in metres"]


def test_ascii_ply_with_other_properties_reads(tmp_path):
    path = tmp_path / "meshlab.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
                    "property double z\nproperty float nx\nproperty uchar red\nproperty uchar green\n"
                    "property uchar blue\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n"
                    "1 2 3 0 10 20 30\n-1.5 0 2.25 1 255 0 7\n")
    points, colours, _ = read_ply(path)
    np.testing.assert_array_equal(points, [[1, 2, 3], [-1.5, 0, 2.25]])
    np.testing.assert_array_equal(colours, [[10, 20, 30], [255, 0, 7]])


def test_bad_ply_files(tmp_path):
    path = tmp_path / "bad.ply"
    path.write_text("solid mesh\n")
    with pytest.raises(ValueError, match="not a PLY file"):
        read_ply(path)
    path.write_text("ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n")
    with pytest.raises(ValueError, match="binary_little_endian or ascii"):
        read_ply(path)
    with pytest.raises(ValueError, match="3 points but 2 colours"):
        write_ply(tmp_path / "c.ply", np.zeros((3, 3)), np.zeros((2, 3)))


def test_trajectory_file_and_plot(tmp_path):
    poses = np.tile(np.eye(4), (4, 1, 1))
    poses[:, 2, 3] = [0, 1.5, 3.1, 4.4]
    poses[3, :3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    path = tmp_path / "path.txt"
    write_trajectory(path, poses)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split()) == 12 for line in lines)
    assert [float(v) for v in lines[1].split()] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1.5]
    np.testing.assert_allclose(read_trajectory(path), poses)
    plot = tmp_path / "path.png"
    plot_trajectory(plot, poses, "m")
    with Image.open(plot) as image:
        assert image.size == (600, 600)
        # the path is drawn: blue pixels of the line exist
        rgb = np.asarray(image.convert("RGB")).astype(int)
        assert np.count_nonzero((rgb[:, :, 2] > 150) & (rgb[:, :, 0] < 80)) > 100
