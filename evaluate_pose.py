"""Evaluate the pose network on KITTI odometry sequence 09 or 10 as the reference does.

    python evaluate_pose.py --eval_split odom_9 --load_weights_folder DIR --data_path KITTI_ODOM

The network predicts the motion between each pair of consecutive frames; for every
5-frame snippet the predicted and ground-truth trajectories (each starting at the
snippet's first frame) are compared after a least-squares scale. The predicted poses are
saved to poses.npy and the result to eval_pose_<split>.json in the weights folder.
"""
import json
import os
import sys

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import numpy as np
import paddle

from datasets import Loader, dataset_class
from eval_splits import EVAL_SPLITS, SPLITS_DIR, eval_split
from layers import transformation_from_parameters
from network import load_pose_net
from options import MonodepthOptions, flag_given
from utils import pick_device, readlines

POSE_SPLITS = [name for name, split in EVAL_SPLITS.items() if split.ground_truth == "poses"]
TRACK_LENGTH = 5
ATE_HELP = (
    "Trajectory error: for each 5-frame snippet, the predicted positions are shifted onto the "
    "ground truth's first position and scaled by the least-squares factor; the error is "
    "sqrt(sum of squared position errors) / 5, averaged over snippets. This is the reference's "
    "(SfMLearner's) formula: dividing by the frame count outside the square root makes it "
    "smaller than a true RMSE (which would divide by sqrt(5)). Poses are compared as the "
    "reference does, so the numbers match its published ones.")


def snippet_positions(transforms):
    """Camera positions along a snippet: the origin, then each 4x4 relative motion chained on."""
    pose = np.eye(4)
    positions = [pose[:3, 3]]
    for transform in transforms:
        pose = pose @ transform
        positions.append(pose[:3, 3])
    return np.array(positions)


def snippet_ate(gt_xyz, pred_xyz):
    """The reference's trajectory error of one snippet (see ATE_HELP)."""
    pred_xyz = pred_xyz + (gt_xyz[0] - pred_xyz[0])[None, :]
    scale = np.sum(gt_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    return np.sqrt(np.sum((pred_xyz * scale - gt_xyz) ** 2)) / gt_xyz.shape[0]


def load_gt_motions(path):
    """Relative motions between consecutive frames from a KITTI odometry poses file
    (one 3x4 camera-to-world matrix per line), as the reference inverts them."""
    if not os.path.isfile(path):
        raise FileNotFoundError("ground-truth poses not found: {} (KITTI odometry's data_odometry_poses)".format(path))
    try:
        poses = np.loadtxt(path).reshape(-1, 3, 4)
    except ValueError as e:
        raise ValueError("{}: expected 12 numbers per line ({})".format(path, e)) from None
    poses = np.concatenate([poses, np.tile([[[0, 0, 0, 1.0]]], (len(poses), 1, 1))], axis=1)
    return [np.linalg.inv(np.linalg.inv(poses[i - 1]) @ poses[i]) for i in range(1, len(poses))]


def load_pose_network(opt, folder):
    encoder_path = os.path.join(folder, "pose_encoder.pdparams")
    decoder_path = os.path.join(folder, "pose.pdparams")
    for path in (encoder_path, decoder_path):
        if not os.path.isfile(path):
            raise FileNotFoundError("{} not found: evaluate_pose.py needs the separate_resnet pose network "
                                    "(pose_encoder.pdparams and pose.pdparams)".format(path))
    return load_pose_net(folder, opt.num_layers if flag_given(opt, "num_layers") else None)


def predict_motions(opt, folder, split, lines):
    """N x 4 x 4 predicted motions from each line's frame to the next."""
    encoder, decoder = load_pose_network(opt, folder)
    dataset = dataset_class(split.dataset)
    dataset = dataset(opt.data_path, lines, opt.height, opt.width, [0, 1], 1, img_ext=".png" if opt.png else ".jpg",
                      **dataset.option_kwargs(opt))
    loader = Loader(dataset, batch_size=opt.batch_size, shuffle=False, drop_last=False,
                    num_workers=opt.num_workers)
    print("-> Computing pose predictions")
    motions = []
    with paddle.no_grad():
        for inputs in loader:
            pair = paddle.concat([inputs[("color_aug", 0, 0)], inputs[("color_aug", 1, 0)]], axis=1)
            axisangle, translation = decoder([encoder(pair)])
            motions.append(transformation_from_parameters(axisangle[:, 0], translation[:, 0]).numpy())
    return np.concatenate(motions)


def evaluate(opt):
    """Predict, score and save; returns the JSON result."""
    if opt.eval_split not in POSE_SPLITS:
        raise ValueError("--eval_split must be {} for pose evaluation, got {}".format(
            " or ".join(POSE_SPLITS), opt.eval_split))
    if opt.load_weights_folder is None:
        raise ValueError("give the weights to evaluate with --load_weights_folder")
    folder = os.path.expanduser(opt.load_weights_folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError("--load_weights_folder {}: no such folder".format(folder))
    sequence = int(opt.eval_split.split("_")[1])
    split = eval_split(opt.eval_split, splits_dir=SPLITS_DIR)
    split_file = split.test_file
    if not os.path.isfile(split_file):
        raise FileNotFoundError("split file not found: {} (fetch the splits with tools/get_splits.py)".format(
            split_file))
    gt_path = os.path.join(opt.data_path, "poses", "{:02d}.txt".format(sequence))
    gt_motions = load_gt_motions(gt_path)
    lines = readlines(split_file)
    if len(lines) != len(gt_motions):
        raise ValueError("{} has {} lines but {} holds {} poses: expected one pose more than lines".format(
            split_file, len(lines), gt_path, len(gt_motions) + 1))

    paddle.set_device(pick_device(opt))
    motions = predict_motions(opt, folder, split, lines)
    errors = [snippet_ate(snippet_positions(gt_motions[i:i + TRACK_LENGTH - 1]),
                          snippet_positions(motions[i:i + TRACK_LENGTH - 1]))
              for i in range(len(gt_motions))]
    print("\n   Trajectory error: {:0.3f}, std: {:0.3f}\n".format(np.mean(errors), np.std(errors)))

    poses_path = os.path.join(folder, "poses.npy")
    np.save(poses_path, motions)
    print("-> Predictions saved to", poses_path)
    result = {"split": opt.eval_split, "weights": opt.load_weights_folder, "num_snippets": len(errors),
              "trajectory_error": float(np.mean(errors)), "trajectory_error_std": float(np.std(errors))}
    with open(os.path.join(folder, "eval_pose_{}.json".format(opt.eval_split)), "w") as f:
        json.dump(result, f, indent=2)
    return result


def main(argv=None):
    options = MonodepthOptions()
    options.parser.description = __doc__.split("\n\n")[0]
    options.parser.epilog = ATE_HELP
    opt = options.parse(argv)
    try:
        evaluate(opt)
    except (OSError, ValueError) as e:
        options.parser.exit(1, "error: {}\n".format(e))


if __name__ == "__main__":
    sys.exit(main())
