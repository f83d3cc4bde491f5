"""Evaluate depth predictions on a test split with the reference's protocol.

    python evaluate_depth.py --load_weights_folder DIR --eval_mono|--eval_stereo
                             [--eval_split eigen|FOLDER] [--data_path KITTI_RAW] [--post_process]
                             [--exported [PREFIX] [--backend B] [--precision fp32|bf16|int8]]

--exported runs the network exported by export_model.py (without PREFIX: exported into
DIR/inference/depth on first use) through inference.py, the fastest way on a CPU; in fp32
its metrics equal the eager network's within 1e-6.

The numbers depend on every step (bilinear resize of the disparity to the ground truth's
size, the Garg crop, median scaling, clipping to 1e-3..80 m), so each follows the
reference exactly. It prints the reference's table (the row of seven numbers after '&')
and writes the metrics to eval_depth_<split>.json beside the weights (beside the
--ext_disp_to_eval file when no weights are given). The depth range (--min_depth,
--max_depth) is the one the weights were trained with unless given.
"""
import json
import os
import sys
import time

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import numpy as np
import paddle
from PIL import Image

from datasets import Loader, dataset_class, stereo_scale
from datasets.mono_dataset import MissingFilesError
from eval_splits import MAX_DEPTH, MIN_DEPTH, SPLITS_DIR, eval_split, garg_crop_mask
from export_gt_depth import GroundTruth
from export_model import INFO_SUFFIX
from layers import compute_depth_errors, disp_to_depth
from network import load_depth_net, weights_record
from options import MonodepthOptions, flag_given
from utils import errors_naming, pick_device, progress, readlines

BENCHMARK_SIZE = (1216, 352)  # width, height of the depth benchmark's submissions
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
BATCH_SIZE = 16


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


def check_eval_options(opt):
    """Raise ValueError naming the flag for combinations that cannot be evaluated."""
    if opt.eval_mono == opt.eval_stereo:
        raise ValueError("choose mono or stereo evaluation: set exactly one of --eval_mono and --eval_stereo")
    split = eval_split(opt.eval_split, opt.dataset, SPLITS_DIR)
    if split.ground_truth == "poses":
        raise ValueError("--eval_split {} is a pose split: use evaluate_pose.py".format(opt.eval_split))
    if opt.exported == "" and opt.load_weights_folder is None:
        raise ValueError("--exported without a path exports the network of --load_weights_folder, "
                         "which is not set")
    if opt.ext_disp_to_eval is None and opt.load_weights_folder is None and not opt.exported:
        raise ValueError("give the weights to evaluate with --load_weights_folder or --exported PATH "
                         "(or precomputed disparities with --ext_disp_to_eval)")
    if opt.exported is None and (opt.backend or opt.precision):
        raise ValueError("--backend and --precision choose how an exported model runs: add --exported")
    if opt.eval_eigen_to_benchmark and opt.ext_disp_to_eval is None:
        raise ValueError("--eval_eigen_to_benchmark reorders disparities given with --ext_disp_to_eval")
    if opt.save_pred_disps and opt.load_weights_folder is None:
        raise ValueError("--save_pred_disps writes into --load_weights_folder, which is not set "
                         "(use --eval_out_dir to choose a folder)")
    if split.ground_truth is None and not (opt.eval_out_dir or opt.load_weights_folder):
        raise ValueError("--eval_split {} writes its PNGs into --eval_out_dir or "
                         "--load_weights_folder: set one".format(opt.eval_split))
    if opt.pred_depth_scale_factor <= 0:
        raise ValueError("--pred_depth_scale_factor must be positive, got {}".format(opt.pred_depth_scale_factor))
    if opt.eval_stereo:
        split_stereo_scale(opt, split)


def split_stereo_scale(opt, split):
    """Metres per unit of stereo-trained depth: the rig of the dataset the weights record
    they were trained on (KITTI 5.4, a folder dataset 1), else of the split's dataset."""
    name = split.dataset
    if opt.ext_disp_to_eval is None and opt.load_weights_folder:
        name = weights_record(weights_folder(opt))["dataset"] or name
    elif opt.ext_disp_to_eval is None and os.path.isfile(opt.exported + INFO_SUFFIX):
        with open(opt.exported + INFO_SUFFIX) as f:
            name = json.load(f).get("dataset") or name
    return stereo_scale(name, "--eval_stereo", "use --eval_mono")


def weights_folder(opt):
    folder = os.path.expanduser(opt.load_weights_folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError("--load_weights_folder {}: no such folder".format(folder))
    return folder


def split_dataset(opt, split, split_lines, height, width):
    dataset = dataset_class(split.dataset)
    try:
        return dataset(os.path.expanduser(opt.data_path), split_lines, height, width, [0], 1,
                       img_ext=".png" if opt.png else ".jpg", with_depth=False, **dataset.option_kwargs(opt))
    except MissingFilesError as e:
        raise FileNotFoundError("--data_path {} lacks images of --eval_split {}: {}{}".format(
            opt.data_path, opt.eval_split, e.summary, "" if opt.png else " (PNG images need --png)")) from None


def take_recorded(opt, record):
    """The training options a model records (depth range, resize mode) replace the
    defaults in `opt`, not values given as flags."""
    for name in ("min_depth", "max_depth", "resize"):
        if record.get(name) is not None and not flag_given(opt, name):
            setattr(opt, name, record[name])


def load_network(opt, folder):
    """The depth network of `folder` and its input size (see take_recorded)."""
    net, record = load_depth_net(folder, opt.num_layers if flag_given(opt, "num_layers") else None)
    take_recorded(opt, record)
    if record["height"] is not None and record["width"] is not None:
        return net, (int(record["height"]), int(record["width"]))
    print("-> {} does not record the input size: using --height {} --width {}".format(
        os.path.join(folder, "encoder.pdparams"), opt.height, opt.width))
    return net, (opt.height, opt.width)


def load_predictor(opt, folder, device):
    """(function of a B x 3 x H x W batch to its B x 1 x H x W disparity, H, W): the exported
    model with --exported, else the eager network of `folder` (see take_recorded)."""
    if opt.exported is None:
        print("-> Loading weights from {}".format(folder))
        net, (height, width) = load_network(opt, folder)
        return net, height, width
    from export_model import export_if_stale
    from inference import predictor  # the backends are only loaded when asked for

    prefix = opt.exported or export_if_stale(folder)
    net = predictor(prefix, opt.backend or "auto", device, opt.precision or "fp32")
    take_recorded(opt, net.info)
    print("-> Running the exported model {} ({})".format(prefix, net))
    return lambda color: net(color.numpy()), net.info["height"], net.info["width"]


def predict_disparities(opt, folder, split, split_lines, device):
    """N x H x W disparities of the split's images (float32; float64 with --post_process,
    as the reference's blend weights are float64)."""
    predict, height, width = load_predictor(opt, folder, device)
    dataset = split_dataset(opt, split, split_lines, height, width)  # checks every image exists
    loader = Loader(dataset, batch_size=BATCH_SIZE, shuffle=False, drop_last=False,
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
            disp = np.asarray(disp_to_depth(predict(color), opt.min_depth, opt.max_depth)[0][:, 0])
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
        ids = np.load(ids_path, allow_pickle=False)
        if ids.max() >= len(disps):
            raise ValueError("--eval_eigen_to_benchmark: {} holds {} disparities but {} picks image {}: "
                             "give the disparities of the whole eigen split".format(
                                 path, len(disps), ids_path, ids.max()))
        disps = disps[ids]
    return disps


def check_disparities(disps, source):
    """ValueError unless the disparities are finite and every image has a positive one:
    otherwise the metrics would be NaN (or describe a constant depth of 80 m)."""
    finite = np.isfinite(disps)
    if not finite.all():
        raise ValueError("{}: {} of {} disparities are NaN or infinite (first in image {}); nothing "
                         "evaluated".format(source, disps.size - finite.sum(), disps.size,
                                            int(np.argmin(finite.reshape(len(disps), -1).all(1)))))
    empty = [i for i, disp in enumerate(disps) if not (disp > 0).any()]
    if empty:
        raise ValueError("{}: {} of {} images have no positive disparity (first: image {}); nothing "
                         "evaluated".format(source, len(empty), len(disps), empty[0]))


def write_benchmark_pngs(disps, folder, scale):
    """16-bit PNGs (depth * 256 at 1216x352, stereo-scaled, capped at 80 m) for the
    benchmark's server, named 0000000000.png, ... in split order."""
    os.makedirs(folder, exist_ok=True)
    print("-> Saving out benchmark predictions to {}".format(folder))
    for i, disp in enumerate(disps):
        depth = scale / resize_linear(disp, *BENCHMARK_SIZE)
        depth = np.uint16(np.clip(depth, 0, 80) * 256)
        Image.fromarray(depth).save(os.path.join(folder, "{:010d}.png".format(i)))


def load_ground_truth(split, split_lines):
    """The split's gt_depths.npz, checked against the split (before any prediction is made:
    a missing file says which command creates it)."""
    path = os.path.join(os.path.dirname(split.test_file), "gt_depths.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError("ground truth not found: {} (create it with python export_gt_depth.py "
                                "--data_path KITTI_RAW --split {})".format(path, split.name))
    gt = GroundTruth(path)
    if gt.split is not None and gt.split != split.name:
        raise ValueError("{} was exported for --split {}, not {}: re-run export_gt_depth.py --split {}".format(
            path, gt.split, split.name, split.name))
    if gt.lines is not None and split_lines is not None and gt.lines != split_lines:
        raise ValueError("{} was exported from another test_files.txt than the current one of split {}: "
                         "re-run export_gt_depth.py".format(path, split.name))
    return gt


def check_count(gt, count):
    """ValueError unless the ground truth has one depth map per prediction."""
    if len(gt) != count:
        raise ValueError("{} holds {} depth maps but there are {} predictions (a file for another split, "
                         "or --eval_eigen_to_benchmark missing?)".format(gt.path, len(gt), count))


def compute_metrics(opt, split, disps, gt):
    """Mean of the seven metrics over the images, and the median-scaling ratios (if used)."""
    median_scaling = not opt.disable_median_scaling
    scale = opt.pred_depth_scale_factor
    if opt.eval_stereo:
        scale = split_stereo_scale(opt, split)
        print("   Stereo evaluation - disabling median scaling, scaling by {}".format(scale))
        median_scaling = False
    else:
        print("   Mono evaluation - using median scaling")
    errors, ratios = [], []
    for i, disp in enumerate(disps):
        gt_depth = gt[i]
        if gt_depth.ndim != 2:
            raise ValueError("{}: depth map {} has shape {}, not H x W".format(gt.path, i, gt_depth.shape))
        pred_depth = 1 / resize_linear(disp, gt_depth.shape[1], gt_depth.shape[0])
        if split.crop == "garg":
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


def report(opt, split, metrics, ratios, results_dir, num_images):
    """Print the reference's table and write it as JSON for scripts."""
    summary = None
    if len(ratios):
        med = np.median(ratios)
        summary = {"median": float(med), "std": float(np.std(ratios / med))}
        print(" Scaling ratios | med: {:0.3f} | std: {:0.3f}".format(summary["median"], summary["std"]))
    print("\n  " + "".join("{:>8} | ".format(name) for name in METRICS))
    print("".join("&{: 8.3f}  ".format(value) for value in metrics) + "\\\\")
    result = {"split": split.name, "mode": "stereo" if opt.eval_stereo else "mono",
              "num_images": int(num_images), "post_process": bool(opt.post_process),
              "weights": opt.load_weights_folder, "disparities": opt.ext_disp_to_eval,
              "min_depth": opt.min_depth, "max_depth": opt.max_depth,
              "metrics": dict(zip(METRICS, map(float, metrics))), "scaling_ratios": summary}
    path = os.path.join(results_dir, "eval_depth_{}.json".format(split.name))
    with errors_naming(path), open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("-> Metrics written to {}".format(path))
    return result


def evaluate(opt):
    """Run the evaluation the options ask for; returns the JSON result (None when
    nothing is scored: --no_eval or the benchmark split)."""
    check_eval_options(opt)
    split = eval_split(opt.eval_split, opt.dataset, SPLITS_DIR)
    split_lines = readlines(split.test_file) if os.path.isfile(split.test_file) else None
    scored = not opt.no_eval and split.ground_truth is not None
    # before the network runs: a missing file stops the run at once
    gt = load_ground_truth(split, split_lines) if scored and opt.ext_disp_to_eval is None else None
    if opt.ext_disp_to_eval is None:
        if split_lines is None:
            raise FileNotFoundError("split file not found: {}; python tools/get_splits.py fetches the "
                                    "standard splits".format(split.test_file))
        folder = weights_folder(opt) if opt.load_weights_folder else None
        device = pick_device(opt)
        paddle.set_device(device)
        disps = predict_disparities(opt, folder, split, split_lines, device)
        results_dir = folder or os.path.dirname(os.path.abspath(opt.exported))
    else:
        disps = load_disparities(opt)
        results_dir = (weights_folder(opt) if opt.load_weights_folder
                       else os.path.dirname(os.path.abspath(opt.ext_disp_to_eval)))

    name = "disps_{}_split.npy".format(split.name)
    if opt.save_pred_disps:
        path = os.path.join(weights_folder(opt), name)
        print("-> Saving predicted disparities to {}".format(path))
        with errors_naming(path):
            np.save(path, disps)
    if opt.eval_out_dir:
        os.makedirs(opt.eval_out_dir, exist_ok=True)
        path = os.path.join(opt.eval_out_dir, name)
        print("-> Saving predicted disparities to {}".format(path))
        with errors_naming(path):
            np.save(path, disps)

    if opt.no_eval:
        print("-> Evaluation disabled. Done.")
        return None
    check_disparities(disps, "--ext_disp_to_eval " + opt.ext_disp_to_eval if opt.ext_disp_to_eval
                      else "the predictions of " + (opt.load_weights_folder or opt.exported))
    if split.ground_truth is None:  # the depth benchmark's test images
        write_benchmark_pngs(disps, os.path.join(opt.eval_out_dir or weights_folder(opt), "benchmark_predictions"),
                             split_stereo_scale(opt, split))
        print("-> No ground truth is available for the KITTI benchmark, so not evaluating. Done.")
        return None

    if gt is None:
        gt = load_ground_truth(split, split_lines)
    check_count(gt, len(disps))
    print("-> Evaluating")
    metrics, ratios = compute_metrics(opt, split, disps, gt)
    result = report(opt, split, metrics, ratios, results_dir, len(disps))
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
