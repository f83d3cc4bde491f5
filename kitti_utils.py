"""KITTI calibration parsing and velodyne-to-depth-map projection.

The projection reproduces the reference implementation number for number,
including its rounding, its "-1" pixel offset (inherited from KITTI's MATLAB
devkit) and its way of resolving several points that land on one pixel.
"""
import os

import numpy as np

from utils import read_text


def read_calib_file(path):
    """Parse a KITTI ``key: value`` calibration file into a dict.

    Numeric values become float64 arrays; anything else (``calib_time: 09-Jan-2012
    13:57:47``) stays a string, and blank lines are ignored.
    """
    data = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise ValueError(f"{path}, line {number}: expected 'key: value', got {line.strip()!r}")
        key, value = line.split(":", 1)
        value = value.strip()
        try:
            data[key] = np.array([float(v) for v in value.split()]) if value else value
        except ValueError:
            data[key] = value
    return data


def calib_array(calib, key, path, size):
    """``calib[key]`` as a float array of ``size`` values, or an error naming the file."""
    value = calib.get(key)
    if value is None:
        raise ValueError(f"calibration file {path} has no '{key}' entry")
    if isinstance(value, str) or value.size != size:
        raise ValueError(f"calibration file {path}: '{key}' should hold {size} numbers, got {value!r}")
    return value


def load_velodyne_points(filename):
    """Velodyne scan as an (N, 4) float32 array of homogeneous points (x, y, z, 1)."""
    raw = np.fromfile(filename, dtype=np.float32)  # drops a trailing part of a float
    if raw.size % 4 or os.path.getsize(filename) != raw.nbytes:
        raise ValueError(f"velodyne file {filename} holds {os.path.getsize(filename)} bytes, not a "
                         "multiple of 16 (4 float32 per point: x, y, z, reflectance): truncated?")
    points = raw.reshape(-1, 4)
    finite = np.isfinite(points).all(1)
    if not finite.all():  # random bytes hold NaN and inf; projected, they make a nonsense map
        raise ValueError(f"velodyne file {filename}: {len(points) - finite.sum()} of its {len(points)} points "
                         f"hold NaN or infinite values (first: point {int(np.argmin(finite))}): a damaged scan")
    points[:, 3] = 1.0
    return points


def sub2ind(matrixSize, rowSub, colSub):
    """The reference's "linear index" of pixel subscripts, used to find duplicates.

    It multiplies rows by width - 1, so it is not a true linear index: the last
    pixel of a row and the first of the next one share an index.  That quirk
    decides which pixels get the minimum depth and is kept on purpose.
    """
    _, n = matrixSize
    return rowSub * (n - 1) + colSub - 1


def velo_to_image(calib_dir, cam=2):
    """Projection from velodyne coordinates to camera ``cam``'s rectified image.

    Returns the 3x4 matrix and the (height, width) of the image.  The size is
    always that of camera 2 (``S_rect_02``), as in the reference.
    """
    cam2cam_path = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    velo2cam_path = os.path.join(calib_dir, "calib_velo_to_cam.txt")
    for path in (cam2cam_path, velo2cam_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"calibration file not found: {path}")
    cam2cam = read_calib_file(cam2cam_path)
    velo2cam = read_calib_file(velo2cam_path)

    rotation = calib_array(velo2cam, "R", velo2cam_path, 9).reshape(3, 3)
    translation = calib_array(velo2cam, "T", velo2cam_path, 3)
    velo_to_cam = np.vstack((np.hstack((rotation, translation[:, None])), [0, 0, 0, 1.0]))

    im_shape = calib_array(cam2cam, "S_rect_02", cam2cam_path, 2)[::-1].astype(np.int32)
    rect = np.eye(4)
    rect[:3, :3] = calib_array(cam2cam, "R_rect_00", cam2cam_path, 9).reshape(3, 3)
    p_rect = calib_array(cam2cam, f"P_rect_0{cam}", cam2cam_path, 12).reshape(3, 4)
    return np.dot(np.dot(p_rect, rect), velo_to_cam), (int(im_shape[0]), int(im_shape[1]))


def project_depth_map(velo, velo2im, im_shape, vel_depth=False):
    """Sparse depth map (float64, ``im_shape``) from homogeneous velodyne points.

    Points behind the sensor (x < 0) are dropped.  When several points fall on
    one pixel, that pixel gets the smallest depth of the group (a group being
    the points sharing a ``sub2ind`` index); negative depths become 0.
    """
    velo = velo[velo[:, 0] >= 0, :]
    pts = np.dot(velo2im, velo.T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        pts[:, :2] = pts[:, :2] / pts[:, 2][..., None]
    if vel_depth:
        pts[:, 2] = velo[:, 0]

    pts[:, 0] = np.round(pts[:, 0]) - 1
    pts[:, 1] = np.round(pts[:, 1]) - 1
    inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < im_shape[1]) & (pts[:, 1] < im_shape[0])
    pts = pts[inside, :]
    cols = pts[:, 0].astype(np.int64)
    rows = pts[:, 1].astype(np.int64)

    depth = np.zeros(im_shape)
    depth[rows, cols] = pts[:, 2]

    # Duplicates: the group's first point (in scan order) marks the pixel that
    # receives the group's minimum depth.
    inds = sub2ind(depth.shape, pts[:, 1], pts[:, 0])
    _, first, group, counts = np.unique(inds, return_index=True, return_inverse=True, return_counts=True)
    smallest = np.full(len(first), np.inf)
    np.minimum.at(smallest, group, pts[:, 2])
    dup = counts > 1
    depth[rows[first[dup]], cols[first[dup]]] = smallest[dup]
    depth[depth < 0] = 0
    return depth


def generate_depth_map(calib_dir, velo_filename, cam=2, vel_depth=False):
    """Depth map of camera ``cam`` from a velodyne scan, as the reference computes it."""
    if not os.path.isfile(velo_filename):
        raise FileNotFoundError(f"velodyne file not found: {velo_filename}")
    velo2im, im_shape = velo_to_image(calib_dir, cam)
    return project_depth_map(load_velodyne_points(velo_filename), velo2im, im_shape, vel_depth)
