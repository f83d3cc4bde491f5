"""Command-line options: the reference's flags with its names, meanings and defaults,
plus what Paddle needs (--seed, --device)."""
import argparse
import math
import os

from cpu_threads import available_cores
from datasets import DATASETS
from datasets.folder_dataset import check_intrinsics
from eval_splits import EVAL_SPLITS, eval_split
from network import BACKBONES

file_dir = os.path.dirname(os.path.abspath(__file__))


class MonodepthOptions:
    def __init__(self):
        p = self.parser = argparse.ArgumentParser(description="Monodepth2 options (PaddlePaddle)")
        add = p.add_argument

        # paths
        add("--data_path", type=str, default=os.path.join(file_dir, "kitti_data"),
            help="path to the training data")
        add("--log_dir", type=str, default=os.path.join(os.path.expanduser("~"), "tmp"),
            help="log directory")

        # training
        add("--model_name", type=str, default="mdp",
            help="the name of the folder to save the model in, inside --log_dir")
        add("--split", type=str, default="eigen_zhou",
            help="which training split to use: eigen_zhou, eigen_full, odom, benchmark (folders "
                 "of splits/) or the path of a folder holding train_files.txt and val_files.txt")
        add("--num_layers", type=int, default=18, choices=[18, 34, 50, 101, 152],
            help="number of resnet layers (evaluation: the weights' unless given)")
        add("--backbone", type=str, default="resnet", choices=sorted(BACKBONES),
            help="the encoder network (network/BACKBONES)")
        add("--dataset", type=str, default="kitti", choices=sorted(DATASETS), help="dataset to train on")
        add("--intrinsics", type=float, nargs="+", metavar="FX FY CX CY [BASELINE]",
            help="--dataset folder: the camera intrinsics in pixels at the frames' resolution for every "
                 "sequence (instead of intrinsics.txt), and optionally the stereo baseline in metres")
        add("--png", action="store_true", help="if set, trains from raw KITTI png files (instead of jpgs)")
        add("--resize", type=str, default="lanczos", choices=["lanczos", "nearest"],
            help="how images are resized to the network's input for training and evaluation: "
                 "lanczos (the reference's) or nearest (the published Paddle port's; use it with "
                 "that port's weights). Evaluation and the demo take the weights' own unless given")
        add("--height", type=int, default=192, help="input image height (a multiple of 32)")
        add("--width", type=int, default=640, help="input image width (a multiple of 32)")
        add("--disparity_smoothness", type=float, default=1e-3, help="disparity smoothness weight")
        add("--scales", nargs="+", type=int, default=[0, 1, 2, 3], help="scales used in the loss")
        add("--min_depth", type=float, default=0.1,
            help="minimum depth, in the network's units: those where a stereo rig's baseline is 0.1 "
                 "(KITTI's 0.54 m, so 1 unit = 5.4 m there; a folder dataset's rig likewise, the factor "
                 "to metres is recorded with the weights). From scratch keep 0.1 for mono (larger "
                 "values can collapse training to this depth everywhere)")
        add("--max_depth", type=float, default=100.0, help="maximum depth, in the units of --min_depth")
        add("--use_stereo", action="store_true", help="if set, uses stereo pair for training")
        add("--frame_ids", nargs="+", type=int, default=[0, -1, 1], help="frames to load")

        # optimisation
        add("--batch_size", type=int, default=12, help="batch size")
        add("--learning_rate", type=float, default=1e-4, help="learning rate")
        add("--num_epochs", type=int, default=20, help="number of epochs")
        add("--scheduler_step_size", type=int, default=15,
            help="step size of the scheduler: the rate is divided by 10 from epoch "
                 "scheduler_step_size - 1 on (counting from 0), as the reference does under "
                 "current PyTorch")

        # ablations
        add("--v1_multiscale", action="store_true", help="if set, uses monodepth v1 multiscale")
        add("--avg_reprojection", action="store_true", help="if set, uses average reprojection loss")
        add("--disable_automasking", action="store_true", help="if set, doesn't do auto-masking")
        add("--predictive_mask", action="store_true",
            help="if set, uses a predictive masking scheme as in Zhou et al")
        add("--no_ssim", action="store_true", help="if set, disables ssim in the loss")
        add("--weights_init", type=str, default="pretrained",
            help="the encoders' start: pretrained (torchvision's ImageNet weights, converted by "
                 "tools/convert_weights.py), paddle_pretrained (paddle.vision's ImageNet weights), "
                 "scratch, or the path of a ResNet .pdparams, torchvision .pth or the published "
                 "Paddle port's .h5 file (extension optional)")
        add("--pose_model_input", type=str, default="pairs", choices=["pairs", "all"],
            help="how many images the pose network gets")
        add("--pose_model_type", type=str, default="separate_resnet",
            choices=["posecnn", "separate_resnet", "shared"], help="normal or shared")

        # system
        add("--no_cuda", action="store_true", help="if set disables the GPU (same as --device cpu)")
        add("--device", type=str, default="auto", choices=["auto", "cpu", "gpu"],
            help="where to run: auto picks a GPU when Paddle has one")
        add("--num_gpus", type=int, default=1,
            help="the published Paddle port's flag: several GPUs run under "
                 "python -m paddle.distributed.launch --gpus 0,1,... train.py (see README)")
        add("--freeze_bn", action="store_true",
            help="train with every network in eval mode, as the published Paddle port does: batch "
                 "norm normalises with its running statistics and does not update them")
        add("--seed", type=int, default=None,
            help="seed for weights, sampling and augmentation (makes runs reproducible)")
        add("--num_workers", type=int, default=available_cores(),
            help="number of dataloader workers (default: this machine's cores, {})".format(available_cores()))
        add("--amp", action="store_true",
            help="mixed precision on the GPU: the networks in float16, geometry and losses in float32")

        # loading
        add("--load_weights_folder", type=str, help="name of model to load")
        add("--models_to_load", nargs="+", type=str,
            default=["encoder", "depth", "pose_encoder", "pose"], help="models to load")

        # logging
        add("--log_frequency", type=int, default=250, help="number of batches between each log")
        add("--visualdl_frequency", type=int, default=None,
            help="number of batches between VisualDL logs (images, losses); by default they follow "
                 "the console log (--log_frequency)")
        add("--save_frequency", type=int, default=1, help="number of epochs between each save")
        add("--checkpoint_minutes", type=float, default=10,
            help="minutes between checkpoints of an unfinished epoch (models/last, for --resume)")
        add("--resume", action="store_true",
            help="continue the run <log_dir>/<model_name> where it stopped, from its models/last")
        add("--overwrite", action="store_true",
            help="start <log_dir>/<model_name> again although it holds a run: deletes its models and logs")

        # evaluation
        add("--eval_stereo", action="store_true", help="if set evaluates in stereo mode")
        add("--eval_mono", action="store_true", help="if set evaluates in mono mode")
        add("--disable_median_scaling", action="store_true",
            help="if set disables median scaling in evaluation")
        add("--pred_depth_scale_factor", type=float, default=1,
            help="if set multiplies predictions by this number")
        add("--camera_height", type=float, metavar="METRES",
            help="evaluation: scale each image's predicted depth so that the road, found as a plane in the "
                 "lower image, lies this far below the camera (KITTI: 1.65), instead of --eval_mono's "
                 "ground-truth median")
        add("--ext_disp_to_eval", type=str, help="optional path to a .npy disparities file to evaluate")
        add("--eval_split", type=str, default="eigen",
            help="which split to run eval on: {} (synthetic: the drive of tools/make_synthetic_kitti.py, "
                 "scored like eigen), or the path of a folder holding test_files.txt and "
                 "gt_depths.npz".format(", ".join(EVAL_SPLITS)))
        add("--save_pred_disps", action="store_true", help="if set saves predicted disparities")
        add("--no_eval", action="store_true", help="if set disables evaluation")
        add("--eval_eigen_to_benchmark", action="store_true",
            help="if set assume we are loading eigen results from npy but "
                 "we want to evaluate using the new benchmark.")
        add("--eval_out_dir", type=str, help="if set will output the disparities to this folder")
        add("--post_process", action="store_true",
            help="if set will perform the flipping post processing from the original monodepth paper")
        add("--exported", nargs="?", const="",
            help="predict with a model written by export_model.py (prefix PATH; without PATH: "
                 "LOAD_WEIGHTS_FOLDER/inference/depth, exported there when absent or older than the "
                 "weights), run by inference.py: the fastest choice on a CPU")
        add("--backend", choices=["auto", "openvino", "onnxruntime", "paddle"],
            help="with --exported: the backend that runs it (default auto: the fastest installed)")
        add("--precision", choices=["fp32", "bf16", "int8"],
            help="with --exported: fp32 (default), bf16 (CPUs with bfloat16 instructions) or int8 "
                 "(OpenVINO, a model exported with export_model.py --precision int8)")

    def parse(self, args=None):
        """Parse and check the options; inconsistent ones stop here with a usage error."""
        opt = self.parser.parse_args(args)
        try:
            check_options(opt)
        except ValueError as e:
            self.parser.error(str(e))
        opt.explicit_flags = self.explicit_flags(args, vars(opt))
        self.options = opt
        return opt

    def explicit_flags(self, args, names):
        """Which of the options `names` the command line gives (not left at their
        defaults): prediction takes the others from the weights."""
        unset = object()
        probe = argparse.Namespace(**dict.fromkeys(names, unset))  # argparse fills in no default then
        return sorted(k for k, v in vars(self.parser.parse_args(args, probe)).items() if v is not unset)


def flag_given(opt, name):
    """Whether --name was given on the command line of `opt` (MonodepthOptions.parse)."""
    return name in getattr(opt, "explicit_flags", ())


# (flag, smallest allowed value, whether it is allowed itself) of the numeric options
NUMERIC_RANGES = [
    ("batch_size", 1, True), ("num_epochs", 1, True), ("scheduler_step_size", 1, True),
    ("log_frequency", 1, True), ("save_frequency", 1, True), ("num_workers", 0, True),
    ("seed", 0, True), ("learning_rate", 0, False), ("disparity_smoothness", 0, True),
    ("checkpoint_minutes", 0, True), ("min_depth", 0, False), ("max_depth", 0, False),
    ("pred_depth_scale_factor", 0, False), ("num_gpus", 1, True), ("visualdl_frequency", 1, True),
    ("camera_height", 0, False),
]


# The options that decide the networks, the data and the optimisation: a resumed run must keep them.
RUN_OPTIONS = [
    "split", "dataset", "png", "height", "width", "num_layers", "scales", "frame_ids", "use_stereo",
    "min_depth", "max_depth", "disparity_smoothness", "batch_size", "learning_rate", "scheduler_step_size",
    "seed", "v1_multiscale", "avg_reprojection", "disable_automasking", "predictive_mask", "no_ssim",
    "pose_model_input", "pose_model_type", "amp", "backbone", "resize", "freeze_bn", "intrinsics",
]


def changed_options(opt, saved):
    """["--height 64 (now 96)", ...]: the RUN_OPTIONS whose values differ from `saved`
    (the options of a run, as in its opt.json, whose frame_ids include "s" for stereo)."""
    changed = []
    for name in RUN_OPTIONS:
        value = getattr(opt, name)
        if name not in saved or value is None:
            continue
        before = saved[name]
        if name == "frame_ids":
            before = [f for f in before if f != "s"]
        if before != value:
            changed.append("--{} {} (now {})".format(name, before, value))
    return changed


def check_options(opt):
    """Raise ValueError naming the flag for values and combinations the model cannot run."""
    for name, low, inclusive in NUMERIC_RANGES:
        value = getattr(opt, name)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise ValueError("--{} must be {} {}, got {}".format(name, ">=" if inclusive else ">", low, value))
    parts = opt.model_name.replace("\\", "/").split("/")
    if not opt.model_name.strip() or os.path.isabs(opt.model_name) or ".." in parts or os.path.normpath(
            opt.model_name) == ".":
        raise ValueError("--model_name {!r} must name a folder inside --log_dir (not empty, not an absolute path, "
                         "no '..'): the run writes <log_dir>/<model_name>, and --overwrite deletes there".format(
                             opt.model_name))
    if opt.resume and opt.overwrite:
        raise ValueError("--resume continues a run, --overwrite starts it again: give one of them")
    if opt.seed is not None and opt.seed >= 2 ** 32:
        raise ValueError("--seed must be below 2**32, got {}".format(opt.seed))
    for name in ("height", "width"):
        value = getattr(opt, name)
        if value <= 0 or value % 32:
            raise ValueError("--{} must be a positive multiple of 32, got {}".format(name, value))
    if not opt.frame_ids or opt.frame_ids[0] != 0:
        raise ValueError("--frame_ids must start with 0, got {}".format(opt.frame_ids))
    if len(set(opt.frame_ids)) != len(opt.frame_ids):
        raise ValueError("--frame_ids has repeated ids: {}".format(opt.frame_ids))
    if not opt.use_stereo and opt.frame_ids == [0]:
        raise ValueError("--frame_ids 0 alone needs --use_stereo: there is no other view to warp")
    if opt.predictive_mask and not opt.disable_automasking:
        raise ValueError("--predictive_mask needs --disable_automasking")
    bad_scales = [s for s in opt.scales if s not in range(4)]
    if bad_scales or 0 not in opt.scales:
        raise ValueError("--scales must be among 0 1 2 3 and include 0 (the full-resolution "
                         "prediction), got {}".format(opt.scales))
    if opt.intrinsics is not None:
        if opt.dataset != "folder":
            raise ValueError("--intrinsics is for --dataset folder (--dataset {} has its own)".format(opt.dataset))
        check_intrinsics(opt.intrinsics, "--intrinsics")
    eval_split(opt.eval_split, opt.dataset)  # a known split or a folder
    if opt.min_depth <= 0 or opt.max_depth <= opt.min_depth:
        raise ValueError("need 0 < --min_depth < --max_depth, got {} and {}".format(
            opt.min_depth, opt.max_depth))
