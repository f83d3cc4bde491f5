"""Evaluate depth predictions on a test split with the reference's protocol.

    python evaluate_depth.py --load_weights_folder DIR --eval_mono|--eval_stereo|--camera_height METRES
                             [--eval_split eigen|FOLDER] [--data_path KITTI_RAW] [--post_process]
                             [--exported [PREFIX] [--backend B] [--precision fp32|bf16|int8]]

--exported runs the network exported by export_model.py (without PREFIX: exported into
DIR/inference/depth on first use) through inference.py, the fastest way on a CPU; in fp32
its metrics equal the eager network's within 1e-6.

The numbers depend on every step (bilinear resize of the disparity to the ground truth's
size, the Garg crop, median scaling, clipping to 1e-3..80 m), so each follows the
reference exactly. It prints the reference's table (the row of seven numbers after '&')
and writes the metrics, with every image's own, to eval_depth_<split>.json beside the weights
(beside the --ext_disp_to_eval file when no weights are given); a split folder's name there is
<folder name>-<8 hex digits of its absolute path's SHA-1>, so that folders of the same
name elsewhere do not overwrite each other's results (disps_<split>_split.npy likewise). The depth range (--min_depth,
--max_depth) is the one the weights were trained with unless given.

--camera_height METRES (KITTI: 1.65) scales each image's prediction by the road plane found in
its lower part (metric_depth.py) instead of the ground truth's median, and reports the
recovered scale over the ground-truth median scale; images without a visible road take the
median scale of the others.
"""
import json
import os
import sys
import time

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import cv2
import numpy as np
import paddle
from PIL import Image

from datasets import Loader, dataset_class, stereo_scale
from datasets.mono_dataset import MissingFilesError
from eval_splits import MAX_DEPTH, MIN_DEPTH, SPLITS_DIR, eval_split, garg_crop_mask
from export_gt_depth import GroundTruth
from export_model import INFO_SUFFIX, read_info
from layers import compute_depth_errors, disp_to_depth
from metric_depth import NoGroundError, camera_matrix, ground_scale, sequence_scale
from network import load_depth_net, weights_record
from options import MonodepthOptions, flag_given
from utils import errors_naming, pick_device, progress, readlines

BENCHMARK_SIZE = (1216, 352)  # width, height of the depth benchmark's submissions
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
BATCH_SIZE = 16
# Disparity maps are resized to the ground truth's size. Networks see images squeezed to their
# input size (KITTI's 1242x375 into 640x192; 16:9 footage into 640x192 is 1.9x off), but a map
# whose aspect ratio is more than this factor off its ground truth's shows another view.
ASPECT_TOLERANCE = 3


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
    if opt.camera_height is not None and opt.eval_stereo:
        raise ValueError("--camera_height scales the depth by the road plane, --eval_stereo by the stereo rig: "
                         "give one of them")
    if opt.eval_mono == opt.eval_stereo and opt.camera_height is None:
        raise ValueError("choose mono or stereo evaluation: set exactly one of --eval_mono and --eval_stereo "
                         "(or scale by the camera's height with --camera_height METRES)")
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
    """Metres per network unit of stereo-trained depth: what the weights record (their
    scale, else their dataset's rig: KITTI 5.4), else the rig of the split's dataset."""
    record = {}
    if opt.ext_disp_to_eval is None and opt.load_weights_folder:
        record = weights_record(weights_folder(opt))
    elif opt.ext_disp_to_eval is None and os.path.isfile(opt.exported + INFO_SUFFIX):
        record = read_info(opt.exported)
    return stereo_scale(dict(record, dataset=record.get("dataset") or split.dataset), "--eval_stereo",
                        "use --eval_mono")


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
    if not np.issubdtype(disps.dtype, np.floating):
        raise ValueError("--ext_disp_to_eval {}: expected floating-point disparities, got {}".format(
            path, disps.dtype))
    if disps.dtype not in (np.float32, np.float64):  # float16: the types cv2.resize takes
        disps = disps.astype(np.float32)
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
        depth = scale / cv2.resize(disp, BENCHMARK_SIZE)
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


def check_aspect(path, disp_shape, gt_shape, index):
    """ValueError naming `path` and both shapes when a disparity map's aspect ratio is more
    than ASPECT_TOLERANCE times off its ground truth's: resized to that size, it would be
    evaluated as a view it does not show (maps transposed, or of other images)."""
    ratio = (disp_shape[1] / disp_shape[0]) / (gt_shape[1] / gt_shape[0])
    if not 1 / ASPECT_TOLERANCE <= ratio <= ASPECT_TOLERANCE:
        raise ValueError("--ext_disp_to_eval {}: its maps are {} x {} (H x W) but ground-truth map {} is {} x {}: "
                         "maps are resized to their ground truth's size, so they must show the same view (H x W "
                         "swapped?)".format(path, *disp_shape, index, *gt_shape))


def split_intrinsics(opt, split, split_lines, height, width):
    """The 3 x 3 pixel intrinsics of each test image at the predictions' height x width, without
    the resize's half-pixel shift: it turns the road plane but keeps its distance, so the scale."""
    fixed = getattr(dataset_class(split.dataset), "K", None)  # KITTI's are the same for every image
    if fixed is not None:
        return [camera_matrix(fixed, width, height)] * len(split_lines)
    dataset = split_dataset(opt, split, split_lines, height, width)
    return [camera_matrix(dataset.get_intrinsics(*line, False), width, height) for line in dataset.lines]


def camera_height_scales(opt, split, split_lines, disps):
    """Per image, metres per unit of predicted depth from the road plane and --camera_height;
    images without a road plane take the median of the others (their number is printed)."""
    if split_lines is None or len(split_lines) != len(disps):
        raise ValueError("--camera_height needs the intrinsics of each test image: {} lines in the split file "
                         "for {} predictions".format(0 if split_lines is None else len(split_lines), len(disps)))
    intrinsics = split_intrinsics(opt, split, split_lines, *disps.shape[1:])
    scales = []
    for disp, K in zip(progress(disps, desc="road planes"), intrinsics):
        try:
            scales.append(ground_scale(1 / disp, K, opt.camera_height))
        except NoGroundError:
            scales.append(None)
    fallback = sequence_scale(scales)
    missing = sum(s is None for s in scales)
    if missing:
        print("-> No road plane in {} of {} images: they take the median scale {:.4g}".format(
            missing, len(scales), fallback))
    return np.array([fallback if s is None else s for s in scales]), missing


def compute_metrics(opt, split, disps, gt, ground_scales=None):
    """The seven metrics of every image (N x 7; the reported ones are their mean, as in the
    reference), and the median-scaling ratios (if used; with `ground_scales`, the camera-height
    scale of each image over its ground-truth median scale)."""
    median_scaling = not opt.disable_median_scaling
    scale = opt.pred_depth_scale_factor
    if ground_scales is not None:  # evaluate() says so
        median_scaling, scale = False, 1
    elif opt.eval_stereo:
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
        if opt.ext_disp_to_eval:
            check_aspect(opt.ext_disp_to_eval, disp.shape, gt_depth.shape, i)
        pred_depth = 1 / cv2.resize(disp, (gt_depth.shape[1], gt_depth.shape[0]))  # bilinear, as the reference
        if split.crop == "garg":
            mask = (gt_depth > MIN_DEPTH) & (gt_depth < MAX_DEPTH) & garg_crop_mask(gt_depth.shape)
        else:
            mask = gt_depth > 0
        pred_depth, gt_depth = pred_depth[mask], gt_depth[mask]
        if not len(gt_depth):
            raise ValueError("{}: depth map {} has no valid pixel".format(gt.path, i))
        pred_depth *= scale
        if ground_scales is not None:
            ratios.append(ground_scales[i] * np.median(pred_depth) / np.median(gt_depth))
            pred_depth *= ground_scales[i]
        if median_scaling:
            ratio = np.median(gt_depth) / np.median(pred_depth)
            ratios.append(ratio)
            pred_depth *= ratio
        pred_depth = np.clip(pred_depth, MIN_DEPTH, MAX_DEPTH)
        errors.append(compute_depth_errors(gt_depth, pred_depth))
    return np.array(errors, dtype=np.float64), np.array(ratios, dtype=np.float64)


def report(opt, split, errors, ratios, results_dir, images, camera_height=None):
    """Print the reference's table (the mean of the per-image `errors`) and write it as JSON
    for scripts, with every image's metrics under "per_image" in the split's order ("image":
    its test_files.txt line, when known); `camera_height` holds what the camera-height scaling
    adds (its scale ratios are then recovered / ground-truth median)."""
    metrics = np.mean(errors, axis=0)
    summary = None
    if camera_height is not None:
        camera_height["scale_ratio"] = {
            "median": float(np.median(ratios)), "std": float(np.std(ratios)),
            "p10": float(np.percentile(ratios, 10)), "p90": float(np.percentile(ratios, 90))}
        print(" Recovered / ground-truth median scale | med: {median:0.3f} | std: {std:0.3f} | "
              "10%: {p10:0.3f} | 90%: {p90:0.3f}".format(**camera_height["scale_ratio"]))
    elif len(ratios):
        med = np.median(ratios)
        summary = {"median": float(med), "std": float(np.std(ratios / med))}
        print(" Scaling ratios | med: {:0.3f} | std: {:0.3f}".format(summary["median"], summary["std"]))
    print("\n  " + "".join("{:>8} | ".format(name) for name in METRICS))
    print("".join("&{: 8.3f}  ".format(value) for value in metrics) + "\\\\")
    mode = "camera_height" if camera_height is not None else "stereo" if opt.eval_stereo else "mono"
    result = {"split": split.name, "mode": mode,
              "num_images": len(errors), "post_process": bool(opt.post_process),
              "weights": opt.load_weights_folder, "disparities": opt.ext_disp_to_eval,
              "min_depth": opt.min_depth, "max_depth": opt.max_depth,
              "metrics": dict(zip(METRICS, map(float, metrics))), "scaling_ratios": summary,
              "per_image": dict(image=images, **{name: errors[:, i].tolist() for i, name in enumerate(METRICS)})}
    if camera_height is not None:
        result["camera_height"] = camera_height
    path = os.path.join(results_dir, "eval_depth_{}.json".format(split.results_name))
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

    name = "disps_{}_split.npy".format(split.results_name)
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
    camera_height = None
    if opt.camera_height is not None:
        print("   Camera-height evaluation - the road {} m below the camera scales each image".format(
            opt.camera_height))
        scales, missing = camera_height_scales(opt, split, split_lines, disps)
        one_scale = compute_metrics(opt, split, disps, gt, np.full(len(disps), np.median(scales)))[0].mean(axis=0)
        camera_height = {"height": opt.camera_height, "images_without_road": missing,
                         "split_scale": float(np.median(scales)),
                         "metrics_with_split_scale": dict(zip(METRICS, map(float, one_scale)))}
        print("   with one scale for the split (the median, {:.4g}): abs_rel {:.3f}".format(
            camera_height["split_scale"], one_scale[0]))
        errors, ratios = compute_metrics(opt, split, disps, gt, scales)
    else:
        errors, ratios = compute_metrics(opt, split, disps, gt)
    images = gt.lines or (split_lines if split_lines is not None and len(split_lines) == len(disps) else None)
    result = report(opt, split, errors, ratios, results_dir, images, camera_height)
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
