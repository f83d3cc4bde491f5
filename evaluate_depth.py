"""Evaluate depth predictions on a KITTI test split with the reference's protocol.

    python evaluate_depth.py --load_weights_folder DIR --eval_mono|--eval_stereo
                             [--eval_split eigen] [--data_path KITTI_RAW] [--post_process]

The numbers depend on every step (bilinear resize of the disparity to the ground truth's
size, the Garg crop, median scaling, clipping to 1e-3..80 m), so each follows the
reference exactly. It prints the reference's table (the row of seven numbers after '&')
and writes the metrics to eval_depth_<split>.json beside the weights (beside the
--ext_disp_to_eval file when no weights are given).
"""
import json
import os
import sys
import time

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import numpy as np
import paddle
from PIL import Image

import network
from datasets import KITTIRAWDataset
from datasets.mono_dataset import MissingFilesError
from export_gt_depth import GroundTruth
from layers import compute_depth_errors, disp_to_depth
from options import MonodepthOptions
from torch_weights import resnet_depth
from trainer import pick_device
from utils import load_weights, progress, read_weights, readlines

SPLITS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")
MIN_DEPTH = 1e-3
MAX_DEPTH = 80
# Stereo models learn depth for a baseline of 0.1 units; KITTI's rig has 0.54 m.
STEREO_SCALE_FACTOR = 5.4
# Garg et al.'s crop as fractions of the image (top, bottom, left, right): the region
# with laser returns. Fractions, so it applies to any image size (the synthetic drive's).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
CROPPED_SPLITS = ("eigen", "synthetic")  # the others count every pixel with ground truth
BENCHMARK_SIZE = (1216, 352)  # width, height of the depth benchmark's submissions
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
BATCH_SIZE = 16


class SplitImages(KITTIRAWDataset):
    """The colour images of a test split: the ground truth comes from gt_depths.npz, so
    nothing else (velodyne scans, calibration) is needed or read."""

    def check_depth(self):
        return False


class BenchmarkSplitImages(SplitImages):
    """The depth benchmark's test images, <data_path>/image/0000000123.png, whose split
    lines are 'image 123' (KITTI's test_depth_prediction_anonymous folder)."""

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, "{:010d}{}".format(frame_index, self.img_ext))


def resize_linear(img, width, height):
    """Bilinear resize of a 2-D float array like the reference's cv2.resize (INTER_LINEAR,
    OpenCV 4 and 5): half-pixel centres, edge samples clamped, weights in double precision.
    Computed in float64 and returned in the input's dtype (float32: within 1 ulp of OpenCV)."""
    def taps(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5
        first = np.floor(pos).astype(np.int64)
        frac = pos - first
        frac[(first < 0) | (first >= n_in - 1)] = 0
        first = np.clip(first, 0, n_in - 1)
        return first, np.minimum(first + 1, n_in - 1), 1 - frac, frac

    x0, x1, wx0, wx1 = taps(img.shape[1], width)
    y0, y1, wy0, wy1 = taps(img.shape[0], height)
    src = img.astype(np.float64)
    rows = src[:, x0] * wx0 + src[:, x1] * wx1
    out = rows[y0] * wy0[:, None] + rows[y1] * wy1[:, None]
    return out.astype(img.dtype)


def post_process_disparity(disp, flipped_disp):
    """Monodepth v1's blend of a prediction with that of the mirrored image (flipped back):
    the left 5-10% of the columns come from the mirrored pass, the right ones from the
    direct pass, and the middle is their mean (removes the occlusion edge at each border)."""
    width = disp.shape[-1]
    left = 1.0 - np.clip(20 * (np.linspace(0, 1, width) - 0.05), 0, 1)
    right = left[::-1]
    mean = 0.5 * (disp + flipped_disp)
    return right * disp + left * flipped_disp + (1.0 - left - right) * mean


def garg_crop_mask(shape):
    height, width = shape
    top, bottom, left, right = np.array([GARG_CROP[0] * height, GARG_CROP[1] * height,
                                         GARG_CROP[2] * width, GARG_CROP[3] * width]).astype(np.int32)
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def check_eval_options(opt):
    """Raise ValueError naming the flag for combinations that cannot be evaluated."""
    if opt.eval_mono == opt.eval_stereo:
        raise ValueError("choose mono or stereo evaluation: set exactly one of --eval_mono and --eval_stereo")
    if opt.eval_split.startswith("odom"):
        raise ValueError("--eval_split {} is a pose split: use evaluate_pose.py".format(opt.eval_split))
    if opt.ext_disp_to_eval is None and opt.load_weights_folder is None:
        raise ValueError("give the weights to evaluate with --load_weights_folder "
                         "(or precomputed disparities with --ext_disp_to_eval)")
    if opt.eval_eigen_to_benchmark and opt.ext_disp_to_eval is None:
        raise ValueError("--eval_eigen_to_benchmark reorders disparities given with --ext_disp_to_eval")
    if opt.save_pred_disps and opt.load_weights_folder is None:
        raise ValueError("--save_pred_disps writes into --load_weights_folder, which is not set "
                         "(use --eval_out_dir to choose a folder)")
    if opt.eval_split == "benchmark" and not (opt.eval_out_dir or opt.load_weights_folder):
        raise ValueError("--eval_split benchmark writes its PNGs into --eval_out_dir or "
                         "--load_weights_folder: set one")
    if opt.pred_depth_scale_factor <= 0:
        raise ValueError("--pred_depth_scale_factor must be positive, got {}".format(opt.pred_depth_scale_factor))


def weights_folder(opt):
    folder = os.path.expanduser(opt.load_weights_folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError("--load_weights_folder {}: no such folder".format(folder))
    return folder


def input_size(opt, folder):
    """(height, width) the network was trained at, from its encoder file (checked for
    --num_layers first), else --height/--width."""
    path = os.path.join(folder, "encoder.pdparams")
    state = read_encoder_file(path, opt.num_layers)
    if "height" in state and "width" in state:
        return int(state["height"]), int(state["width"])
    print("-> {} does not record the input size: using --height {} --width {}".format(
        path, opt.height, opt.width))
    return opt.height, opt.width


def load_depth_network(opt, folder):
    """Encoder and decoder (scale 0 only: its weights are a subset of any trained
    decoder's) with the folder's weights, in eval mode."""
    paths = [os.path.join(folder, name + ".pdparams") for name in ("encoder", "depth")]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError("weights file not found: {}".format(path))
    encoder = network.ResnetEncoder(opt.num_layers, False)
    decoder = network.DepthDecoder(encoder.num_ch_enc, scales=[0])
    load_weights(encoder, paths[0])
    load_weights(decoder, paths[1])
    encoder.eval()
    decoder.eval()
    return encoder, decoder


def read_encoder_file(path, num_layers):
    """The encoder's saved state; a clear error when it holds a ResNet of another depth
    than --num_layers."""
    state = read_weights(path)
    plain = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    try:
        depth = resnet_depth(plain)
    except ValueError:
        return state  # not recognisable: load_weights reports the mismatch
    if depth != num_layers:
        raise ValueError("{} holds a ResNet-{} encoder but --num_layers is {}: pass --num_layers {}".format(
            path, depth, num_layers, depth))
    return state


def split_dataset(opt, split_lines, height, width):
    ext = ".png" if opt.png else ".jpg"
    data_path = os.path.expanduser(opt.data_path)
    images = SplitImages
    if opt.eval_split == "benchmark":
        split_lines = [line if len(line.split()) == 3 else line + " l" for line in split_lines]
        images = BenchmarkSplitImages
    try:
        return images(data_path, split_lines, height, width, [0], 1, img_ext=ext, resize=opt.resize)
    except MissingFilesError as e:
        raise FileNotFoundError("--data_path {} lacks images of --eval_split {}: {}{}".format(
            opt.data_path, opt.eval_split, e.summary, "" if opt.png else " (PNG images need --png)")) from None


def predict_disparities(opt, folder, split_lines):
    """N x H x W disparities of the split's images (float32; float64 with --post_process,
    as the reference's blend weights are float64)."""
    print("-> Loading weights from {}".format(folder))
    height, width = input_size(opt, folder)
    dataset = split_dataset(opt, split_lines, height, width)  # checks every image exists
    encoder, decoder = load_depth_network(opt, folder)
    loader = paddle.io.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False, drop_last=False,
                                  num_workers=opt.num_workers)
    print("-> Computing predictions with size {}x{}".format(width, height))
    disps = []
    start = time.time()
    bar = progress(total=len(dataset), desc="predicting")
    with paddle.no_grad(), bar:
        for inputs in loader:
            color = inputs[("color", 0, 0)]
            bar.update(color.shape[0])
            if opt.post_process:
                color = paddle.concat([color, paddle.flip(color, [3])], axis=0)
            disp = decoder(encoder(color))[("disp", 0)]
            disp = disp_to_depth(disp, opt.min_depth, opt.max_depth)[0][:, 0].numpy()
            if opt.post_process:
                n = len(disp) // 2
                disp = post_process_disparity(disp[:n], disp[n:, :, ::-1])
            disps.append(disp)
    seconds = time.time() - start
    print("-> {} images in {:.1f} s ({:.1f} images/s)".format(len(dataset), seconds, len(dataset) / seconds))
    return np.concatenate(disps)


def load_disparities(opt):
    """The --ext_disp_to_eval array, reordered to the benchmark's images if asked."""
    path = opt.ext_disp_to_eval
    print("-> Loading predictions from {}".format(path))
    if not os.path.isfile(path):
        raise FileNotFoundError("--ext_disp_to_eval {}: no such file".format(path))
    try:
        disps = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError("--ext_disp_to_eval {}: not a .npy array ({})".format(path, e)) from None
    if not isinstance(disps, np.ndarray) or disps.ndim != 3:
        raise ValueError("--ext_disp_to_eval {}: expected N x H x W disparities, got shape {}".format(
            path, getattr(disps, "shape", None)))
    if opt.eval_eigen_to_benchmark:
        ids_path = os.path.join(SPLITS_DIR, "benchmark", "eigen_to_benchmark_ids.npy")
        if not os.path.isfile(ids_path):
            raise FileNotFoundError("--eval_eigen_to_benchmark needs {} (fetch the splits with "
                                    "tools/get_splits.py)".format(ids_path))
        ids = np.load(ids_path)
        if ids.max() >= len(disps):
            raise ValueError("--eval_eigen_to_benchmark: {} holds {} disparities but {} picks image {}: "
                             "give the disparities of the whole eigen split".format(
                                 path, len(disps), ids_path, ids.max()))
        disps = disps[ids]
    return disps


def write_benchmark_pngs(disps, folder):
    """16-bit PNGs (depth * 256 at 1216x352, stereo-scaled, capped at 80 m) for the
    benchmark's server, named 0000000000.png, ... in split order."""
    os.makedirs(folder, exist_ok=True)
    print("-> Saving out benchmark predictions to {}".format(folder))
    for i, disp in enumerate(disps):
        depth = STEREO_SCALE_FACTOR / resize_linear(disp, *BENCHMARK_SIZE)
        depth = np.uint16(np.clip(depth, 0, 80) * 256)
        Image.fromarray(depth).save(os.path.join(folder, "{:010d}.png".format(i)))


def load_ground_truth(opt, split_lines):
    """The split's gt_depths.npz, checked against the split (before any prediction is made:
    a missing file says which command creates it)."""
    path = os.path.join(SPLITS_DIR, opt.eval_split, "gt_depths.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError("ground truth not found: {} (create it with python export_gt_depth.py "
                                "--data_path KITTI_RAW --split {})".format(path, opt.eval_split))
    gt = GroundTruth(path)
    if gt.split is not None and gt.split != opt.eval_split:
        raise ValueError("{} was exported for --split {}, not {}: re-run export_gt_depth.py --split {}".format(
            path, gt.split, opt.eval_split, opt.eval_split))
    if gt.lines is not None and split_lines is not None and gt.lines != split_lines:
        raise ValueError("{} was exported from another test_files.txt than the current one of split {}: "
                         "re-run export_gt_depth.py".format(path, opt.eval_split))
    return gt


def check_count(gt, count):
    if len(gt) != count:
        raise ValueError("{} holds {} depth maps but there are {} predictions (a file for another split, "
                         "or --eval_eigen_to_benchmark missing?)".format(gt.path, len(gt), count))


def compute_metrics(opt, disps, gt):
    """Mean of the seven metrics over the images, and the median-scaling ratios (if used)."""
    median_scaling = not opt.disable_median_scaling
    scale = opt.pred_depth_scale_factor
    if opt.eval_stereo:
        print("   Stereo evaluation - disabling median scaling, scaling by {}".format(STEREO_SCALE_FACTOR))
        median_scaling, scale = False, STEREO_SCALE_FACTOR
    else:
        print("   Mono evaluation - using median scaling")
    errors, ratios = [], []
    for i, disp in enumerate(disps):
        gt_depth = gt[i]
        if gt_depth.ndim != 2:
            raise ValueError("{}: depth map {} has shape {}, not H x W".format(gt.path, i, gt_depth.shape))
        pred_depth = 1 / resize_linear(disp, gt_depth.shape[1], gt_depth.shape[0])
        if opt.eval_split in CROPPED_SPLITS:
            mask = (gt_depth > MIN_DEPTH) & (gt_depth < MAX_DEPTH) & garg_crop_mask(gt_depth.shape)
        else:
            mask = gt_depth > 0
        pred_depth, gt_depth = pred_depth[mask], gt_depth[mask]
        if not len(gt_depth):
            raise ValueError("{}: depth map {} has no valid pixel".format(gt.path, i))
        pred_depth *= scale
        if median_scaling:
            ratio = np.median(gt_depth) / np.median(pred_depth)
            ratios.append(ratio)
            pred_depth *= ratio
        pred_depth = np.clip(pred_depth, MIN_DEPTH, MAX_DEPTH)
        errors.append(compute_depth_errors(gt_depth, pred_depth))
    return np.mean(errors, axis=0), np.array(ratios, dtype=np.float64)


def report(opt, metrics, ratios, results_dir, num_images):
    """Print the reference's table and write it as JSON for scripts."""
    summary = None
    if len(ratios):
        med = np.median(ratios)
        summary = {"median": float(med), "std": float(np.std(ratios / med))}
        print(" Scaling ratios | med: {:0.3f} | std: {:0.3f}".format(summary["median"], summary["std"]))
    print("\n  " + "".join("{:>8} | ".format(name) for name in METRICS))
    print("".join("&{: 8.3f}  ".format(value) for value in metrics) + "\\\\")
    result = {"split": opt.eval_split, "mode": "stereo" if opt.eval_stereo else "mono",
              "num_images": int(num_images), "post_process": bool(opt.post_process),
              "weights": opt.load_weights_folder, "disparities": opt.ext_disp_to_eval,
              "min_depth": opt.min_depth, "max_depth": opt.max_depth,
              "metrics": dict(zip(METRICS, map(float, metrics))), "scaling_ratios": summary}
    path = os.path.join(results_dir, "eval_depth_{}.json".format(opt.eval_split))
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("-> Metrics written to {}".format(path))
    return result


def evaluate(opt):
    """Run the evaluation the options ask for; returns the JSON result (None when
    nothing is scored: --no_eval or the benchmark split)."""
    check_eval_options(opt)
    split_file = os.path.join(SPLITS_DIR, opt.eval_split, "test_files.txt")
    split_lines = readlines(split_file) if os.path.isfile(split_file) else None
    scored = not opt.no_eval and opt.eval_split != "benchmark"
    # before the network runs: a missing file stops the run at once
    gt = load_ground_truth(opt, split_lines) if scored and opt.ext_disp_to_eval is None else None
    if opt.ext_disp_to_eval is None:
        if split_lines is None:
            raise FileNotFoundError("split file not found: {}; python tools/get_splits.py fetches the "
                                    "standard splits".format(split_file))
        folder = weights_folder(opt)
        paddle.set_device(pick_device(opt))
        disps = predict_disparities(opt, folder, split_lines)
        results_dir = folder
    else:
        disps = load_disparities(opt)
        results_dir = (weights_folder(opt) if opt.load_weights_folder
                       else os.path.dirname(os.path.abspath(opt.ext_disp_to_eval)))

    name = "disps_{}_split.npy".format(opt.eval_split)
    if opt.save_pred_disps:
        path = os.path.join(weights_folder(opt), name)
        print("-> Saving predicted disparities to {}".format(path))
        np.save(path, disps)
    if opt.eval_out_dir:
        os.makedirs(opt.eval_out_dir, exist_ok=True)
        path = os.path.join(opt.eval_out_dir, name)
        print("-> Saving predicted disparities to {}".format(path))
        np.save(path, disps)

    if opt.no_eval:
        print("-> Evaluation disabled. Done.")
        return None
    if opt.eval_split == "benchmark":
        write_benchmark_pngs(disps, os.path.join(opt.eval_out_dir or weights_folder(opt), "benchmark_predictions"))
        print("-> No ground truth is available for the KITTI benchmark, so not evaluating. Done.")
        return None

    if gt is None:
        gt = load_ground_truth(opt, split_lines)
    check_count(gt, len(disps))
    print("-> Evaluating")
    metrics, ratios = compute_metrics(opt, disps, gt)
    result = report(opt, metrics, ratios, results_dir, len(disps))
    print("\n-> Done!")
    return result


def main(argv=None):
    options = MonodepthOptions()
    opt = options.parse(argv)
    try:
        check_eval_options(opt)
    except ValueError as e:
        options.parser.error(str(e))
    try:
        evaluate(opt)
    except (OSError, ValueError) as e:
        options.parser.exit(1, "error: {}\n".format(e))


if __name__ == "__main__":
    sys.exit(main())
