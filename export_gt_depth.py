"""Export the ground-truth depth maps of a test split to splits/<split>/gt_depths.npz.

    python export_gt_depth.py --data_path KITTI_RAW --split eigen|eigen_benchmark|synthetic|FOLDER

eigen and synthetic project each line's velodyne scan into its camera (kitti_utils'
projection, the reference's); eigen_benchmark reads the depth benchmark's annotated
16-bit PNGs (metres * 256); a split folder is exported as --dataset's ground truth
(eval_splits.FOLDER_SPLITS) into the folder.

File format: the reference stored one NumPy object array, which NumPy >= 1.24 refuses to
build from maps of different sizes (KITTI's dates have four image sizes) and which
only loads with pickling enabled. Here every map is its own float32 array
(``depth_00000``, ``depth_00001``, ...) next to ``split`` and ``lines`` (the split's
name and test_files.txt lines), so plain ``np.load`` reads it and evaluation can tell
a file exported for another split. `GroundTruth` reads both this format and the
reference's file when it holds a plain 3-D array (all maps of one size).
"""
import argparse
import itertools
import os
import sys
import zipfile
import zlib

import cpu_threads  # noqa: F401  (before paddle, which datasets imports: no import warnings)

import numpy as np
from PIL import Image

from datasets.folder_dataset import depth_path as folder_depth_path
from datasets.kitti_dataset import KITTIDataset
from eval_splits import SPLITS_DIR, depth_splits, eval_split
from kitti_utils import generate_depth_map
from utils import errors_naming, progress, readlines

CAMERA = KITTIDataset.side_map


def parse_line(split_file, number, line):
    """(folder, frame, camera) of a test_files.txt line 'folder frame side'."""
    parts = line.split()
    if len(parts) != 3 or parts[2] not in CAMERA or not parts[1].isdigit():
        raise ValueError("{}, line {}: expected 'folder frame side' (side l or r), got {!r}".format(
            split_file, number, line))
    return parts[0], int(parts[1]), CAMERA[parts[2]]


def gt_sources(data_path, ground_truth, folder, frame, cam):
    """The file(s) the ground truth of one line is made from."""
    if ground_truth == "velodyne":
        calib_dir = os.path.join(data_path, folder.split("/")[0])
        return [os.path.join(data_path, folder, "velodyne_points", "data", "{:010d}.bin".format(frame)),
                os.path.join(calib_dir, "calib_cam_to_cam.txt"),
                os.path.join(calib_dir, "calib_velo_to_cam.txt")]
    if ground_truth == "depth":  # a folder dataset's maps
        return [folder_depth_path(data_path, folder, frame, "r" if cam == CAMERA["r"] else "l")]
    return [os.path.join(data_path, folder, "proj_depth", "groundtruth", "image_0{}".format(cam),
                         "{:010d}.png".format(frame))]


def read_gt(data_path, ground_truth, folder, frame, cam):
    """float32 depth map (metres, 0 = no measurement) of one test line."""
    if ground_truth == "velodyne":
        velo_path = gt_sources(data_path, ground_truth, folder, frame, cam)[0]
        return generate_depth_map(os.path.join(data_path, folder.split("/")[0]), velo_path, cam, True
                                  ).astype(np.float32)
    path = gt_sources(data_path, ground_truth, folder, frame, cam)[0]
    try:
        with Image.open(path) as png:
            return np.array(png).astype(np.float32) / 256
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError("cannot read ground-truth depth {}: {}".format(path, e)) from None


def export_gt_depths(data_path, split, splits_dir=SPLITS_DIR, dataset="kitti"):
    """Write gt_depths.npz beside the test_files.txt of the split (a name or a folder);
    returns its path."""
    if split not in depth_splits() and not os.path.isdir(split):
        raise ValueError("--split {}: ground truth can be exported for {} or a split folder".format(
            split, ", ".join(depth_splits())))
    resolved = eval_split(split, dataset, splits_dir)
    split_file = resolved.test_file
    if not os.path.isfile(split_file):
        raise FileNotFoundError("split file not found: {}; python tools/get_splits.py fetches the "
                                "standard splits".format(split_file))
    lines = readlines(split_file)
    if not lines:
        raise ValueError("{} has no lines".format(split_file))
    items = [parse_line(split_file, n, line) for n, line in enumerate(lines, 1)]

    # Every input is checked before the (slow) projection starts.
    missing = [(n, path) for n, item in enumerate(items, 1)
               for path in gt_sources(data_path, resolved.ground_truth, *item) if not os.path.isfile(path)]
    if missing:
        n, path = missing[0]
        raise FileNotFoundError("{}, line {} ({!r}): missing {} ({} of the split's ground-truth files "
                                "are missing; is --data_path {} right?)".format(
                                    split_file, n, lines[n - 1], path, len(missing), data_path))

    print("Exporting ground truth depths for {}".format(split))
    out = os.path.join(os.path.dirname(split_file), "gt_depths.npz")
    depths = (read_gt(data_path, resolved.ground_truth, *item) for item in progress(items, desc="ground truth"))
    save_gt_depths(out, resolved.name, lines, depths)
    print("Saved {} depth maps to {}".format(len(lines), out))
    return out


def save_gt_depths(path, split, lines, depths):
    """Write the portable gt_depths.npz (see the module docstring) from an iterable of maps.

    The maps are compressed into the archive one by one, as np.savez_compressed would
    store them, so the whole split never has to be in memory; a temporary file renamed
    at the end means a failure leaves no half-written file behind."""
    arrays = [("split", np.array(split)), ("lines", np.array(lines))]
    arrays = itertools.chain(arrays, (("depth_{:05d}".format(i), d) for i, d in enumerate(depths)))
    tmp = path + ".tmp"
    try:
        with errors_naming(path), zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays:
                with archive.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class GroundTruth:
    """The depth maps of a gt_depths.npz, read one at a time (eigen's are ~1.3 GB unpacked).

    `split` and `lines` are None for a file written by the reference."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError("ground truth not found: {} (create it with export_gt_depth.py)".format(path))
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
            keys = set(self._npz.files)
        except (ValueError, *DAMAGED) as e:
            raise self.damaged(e) from None
        if "data" in keys:  # the reference's file
            self.split = self.lines = None
            try:
                self._data = self.read("data")
            except ValueError:  # an object array: pickled
                raise ValueError("{} is the reference's pickled object array (maps of several sizes), "
                                 "which is not loaded for safety: re-create it with export_gt_depth.py".format(
                                     path)) from None
            if self._data.ndim != 3:
                raise ValueError("{}: 'data' should hold N x H x W depth maps, got shape {}".format(
                    path, self._data.shape))
            self._count = len(self._data)
            return
        if not {"split", "lines"} <= keys:
            raise ValueError("{} is not a ground-truth file from export_gt_depth.py (keys: {})".format(
                path, ", ".join(sorted(keys)[:5])))
        self._data = None
        self.split = str(self.read("split"))
        self.lines = [str(line) for line in self.read("lines")]
        self._count = len(self.lines)
        if sum(k.startswith("depth_") for k in keys) != self._count:
            raise ValueError("{}: {} lines but {} depth maps (truncated file?)".format(
                path, self._count, sum(k.startswith("depth_") for k in keys)))

    def __len__(self):
        return self._count

    def __getitem__(self, i):
        if self._data is not None:
            return self._data[i]
        return self.read("depth_{:05d}".format(i))

    def read(self, key):
        """The array `key` of the file; a ValueError naming the file if it is damaged."""
        try:
            return self._npz[key]
        except DAMAGED as e:
            raise self.damaged(e) from None

    def damaged(self, error):
        return ValueError("{} is damaged or truncated ({}: {}): re-create it with export_gt_depth.py "
                          "--split {}".format(self.path, type(error).__name__, error,
                                              os.path.basename(os.path.dirname(os.path.abspath(self.path)))))


# What reading a truncated or bit-flipped .npz raises (the zip's checksums catch flipped bits).
DAMAGED = (OSError, zipfile.BadZipFile, EOFError, zlib.error)


def depth_split(value):
    """argparse type of --split: a split with depth ground truth, or a folder."""
    if value not in depth_splits() and not os.path.isdir(value):
        raise argparse.ArgumentTypeError("{}: choose from {} or give a split folder".format(
            value, ", ".join(depth_splits())))
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export ground-truth depth maps of a test split.")
    parser.add_argument("--data_path", type=str, required=True, help="path to the root of the KITTI data")
    parser.add_argument("--split", type=depth_split, required=True,
                        help="which split to export gt from: {} or a split folder".format(", ".join(depth_splits())))
    parser.add_argument("--dataset", type=str, default="kitti",
                        help="the dataset a split folder's lines belong to (kitti, kitti_depth, folder)")
    opt = parser.parse_args(argv)
    try:
        export_gt_depths(opt.data_path, opt.split, SPLITS_DIR, opt.dataset)
    except (OSError, ValueError) as e:
        parser.exit(1, "error: {}\n".format(e))


if __name__ == "__main__":
    sys.exit(main())
