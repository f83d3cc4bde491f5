"""How far below the camera the true road lies in demo.py's point clouds of a synthetic drive.

    python demo.py --image_path DRIVE/image_02/data --load_weights_folder WEIGHTS --camera_height 1.65 \\
        --point_cloud --output_dir CLOUDS
    python tools/road_heights.py CLOUDS DRIVE [--height 64 --width 192] [--camera_height 1.65]

DRIVE is a drive folder written by tools/make_synthetic_kitti.py: its exact rendered depth
(proj_depth/groundtruth/image_02) is the truth. The network's pixel (u, v) sees the image's
point ((u + 0.5) W / width - 0.5, (v + 0.5) H / height - 0.5), where the resize puts its centre.
True road pixels are those whose four surrounding image pixels lie on the true road plane (fitted
to the exact depth, within 2 cm); there the exact depth is interpolated in inverse depth, which is
linear across a plane. Each cloud point's height is measured along the true road's normal; the
report gives the share within --tolerance of --camera_height, overall and by true distance.
"""
import argparse
import glob
import os
import re
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.kitti_dataset import KITTIDataset  # noqa: E402
from metric_depth import (KITTI_CAMERA_HEIGHT, NoGroundError, backproject, camera_matrix, fit_ground_plane,  # noqa: E402
                          ground_points)
from scene_files import read_ply  # noqa: E402

ON_ROAD = 0.02  # metres from the true road plane
# the sizes in demo.CLOUD_INTRINSICS (clouds written before it lack them)
SIZES = re.compile(r"pixels of the (\d+)x(\d+) depth map, resized from a (\d+)x(\d+) image")
DISTANCES = (0, 10, 20, 40, np.inf)  # metres, the report's bins of true depth


def true_road(exact_depth, height, width):
    """(height x width mask of the network's pixels that see the road, their exact depth, the
    road's unit normal) from the exact depth map of the full image (0: no depth)."""
    rows, cols = exact_depth.shape
    known = exact_depth > 0
    depth = np.where(known, exact_depth, np.nan)
    K = camera_matrix(KITTIDataset.K, cols, rows)
    normal, distance, _ = fit_ground_plane(ground_points(depth, K), tolerance=ON_ROAD / KITTI_CAMERA_HEIGHT)
    on_road = np.abs(backproject(depth, K) @ normal - distance) < ON_ROAD
    v = (np.arange(height) + 0.5) * rows / height - 0.5
    u = (np.arange(width) + 0.5) * cols / width - 0.5
    v0 = np.clip(np.floor(v).astype(int), 0, rows - 2)[:, None]
    u0 = np.clip(np.floor(u).astype(int), 0, cols - 2)[None, :]
    fv, fu = (v[:, None] - v0), (u[None, :] - u0)
    corners = [(v0, u0, (1 - fv) * (1 - fu)), (v0, u0 + 1, (1 - fv) * fu),
               (v0 + 1, u0, fv * (1 - fu)), (v0 + 1, u0 + 1, fv * fu)]
    road = np.logical_and.reduce([on_road[r, c] for r, c, _ in corners])
    inverse = sum(w / np.where(known[r, c], exact_depth[r, c], 1.0) for r, c, w in corners)
    return road, np.where(road, 1 / inverse, np.nan), normal


def road_heights(clouds, drive, height, width):
    """(heights along the true normal, true depths) of the true road points of every metric
    cloud in `clouds` (the drive's cloud, <stem>_drive.ply, left out)."""
    paths = sorted(p for p in glob.glob(os.path.join(clouds, "*.ply")) if not p.endswith("_drive.ply"))
    if not paths:
        raise FileNotFoundError("{}: no .ply files (demo.py --point_cloud writes them)".format(clouds))
    heights, depths = [], []
    for path in paths:
        try:
            points, _, comments = read_ply(path)
        except ValueError as err:
            raise ValueError("{}: {}".format(path, err) if path not in str(err) else str(err)) from None
        if not np.isfinite(points).all():
            raise ValueError("{}: points that are not finite numbers".format(path))
        if not any("in metres" in line for line in comments):
            raise ValueError("{}: not in metres (run demo.py with --camera_height)".format(path))
        sizes = SIZES.search("\n".join(comments))
        if sizes and tuple(map(int, sizes.groups()[:2])) != (width, height):
            raise ValueError("{}: a cloud of a {}x{} depth map, not {}x{} (--width/--height)".format(
                path, *sizes.groups()[:2], width, height))
        if len(points) != height * width:
            raise ValueError("{}: {} points, not one per pixel of {} x {} (--height/--width; no "
                             "--cloud_max_depth)".format(path, len(points), height, width))
        truth = os.path.join(drive, "proj_depth", "groundtruth", "image_02", os.path.basename(path)[:-4] + ".png")
        if not os.path.isfile(truth):
            raise FileNotFoundError("{}: no exact depth for {} (a drive of tools/make_synthetic_kitti.py?)".format(
                truth, path))
        exact = np.asarray(Image.open(truth))
        if exact.ndim != 2 or exact.dtype != np.uint16:
            raise ValueError("{}: not a depth map (16-bit, one channel, metres * 256)".format(truth))
        if sizes and tuple(map(int, sizes.groups()[2:])) != exact.shape[::-1]:
            raise ValueError("{}: a cloud of a {}x{} image, but {} is {}x{}".format(
                path, *sizes.groups()[2:], truth, *exact.shape[::-1]))
        try:
            road, depth, normal = true_road(exact / 256.0, height, width)
        except NoGroundError as err:
            raise ValueError("{}: {}".format(truth, err)) from None
        heights.append(points.astype(np.float64).reshape(height, width, 3)[road] @ normal)
        depths.append(depth[road])
    if not sum(map(len, heights)):
        raise ValueError("{}: no pixel of the network's {} x {} sees the true road".format(drive, height, width))
    return np.concatenate(heights), np.concatenate(depths)


def report(heights, depths, camera_height, tolerance):
    """Printed lines: the share of road points within tolerance, overall and by distance."""
    close = np.abs(heights - camera_height) <= tolerance * camera_height
    lines = ["{} true road points: median {:.3f} m below the camera (10-90%: {:.3f}-{:.3f}), {:.1%} within "
             "{:.0%} of {} m".format(len(heights), np.median(heights), *np.percentile(heights, [10, 90]),
                                     close.mean(), tolerance, camera_height)]
    for near, far in zip(DISTANCES, DISTANCES[1:]):
        part = (depths >= near) & (depths < far)
        if part.any():
            lines.append("  {:>2g}-{:<3g} m away: {:6d} points, median {:.3f} m, {:.0%} within".format(
                near, far, part.sum(), np.median(heights[part]), close[part].mean()))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clouds", help="folder of demo.py's .ply files (metric: --camera_height)")
    parser.add_argument("drive", help="the synthetic drive folder whose image_02 frames they show")
    parser.add_argument("--height", type=int, default=64, help="the network's input height")
    parser.add_argument("--width", type=int, default=192, help="the network's input width")
    parser.add_argument("--camera_height", type=float, default=KITTI_CAMERA_HEIGHT)
    parser.add_argument("--tolerance", type=float, default=0.05, help="fraction of the camera height")
    args = parser.parse_args(argv)
    try:
        heights, depths = road_heights(args.clouds, args.drive, args.height, args.width)
    except (OSError, ValueError) as err:
        parser.exit(1, "error: {}\n".format(err))
    print("\n".join(report(heights, depths, args.camera_height, args.tolerance)))


if __name__ == "__main__":
    main()
