"""The Monodepth2 training step (networks, warping, losses) and the training loop around it."""
import json
import os
import pickle
import random
import time

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import network
from datasets import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset, SeededBatchSampler
from datasets.mono_dataset import MissingFilesError
from layers import (SSIM, BackprojectDepth, Project3D, compute_depth_errors, disp_to_depth, get_smooth_loss,
                    transformation_from_parameters, warp)
from utils import load_weights, normalize_image, readlines, save_folder_atomic, sec_to_hm_str

file_dir = os.path.dirname(os.path.abspath(__file__))
SPLITS_DIR = os.path.join(file_dir, "splits")


def frame_ids_of(opt):
    """The frames a sample holds: opt.frame_ids, plus "s" (the other camera) for stereo."""
    return list(opt.frame_ids) + (["s"] if opt.use_stereo else [])


def uses_pose_net(opt):
    return not (opt.use_stereo and list(opt.frame_ids) == [0])


def encoder_init(opt):
    """--weights_init, or scratch when every encoder the run builds is about to be replaced
    from --load_weights_folder (or --resume): fine-tuning needs no ImageNet file."""
    encoders = ["encoder"] + (["pose_encoder"] if uses_pose_net(opt) and
                              opt.pose_model_type == "separate_resnet" else [])
    if opt.resume:
        return "scratch"
    folder = opt.load_weights_folder
    if folder and all(name in opt.models_to_load and
                      os.path.isfile(os.path.join(os.path.expanduser(folder), name + ".pdparams"))
                      for name in encoders):
        return "scratch"
    return opt.weights_init


def build_models(opt):
    """The networks the options ask for, keyed as the reference's checkpoint files."""
    pretrained = encoder_init(opt)
    num_pose_frames = 2 if opt.pose_model_input == "pairs" else len(opt.frame_ids)
    models = {"encoder": network.ResnetEncoder(opt.num_layers, pretrained)}
    num_ch_enc = models["encoder"].num_ch_enc
    models["depth"] = network.DepthDecoder(num_ch_enc, opt.scales)
    if uses_pose_net(opt):
        if opt.pose_model_type == "separate_resnet":
            models["pose_encoder"] = network.ResnetEncoder(
                opt.num_layers, pretrained, num_input_images=num_pose_frames)
            # The reference always predicts 2 transforms here; with more than three frames
            # on "all" that is too few, so those runs get one per other frame instead.
            num_predicted = 2 if num_pose_frames <= 3 else num_pose_frames - 1
            models["pose"] = network.PoseDecoder(models["pose_encoder"].num_ch_enc, 1, num_predicted)
        elif opt.pose_model_type == "shared":
            models["pose"] = network.PoseDecoder(num_ch_enc, num_pose_frames)
        else:
            models["pose"] = network.PoseCNN(num_pose_frames)
    if opt.predictive_mask:
        # one mask per source frame, from a decoder shaped like the depth decoder
        models["predictive_mask"] = network.DepthDecoder(
            num_ch_enc, opt.scales, num_output_channels=len(frame_ids_of(opt)) - 1)
    return models


class MonodepthModel(nn.Layer):
    """All networks plus the warping and losses of one training step.

    `forward(inputs)` takes a batch keyed as the reference's (("color", f, s),
    ("color_aug", f, s), ("K", s), ("inv_K", s), "stereo_T") and returns
    (outputs, losses) like the reference's `process_batch`, so it runs without any
    dataset and can be wrapped by paddle.DataParallel as one layer."""

    def __init__(self, opt, tie_break_noise=True):
        super().__init__()
        self.opt = opt
        self.frame_ids = frame_ids_of(opt)
        self.use_pose_net = uses_pose_net(opt)
        self.num_pose_frames = 2 if opt.pose_model_input == "pairs" else len(opt.frame_ids)
        self.tie_break_noise = tie_break_noise
        self.replay_choices = None  # see minimum_choice
        self.models = nn.LayerDict(build_models(opt))
        self.ssim = SSIM()
        # with full-resolution multi-scale every scale is warped at scale 0
        source_scales = opt.scales if opt.v1_multiscale else [0]
        self.backproject_depth = nn.LayerDict({str(s): BackprojectDepth(
            opt.height // 2 ** s, opt.width // 2 ** s) for s in source_scales})
        self.project_3d = {s: Project3D(opt.height // 2 ** s, opt.width // 2 ** s)
                           for s in source_scales}

    def forward(self, inputs):
        # with --amp the networks may run in float16; geometry and losses stay in float32
        with paddle.amp.auto_cast(enable=self.opt.amp):
            outputs = self.run_networks(inputs)
        outputs = {k: as_float32(v) for k, v in outputs.items()}
        if self.use_pose_net:
            self.pose_transforms(outputs)
        self.generate_images_pred(inputs, outputs)
        return outputs, self.compute_losses(inputs, outputs)

    def run_networks(self, inputs):
        """Disparities, predictive masks and the pose network's raw motions."""
        opt, models = self.opt, self.models
        if opt.pose_model_type == "shared":
            # every frame goes through the depth encoder; the pose decoder reuses its features
            all_features = models["encoder"](
                paddle.concat([inputs[("color_aug", f, 0)] for f in self.frame_ids]))
            per_frame = [paddle.split(f, len(self.frame_ids)) for f in all_features]
            features = {f: [level[i] for level in per_frame] for i, f in enumerate(self.frame_ids)}
            outputs = models["depth"](features[0])
        else:
            features = models["encoder"](inputs[("color_aug", 0, 0)])
            outputs = models["depth"](features)
        if opt.predictive_mask:
            outputs["predictive_mask"] = models["predictive_mask"](
                features[0] if opt.pose_model_type == "shared" else features)
        if self.use_pose_net:
            outputs.update(self.predict_poses(inputs, features))
        return outputs

    def predict_poses(self, inputs, features):
        """Axis-angle and translation from frame 0 to every temporal frame."""
        opt, outputs = self.opt, {}
        temporal = [f for f in self.frame_ids[1:] if f != "s"]
        if self.num_pose_frames == 2:
            if opt.pose_model_type == "shared":
                pose_feats = features
            else:
                pose_feats = {f: inputs[("color_aug", f, 0)] for f in self.frame_ids}
            for f in temporal:
                # pairs always go in temporal order; the motion is inverted for past frames
                pair = [pose_feats[f], pose_feats[0]] if f < 0 else [pose_feats[0], pose_feats[f]]
                if opt.pose_model_type == "separate_resnet":
                    pair = [self.models["pose_encoder"](paddle.concat(pair, 1))]
                elif opt.pose_model_type == "posecnn":
                    pair = paddle.concat(pair, 1)
                outputs[("axisangle", 0, f)], outputs[("translation", 0, f)] = self.models["pose"](pair)
        else:
            if opt.pose_model_type == "shared":
                pose_inputs = [features[f] for f in [0] + temporal]
            else:
                pose_inputs = paddle.concat([inputs[("color_aug", f, 0)] for f in [0] + temporal], 1)
                if opt.pose_model_type == "separate_resnet":
                    pose_inputs = [self.models["pose_encoder"](pose_inputs)]
            axisangle, translation = self.models["pose"](pose_inputs)
            for f in temporal:
                outputs[("axisangle", 0, f)], outputs[("translation", 0, f)] = axisangle, translation
        return outputs

    def pose_transforms(self, outputs):
        """outputs[("cam_T_cam", 0, f)]: the 4x4 transform of every temporal frame."""
        temporal = [f for f in self.frame_ids[1:] if f != "s"]
        for i, f in enumerate(temporal):
            axisangle, translation = outputs[("axisangle", 0, f)], outputs[("translation", 0, f)]
            if self.num_pose_frames == 2:  # one prediction per pair, inverted for past frames
                T = transformation_from_parameters(axisangle[:, 0], translation[:, 0], invert=f < 0)
            else:  # one prediction per frame from a single pass
                T = transformation_from_parameters(axisangle[:, i], translation[:, i])
            outputs[("cam_T_cam", 0, f)] = T

    def generate_images_pred(self, inputs, outputs):
        """Warp every source frame into frame 0 at every scale (outputs ("color", f, s))."""
        opt = self.opt
        for scale in opt.scales:
            disp = outputs[("disp", scale)]
            if opt.v1_multiscale:
                source_scale = scale
            else:
                disp = F.interpolate(disp, [opt.height, opt.width], mode="bilinear", align_corners=False)
                source_scale = 0
            _, depth = disp_to_depth(disp, opt.min_depth, opt.max_depth)
            outputs[("depth", 0, scale)] = depth
            cam_points = self.backproject_depth[str(source_scale)](depth, inputs[("inv_K", source_scale)])
            for f in self.frame_ids[1:]:
                if f == "s":
                    T = inputs["stereo_T"]
                elif opt.pose_model_type == "posecnn":
                    # translation rescaled by the mean inverse depth (Wang et al. 2018); like the
                    # reference this takes the first predicted motion, inverted for past frames
                    mean_inv_depth = (1 / depth).mean(axis=[2, 3], keepdim=True)
                    T = transformation_from_parameters(
                        outputs[("axisangle", 0, f)][:, 0],
                        outputs[("translation", 0, f)][:, 0] * mean_inv_depth[:, 0], f < 0)
                else:
                    T = outputs[("cam_T_cam", 0, f)]
                grid = self.project_3d[source_scale](cam_points, inputs[("K", source_scale)], T)
                outputs[("sample", f, scale)] = grid
                outputs[("color", f, scale)] = warp(inputs[("color", f, source_scale)], grid)

    def reprojection_loss(self, pred, target, target_stats=None):
        """Per-pixel photometric error: 0.85 SSIM + 0.15 L1 (L1 alone with --no_ssim).
        `target_stats` are the target's SSIM statistics, if already computed."""
        l1 = paddle.abs(target - pred).mean(1, keepdim=True)
        if self.opt.no_ssim:
            return l1
        ssim = self.ssim(pred, target if target_stats is None else target_stats)
        return 0.85 * ssim.mean(1, keepdim=True) + 0.15 * l1

    def minimum_choice(self, combined, scale):
        """Index of the smallest photometric error per pixel (N x 1 x H x W). When
        `replay_choices` ({scale: N x H x W indices}) is set, those decide instead: the
        float64 rerun of a step takes the float32 run's decisions, so that both compute
        the same function and only round-off tells them apart."""
        if self.replay_choices is None:
            return paddle.argmin(combined, axis=1, keepdim=True)
        chosen = np.asarray(self.replay_choices[scale])
        if list(chosen.shape) != [combined.shape[0]] + combined.shape[2:] or chosen.min() < 0 \
                or chosen.max() >= combined.shape[1]:
            raise ValueError("replayed choices at scale {}: shape {} and values {}..{} do not fit {} "
                             "candidates of shape {}".format(scale, list(chosen.shape), chosen.min(),
                                                             chosen.max(), combined.shape[1], combined.shape))
        return paddle.to_tensor(chosen.astype(np.int64)).unsqueeze(1)

    def compute_losses(self, inputs, outputs):
        """Minimum reprojection with auto-masking plus edge-aware smoothness, per scale."""
        opt, losses, total = self.opt, {}, 0
        sources = self.frame_ids[1:]
        # per source scale (one for all scales in full-resolution multi-scale): the target,
        # its SSIM statistics and the errors of the unwarped sources, none of which
        # depend on the networks
        targets = {}
        for scale in opt.scales:
            loss = 0
            source_scale = scale if opt.v1_multiscale else 0
            if source_scale not in targets:
                target = inputs[("color", 0, source_scale)]
                stats = None if opt.no_ssim else self.ssim.target_stats(target)
                identity = None if opt.disable_automasking else paddle.concat([self.reprojection_loss(
                    inputs[("color", f, source_scale)], target, stats) for f in sources], 1)
                targets[source_scale] = target, stats, identity
            target, stats, identity = targets[source_scale]
            reprojection = paddle.concat(
                [self.reprojection_loss(outputs[("color", f, scale)], target, stats) for f in sources], 1)

            if not opt.disable_automasking:
                if opt.avg_reprojection:
                    identity = identity.mean(1, keepdim=True)
                if self.tie_break_noise:
                    identity = identity + paddle.randn(identity.shape) * 0.00001
            elif opt.predictive_mask:
                mask = outputs["predictive_mask"][("disp", scale)]
                if not opt.v1_multiscale:
                    mask = F.interpolate(mask, [opt.height, opt.width], mode="bilinear",
                                         align_corners=False)
                reprojection = reprojection * mask
                # pushes the mask towards 1: binary cross-entropy against ones, log clamped
                # at -100 like PyTorch's BCELoss
                loss += 0.2 * -paddle.clip(paddle.log(mask), min=-100).mean()

            if opt.avg_reprojection:
                reprojection = reprojection.mean(1, keepdim=True)
            combined = reprojection if opt.disable_automasking else paddle.concat([identity, reprojection], 1)
            if combined.shape[1] == 1:
                to_optimise = combined
            else:
                # gather at the argmin so that ties pass the gradient to one input, as torch.min does
                idxs = self.minimum_choice(combined, scale)
                to_optimise = paddle.take_along_axis(combined, idxs, axis=1)
                if not opt.disable_automasking:
                    outputs["identity_selection/{}".format(scale)] = (
                        idxs[:, 0] > identity.shape[1] - 1).astype("float32")
            loss += to_optimise.mean()

            disp = outputs[("disp", scale)]
            norm_disp = disp / (disp.mean(axis=[2, 3], keepdim=True) + 1e-7)
            loss += opt.disparity_smoothness * get_smooth_loss(norm_disp, inputs[("color", 0, scale)]) / (2 ** scale)
            total += loss
            losses["loss/{}".format(scale)] = loss
        losses["loss"] = total / len(opt.scales)
        return losses


def as_float32(value):
    """A network output (a tensor or a dict of them) in float32 if it is in half precision."""
    if isinstance(value, dict):
        return {k: as_float32(v) for k, v in value.items()}
    return value.astype("float32") if value.dtype in (paddle.float16, paddle.bfloat16) else value


def pick_device(opt):
    """"gpu" when Paddle has one and the options allow it, else "cpu"."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if opt.no_cuda or opt.device == "cpu":
        return "cpu"
    if opt.device == "gpu" and not has_gpu:
        raise SystemExit("--device gpu: this Paddle build sees no GPU (install paddlepaddle-gpu "
                         "or use --device cpu)")
    return "gpu" if has_gpu else "cpu"


def lr_factor(epoch, step_size):
    """Learning-rate multiplier of `epoch` (from 0).

    The reference steps its StepLR at the start of every epoch, which under PyTorch >= 1.1
    divides the rate by 10 from epoch step_size - 1 on: with the default 15, the first 14
    epochs train at the full rate (the paper says 15)."""
    return 0.1 ** ((epoch + 1) // step_size)


class Trainer:
    """Training loop: data, optimisation, validation, logging, checkpoints and resuming.

    Runs as one process or as one of several under paddle.distributed.launch: then each
    process takes batch_size / world_size samples of every batch, gradients are averaged
    by paddle.DataParallel, and only rank 0 logs and writes checkpoints."""

    def __init__(self, options):
        self.opt = opt = options
        self.log_path = os.path.join(opt.log_dir, opt.model_name)
        self.models_dir = os.path.join(self.log_path, "models")
        self.device = pick_device(opt)
        paddle.set_device(self.device)
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self.is_main = self.rank == 0
        if opt.batch_size % self.world_size:
            raise SystemExit("--batch_size {} must be divisible by the {} processes".format(
                opt.batch_size, self.world_size))
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
        if opt.num_gpus > 1 and opt.num_gpus != self.world_size:
            raise SystemExit(
                "--num_gpus {0}: start one process per GPU with python -m paddle.distributed.launch "
                "--gpus {1} train.py ... (--batch_size is the batch of all GPUs together: the "
                "published port's --batch_size B --num_gpus {0} is --batch_size {0}B here)".format(
                    opt.num_gpus, ",".join(map(str, range(opt.num_gpus)))))
        state = self.resume_state() if opt.resume else None
        self.split_file = self.find_split()  # before building the networks: fail early
        if opt.seed is None:  # drawn once and recorded, so that a resumed run continues the same way
            opt.seed = state["seed"] if state else int(np.random.SeedSequence().entropy % 2 ** 31)
            if self.world_size > 1:  # every process must shuffle alike: rank 0's draw counts
                seed = paddle.to_tensor([opt.seed], dtype="int64")
                paddle.distributed.broadcast(seed, src=0)
                opt.seed = int(seed)
        random.seed(opt.seed)
        np.random.seed(opt.seed)
        paddle.seed(opt.seed)

        try:
            self.model = MonodepthModel(opt)
        except (ValueError, FileNotFoundError) as e:  # e.g. an unsupported pose encoder depth, no ImageNet file
            raise SystemExit(str(e))
        self.models = self.model.models
        self.frame_ids = self.model.frame_ids
        self.scheduler = paddle.optimizer.lr.LambdaDecay(
            opt.learning_rate, lambda epoch: lr_factor(epoch, opt.scheduler_step_size))
        self.optimizer = paddle.optimizer.Adam(
            self.scheduler, parameters=[p for p in self.model.parameters() if not p.stop_gradient])
        # float16 gradients need loss scaling; on the CPU --amp changes nothing
        self.scaler = paddle.amp.GradScaler() if opt.amp and self.device == "gpu" else None
        self.epoch, self.step, self.start_batch, self.best_val_loss = 0, 0, 0, float("inf")
        if state:
            self.load_model(os.path.join(self.models_dir, "last"), list(self.models.keys()))
            self.epoch, self.step, self.start_batch = state["epoch"], state["step"], state["batch"]
            self.best_val_loss = state["best_val_loss"]
            with open(os.path.join(self.models_dir, "last", "rng_state.pkl"), "rb") as f:
                paddle.set_rng_state(pickle.load(f))
        elif opt.load_weights_folder is not None:
            self.load_model(os.path.expanduser(opt.load_weights_folder), opt.models_to_load)
        self.step_model = paddle.DataParallel(self.model) if self.world_size > 1 else self.model

        dataset_class = {"kitti": KITTIRAWDataset, "kitti_odom": KITTIOdomDataset,
                         "kitti_depth": KITTIDepthDataset}.get(opt.dataset)
        if dataset_class is None:
            raise SystemExit("--dataset {} cannot be used for training".format(opt.dataset))
        split_file = self.split_file
        img_ext = ".png" if opt.png else ".jpg"
        datasets = []
        for part in ("train", "val"):
            try:
                datasets.append(dataset_class(
                    os.path.expanduser(opt.data_path), readlines(split_file.format(part)), opt.height,
                    opt.width, self.frame_ids, 4, is_train=part == "train", img_ext=img_ext, seed=opt.seed,
                    resize=opt.resize))
            except MissingFilesError as e:  # the data is elsewhere, or not all of it is there
                raise SystemExit("--data_path {} lacks frames of --split {}: {}{}".format(
                    opt.data_path, opt.split, e.summary, "" if opt.png else " (PNG images need --png)"))
            except (FileNotFoundError, ValueError) as e:
                raise SystemExit("{}: {}".format(split_file.format(part), e))
        self.train_dataset, self.val_dataset = datasets
        per_process = opt.batch_size // self.world_size
        self.train_sampler = SeededBatchSampler(len(self.train_dataset), per_process, True, True, opt.seed,
                                                self.world_size, self.rank)
        self.val_sampler = SeededBatchSampler(len(self.val_dataset), per_process, False, False, opt.seed,
                                              self.world_size, self.rank)
        if len(self.train_sampler) == 0:
            raise SystemExit("--batch_size {} is larger than the {} training samples".format(
                opt.batch_size, len(self.train_dataset)))
        self.train_loader = paddle.io.DataLoader(self.train_dataset, batch_sampler=self.train_sampler,
                                                 num_workers=opt.num_workers)
        self.val_loader = paddle.io.DataLoader(self.val_dataset, batch_sampler=self.val_sampler,
                                               num_workers=0)
        self.num_total_steps = len(self.train_sampler) * opt.num_epochs
        self.val_iter = None
        self.writers = {}
        if self.is_main:
            from visualdl import LogWriter  # imported here: only the logging process needs it
            self.writers = {mode: LogWriter(logdir=os.path.join(self.log_path, mode)) for mode in ("train", "val")}
            print("Training model named:\n  ", opt.model_name)
            print("Models and logs are saved to:\n  ", opt.log_dir)
            print("Training is using:\n  ", self.device, "x {}".format(self.world_size) if self.world_size > 1 else "")
            print("Using split:\n  ", opt.split)
            print("There are {:d} training items and {:d} validation items\n".format(
                len(self.train_dataset), len(self.val_dataset)))
            if state:
                print("Resuming from {} at epoch {}, batch {}".format(
                    os.path.join(self.models_dir, "last"), self.epoch, self.start_batch))
            self.save_opts()

    def find_split(self):
        """'<split folder>/{}_files.txt' of --split; missing files or --data_path stop here."""
        opt = self.opt
        split_dir = opt.split if os.path.isdir(opt.split) else os.path.join(SPLITS_DIR, opt.split)
        split_file = os.path.join(split_dir, "{}_files.txt")
        for part in ("train", "val"):
            if not os.path.isfile(split_file.format(part)):
                raise SystemExit("--split {}: split file {} not found; python tools/get_splits.py fetches "
                                 "the standard splits, or give --split a folder holding train_files.txt "
                                 "and val_files.txt".format(opt.split, split_file.format(part)))
        if not os.path.isdir(os.path.expanduser(opt.data_path)):
            raise SystemExit("--data_path {}: no such folder (the KITTI raw data: see README, KITTI "
                             "workflow; python tools/make_synthetic_kitti.py --out DIR writes a synthetic "
                             "drive to try the commands on)".format(opt.data_path))
        return split_file

    def train(self):
        self.start_time = self.last_save = time.time()
        self.first_step = self.step
        for self.epoch in range(self.epoch, self.opt.num_epochs):
            self.scheduler.step(self.epoch)  # the rate of this epoch, also after resuming
            self.run_epoch()
            val_loss = self.validate()
            if self.is_main:
                self.writers["val"].add_scalar("loss_epoch", val_loss, self.step)
                print("epoch {:>3} | validation loss {:.5f}".format(self.epoch, val_loss))
                if (self.epoch + 1) % self.opt.save_frequency == 0:
                    self.save_model("weights_{}".format(self.epoch))
                if val_loss < self.best_val_loss:
                    self.best_val_loss = val_loss
                    self.save_model("best")
                    self.link_best()
            self.start_batch = 0
            self.save_last(self.epoch + 1, 0)

    def run_epoch(self):
        if self.is_main:
            print("Training")
        self.set_train()
        self.train_sampler.set_epoch(self.epoch, self.start_batch)
        self.train_dataset.set_epoch(self.epoch)
        for batch_idx, inputs in enumerate(self.train_loader, self.start_batch):
            before_op_time = time.time()
            outputs, losses = self.step_model(inputs)
            loss = losses["loss"]
            if not self.all_finite(loss):
                # the weights may already be broken (an update from an infinite gradient), so
                # the last checkpoint is kept as it is
                raise SystemExit("the loss is not finite at epoch {}, batch {} (step {}); the last "
                                 "checkpoint is {}".format(self.epoch, batch_idx, self.step,
                                                           os.path.join(self.models_dir, "last")))
            self.optimizer.clear_grad()
            if self.scaler:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            duration = time.time() - before_op_time

            early_phase = batch_idx % self.opt.log_frequency == 0 and self.step < 2000
            late_phase = self.step % 2000 == 0
            log_now = early_phase or late_phase
            if log_now and self.is_main:
                self.log_time(batch_idx, duration, float(loss))
            if self.opt.visualdl_frequency is not None:
                log_now = self.step % self.opt.visualdl_frequency == 0
            if log_now and self.is_main:
                if "depth_gt" in inputs:
                    self.compute_depth_losses(inputs, outputs, losses)
                self.log("train", inputs, outputs, losses)
                self.val()
            self.step += 1
            if time.time() - self.last_save > 60 * self.opt.checkpoint_minutes:
                self.save_last(self.epoch, batch_idx + 1)

    def set_train(self):
        """Training mode, or with --freeze_bn eval mode (as the published port fine-tunes):
        batch norm then normalises with its running statistics and leaves them as they are."""
        if self.opt.freeze_bn:
            self.model.eval()
        else:
            self.model.train()

    def all_finite(self, loss):
        """Whether the loss is finite in every process (all stop together otherwise)."""
        finite = paddle.isfinite(loss).astype("int32").reshape([1])
        if self.world_size > 1:
            paddle.distributed.all_reduce(finite, op=paddle.distributed.ReduceOp.MIN)
        return bool(finite)

    def validate(self):
        """Mean loss over the whole validation split (all processes), for choosing models/best."""
        self.model.eval()
        total, count = 0.0, 0
        with paddle.no_grad():
            for inputs in self.val_loader:
                total += float(self.model(inputs)[1]["loss"]) * inputs[("color", 0, 0)].shape[0]
                count += inputs[("color", 0, 0)].shape[0]
        if self.world_size > 1:
            sums = paddle.to_tensor([total, float(count)], dtype="float64")
            paddle.distributed.all_reduce(sums)
            total, count = (float(v) for v in sums.numpy())
        self.set_train()
        return total / max(count, 1)

    def val(self):
        """Log the losses of one validation batch, as the reference does at every log step."""
        self.model.eval()
        if self.val_iter is None:
            self.val_iter = iter(self.val_loader)
        try:
            inputs = next(self.val_iter)
        except StopIteration:
            self.val_iter = iter(self.val_loader)
            inputs = next(self.val_iter)
        with paddle.no_grad():
            outputs, losses = self.model(inputs)
            if "depth_gt" in inputs:
                self.compute_depth_losses(inputs, outputs, losses)
            self.log("val", inputs, outputs, losses)
        self.set_train()

    def compute_depth_losses(self, inputs, outputs, losses):
        """Depth metrics of the batch against its ground truth (median-scaled, Garg crop):
        an indication of progress only, as in the reference."""
        gt = inputs["depth_gt"]
        h, w = gt.shape[2:]
        pred = F.interpolate(outputs[("depth", 0, 0)].detach(), [h, w], mode="bilinear", align_corners=False)
        pred = paddle.clip(pred, 1e-3, 80).numpy()
        gt = gt.numpy()
        crop = np.zeros_like(gt, dtype=bool)
        crop[:, :, int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
        mask = (gt > 0) & crop
        if not mask.any():
            return
        gt, pred = gt[mask], pred[mask]
        pred = np.clip(pred * np.median(gt) / np.median(pred), 1e-3, 80)
        for name, value in zip(DEPTH_METRIC_NAMES, compute_depth_errors(gt, pred)):
            losses[name] = value

    def log_time(self, batch_idx, duration, loss):
        """One progress line, as the reference prints it."""
        samples_per_sec = self.opt.batch_size / max(duration, 1e-9)
        time_sofar = time.time() - self.start_time
        done = self.step - self.first_step
        left = (self.num_total_steps - self.step) * time_sofar / done if done > 0 else 0
        print("epoch {:>3} | batch {:>6} | examples/s: {:5.1f} | loss: {:.5f} | time elapsed: {} | "
              "time left: {}".format(self.epoch, batch_idx, samples_per_sec, loss,
                                     sec_to_hm_str(time_sofar), sec_to_hm_str(left)))

    def log(self, mode, inputs, outputs, losses):
        """Losses, metrics and up to four examples' images to VisualDL."""
        writer = self.writers[mode]
        for name, value in losses.items():
            writer.add_scalar(name, float(value), self.step)
        for j in range(min(4, inputs[("color", 0, 0)].shape[0])):
            for s in self.opt.scales:
                for f in self.frame_ids:
                    writer.add_image("color_{}_{}/{}".format(f, s, j), to_hwc(inputs[("color", f, s)][j]), self.step)
                    if s == 0 and f != 0:
                        writer.add_image("color_pred_{}_{}/{}".format(f, s, j),
                                         to_hwc(outputs[("color", f, s)][j]), self.step)
                writer.add_image("disp_{}/{}".format(s, j), to_hwc(normalize_image(outputs[("disp", s)][j])),
                                 self.step)
                if self.opt.predictive_mask:
                    for k, f in enumerate(self.frame_ids[1:]):
                        writer.add_image("predictive_mask_{}_{}/{}".format(f, s, j),
                                         to_hwc(outputs["predictive_mask"][("disp", s)][j, k:k + 1]), self.step)
                elif not self.opt.disable_automasking:
                    writer.add_image("automask_{}/{}".format(s, j),
                                     to_hwc(outputs["identity_selection/{}".format(s)][j:j + 1]), self.step)

    def save_opts(self):
        os.makedirs(self.models_dir, exist_ok=True)
        with open(os.path.join(self.models_dir, "opt.json"), "w") as f:
            json.dump(dict(vars(self.opt), frame_ids=self.frame_ids), f, indent=2)

    def checkpoint_files(self):
        files = {}
        for name, layer in self.models.items():
            state = dict(layer.state_dict())
            if name == "encoder":  # what prediction needs to know about the inputs
                state.update(height=self.opt.height, width=self.opt.width, use_stereo=self.opt.use_stereo)
            files[name + ".pdparams"] = state
        files["adam.pdparams"] = self.optimizer_state()
        return files

    def optimizer_state(self):
        """Adam's state keyed by parameter paths ("depth.decoder.0.conv.conv.weight_moment1_0")
        instead of Paddle's generated names, which depend on how many layers the process
        built before: a checkpoint must load into any process."""
        paths = {p.name: name for name, p in self.model.models.named_parameters()}
        return {rename_state_key(k, paths): v for k, v in self.optimizer.state_dict().items()}

    def load_optimizer_state(self, state):
        """Adam's state saved by optimizer_state; ValueError unless it fits every trained
        parameter (Paddle itself would only notice at the first step)."""
        for name, p in self.model.models.named_parameters():
            if p.stop_gradient:
                continue
            for suffix in ADAM_SUFFIXES:
                value = state.get(name + suffix)
                if value is None or (suffix.startswith("_moment") and list(np.shape(value)) != list(p.shape)):
                    raise ValueError("no state for {} of shape {}".format(name + suffix, p.shape))
        names = {name: p.name for name, p in self.model.models.named_parameters()}
        self.optimizer.set_state_dict({rename_state_key(k, names): v for k, v in state.items()})

    def save_model(self, name):
        """Write models/<name>/ (every network and Adam) as one atomic step (rank 0 only)."""
        if self.is_main:
            save_folder_atomic(self.checkpoint_files(), os.path.join(self.models_dir, name))

    def link_best(self):
        """models/weights_best: the name the published Paddle port gives models/best."""
        link = os.path.join(self.models_dir, "weights_best")
        if not os.path.lexists(link):
            try:
                os.symlink("best", link)
            except OSError as e:  # no symbolic links on this file system
                print("models/best is not also reachable as {} ({})".format(link, e))

    def save_last(self, epoch, batch):
        """models/last: everything needed to continue at `batch` of `epoch` (--resume)."""
        if self.is_main:
            files = self.checkpoint_files()
            files["trainer.json"] = dict(epoch=epoch, batch=batch, step=self.step, seed=self.opt.seed,
                                         batch_size=self.opt.batch_size, best_val_loss=self.best_val_loss)
            # the tie-breaking noise continues as it would have
            files["rng_state.pkl"] = pickle.dumps(paddle.get_rng_state())
            save_folder_atomic(files, os.path.join(self.models_dir, "last"))
        self.last_save = time.time()

    def resume_state(self):
        """Where models/last says the interrupted run stopped; an error if there is nothing."""
        path = os.path.join(self.models_dir, "last", "trainer.json")
        if not os.path.isfile(path):
            raise SystemExit("--resume: no checkpoint at {} (a run writes it every --checkpoint_minutes "
                             "and at the end of every epoch)".format(os.path.dirname(path)))
        with open(path) as f:
            state = json.load(f)
        # the skipped batches are only the ones done if the order and batches are the same
        for flag in ("seed", "batch_size"):
            given = getattr(self.opt, flag)
            if given is not None and given != state[flag]:
                raise SystemExit("--resume: the run used --{} {}, not {}".format(flag, state[flag], given))
        return state

    def load_model(self, folder, names):
        """Load the networks `names` from `folder`, and Adam's state when it is there."""
        if not os.path.isdir(folder):
            raise SystemExit("--load_weights_folder {}: no such folder".format(folder))
        if self.is_main:
            print("loading model from folder {}".format(folder))
        for name in names:
            if name not in self.models:
                raise SystemExit("--models_to_load {}: these options build no such network (they "
                                 "build {})".format(name, ", ".join(self.models.keys())))
            try:
                load_weights(self.models[name], os.path.join(folder, name + ".pdparams"))
            except (FileNotFoundError, ValueError) as e:
                raise SystemExit("{} (choose the networks to load with --models_to_load)".format(e))
        adam_path = os.path.join(folder, "adam.pdparams")
        if os.path.isfile(adam_path):
            try:
                self.load_optimizer_state(paddle.load(adam_path))
            except ValueError as e:
                print("Adam state in {} does not fit these networks ({}); Adam starts afresh".format(adam_path, e))
        elif self.is_main:
            print("Cannot find Adam weights so Adam is randomly initialized")


ADAM_SUFFIXES = ("_moment1_0", "_moment2_0", "_beta1_pow_acc_0", "_beta2_pow_acc_0")


def rename_state_key(key, names):
    """Optimizer-state key with its parameter name replaced through `names`."""
    for suffix in ADAM_SUFFIXES:
        if key.endswith(suffix) and key[:-len(suffix)] in names:
            return names[key[:-len(suffix)]] + suffix
    return key


DEPTH_METRIC_NAMES = ["de/abs_rel", "de/sq_rel", "de/rms", "de/log_rms", "da/a1", "da/a2", "da/a3"]


def to_hwc(image):
    """A C x H x W tensor in [0, 1] as an H x W x 3 uint8 array for VisualDL."""
    array = np.clip(image.numpy().transpose(1, 2, 0), 0, 1)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return (array * 255).astype(np.uint8)
