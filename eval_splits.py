"""The evaluation splits in one table, and the depth protocol they share.

options.py, evaluate_depth.py, export_gt_depth.py and evaluate_pose.py all derive from
EVAL_SPLITS; a new split is one row. --eval_split also takes a folder holding
test_files.txt, whose images are read with --dataset and scored as that dataset's own
ground truth is (see folder_split)."""
import collections
import hashlib
import os

import numpy as np

SPLITS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")
# Depths that are scored, and the range predictions are clipped to (metres), as the reference.
MIN_DEPTH, MAX_DEPTH = 1e-3, 80
# Garg et al.'s crop as fractions of the image (top, bottom, left, right): the region
# with laser returns. Fractions, so it applies to any image size (the synthetic drive's).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)

# dataset: the datasets.DATASETS name that reads its images;
# ground_truth: how export_gt_depth.py makes its gt_depths.npz ("velodyne" scans projected
#   into the camera, the depth benchmark's "png" maps, a folder dataset's "depth" maps), or
#   None: no depth ground truth ("poses" for the odometry splits);
# crop: "garg" (Garg crop and MIN_DEPTH..MAX_DEPTH) or None (every pixel with ground truth);
# test_file: its split file under splits/.
EvalSplit = collections.namedtuple("EvalSplit", "dataset ground_truth crop test_file")
EVAL_SPLITS = {
    "eigen": EvalSplit("kitti", "velodyne", "garg", "eigen/test_files.txt"),
    "eigen_benchmark": EvalSplit("kitti", "png", None, "eigen_benchmark/test_files.txt"),
    "benchmark": EvalSplit("kitti_test", None, None, "benchmark/test_files.txt"),
    "odom_9": EvalSplit("kitti_odom", "poses", None, "odom/test_files_09.txt"),
    "odom_10": EvalSplit("kitti_odom", "poses", None, "odom/test_files_10.txt"),
    # the drive of tools/make_synthetic_kitti.py, scored like eigen
    "synthetic": EvalSplit("kitti", "velodyne", "garg", "synthetic/test_files.txt"),
}
# how a folder split is scored, by the dataset that reads it
FOLDER_SPLITS = {"kitti": ("velodyne", "garg"), "kitti_depth": ("png", None), "folder": ("depth", None)}


# a split resolved for use: its name, what EvalSplit says, the path of its test file
# (gt_depths.npz sits beside it), and the name of the files of its results (evaluate_depth.py):
# a folder's name and a short hash of its absolute path, as folders elsewhere share names
Split = collections.namedtuple("Split", "name dataset ground_truth crop test_file results_name")


def eval_split(name, dataset="kitti", splits_dir=SPLITS_DIR):
    """The Split of a split name, or of a folder holding test_files.txt whose images
    --dataset `dataset` reads."""
    if name in EVAL_SPLITS:
        row = EVAL_SPLITS[name]
        return Split(name, row.dataset, row.ground_truth, row.crop, os.path.join(splits_dir, row.test_file), name)
    if not os.path.isdir(name):
        raise ValueError("--eval_split {}: neither one of {} nor a folder".format(name, ", ".join(EVAL_SPLITS)))
    if dataset not in FOLDER_SPLITS:
        raise ValueError("--eval_split {}: a split folder of --dataset {} has no depth ground truth "
                         "(use --dataset {})".format(name, dataset, " or ".join(FOLDER_SPLITS)))
    folder = os.path.realpath(name)
    base = os.path.basename(folder)
    return Split(base, dataset, *FOLDER_SPLITS[dataset], os.path.join(name, "test_files.txt"),
                 "{}-{}".format(base, hashlib.sha1(folder.encode()).hexdigest()[:8]))


def depth_splits():
    """Names of the splits whose depth ground truth can be exported."""
    return [name for name, split in EVAL_SPLITS.items() if split.ground_truth not in (None, "poses")]


def garg_crop_mask(shape):
    """H x W boolean mask of the Garg crop of an image of `shape`."""
    height, width = shape
    top, bottom, left, right = np.array([GARG_CROP[0] * height, GARG_CROP[1] * height,
                                         GARG_CROP[2] * width, GARG_CROP[3] * width]).astype(np.int32)
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask
