"""The Monodepth2 training step (networks, warping, losses) and the training loop around it."""
import json
import os
import random
import time

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import network
from datasets import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset, SeededBatchSampler
from layers import (SSIM, BackprojectDepth, Project3D, disp_to_depth, get_smooth_loss,
                    transformation_from_parameters, warp)
from utils import load_weights, readlines, save_folder_atomic, sec_to_hm_str

file_dir = os.path.dirname(os.path.abspath(__file__))


def frame_ids_of(opt):
    """The frames a sample holds: opt.frame_ids, plus "s" (the other camera) for stereo."""
    return list(opt.frame_ids) + (["s"] if opt.use_stereo else [])


def uses_pose_net(opt):
    return not (opt.use_stereo and list(opt.frame_ids) == [0])


def build_models(opt):
    """The networks the options ask for, keyed as the reference's checkpoint files."""
    pretrained = opt.weights_init == "pretrained"
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
        self.models = nn.LayerDict(build_models(opt))
        self.ssim = SSIM()
        # with full-resolution multi-scale every scale is warped at scale 0
        source_scales = opt.scales if opt.v1_multiscale else [0]
        self.backproject_depth = nn.LayerDict({str(s): BackprojectDepth(
            opt.height // 2 ** s, opt.width // 2 ** s) for s in source_scales})
        self.project_3d = {s: Project3D(opt.height // 2 ** s, opt.width // 2 ** s)
                           for s in source_scales}

    def forward(self, inputs):
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
        self.generate_images_pred(inputs, outputs)
        return outputs, self.compute_losses(inputs, outputs)

    def predict_poses(self, inputs, features):
        """Axis-angle, translation and 4x4 transform from frame 0 to every temporal frame."""
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
                axisangle, translation = self.models["pose"](pair)
                outputs[("axisangle", 0, f)] = axisangle
                outputs[("translation", 0, f)] = translation
                outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(
                    axisangle[:, 0], translation[:, 0], invert=f < 0)
        else:
            if opt.pose_model_type == "shared":
                pose_inputs = [features[f] for f in [0] + temporal]
            else:
                pose_inputs = paddle.concat([inputs[("color_aug", f, 0)] for f in [0] + temporal], 1)
                if opt.pose_model_type == "separate_resnet":
                    pose_inputs = [self.models["pose_encoder"](pose_inputs)]
            axisangle, translation = self.models["pose"](pose_inputs)
            for i, f in enumerate(temporal):
                outputs[("axisangle", 0, f)] = axisangle
                outputs[("translation", 0, f)] = translation
                outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(
                    axisangle[:, i], translation[:, i])
        return outputs

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

    def reprojection_loss(self, pred, target):
        """Per-pixel photometric error: 0.85 SSIM + 0.15 L1 (L1 alone with --no_ssim)."""
        l1 = paddle.abs(target - pred).mean(1, keepdim=True)
        if self.opt.no_ssim:
            return l1
        return 0.85 * self.ssim(pred, target).mean(1, keepdim=True) + 0.15 * l1

    def compute_losses(self, inputs, outputs):
        """Minimum reprojection with auto-masking plus edge-aware smoothness, per scale."""
        opt, losses, total = self.opt, {}, 0
        sources = self.frame_ids[1:]
        for scale in opt.scales:
            loss = 0
            source_scale = scale if opt.v1_multiscale else 0
            target = inputs[("color", 0, source_scale)]
            reprojection = paddle.concat(
                [self.reprojection_loss(outputs[("color", f, scale)], target) for f in sources], 1)

            if not opt.disable_automasking:
                identity = paddle.concat([self.reprojection_loss(
                    inputs[("color", f, source_scale)], target) for f in sources], 1)
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
                idxs = paddle.argmin(combined, axis=1, keepdim=True)
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
    """Training loop: data, optimisation, validation, logging and checkpoints."""

    def __init__(self, options):
        self.opt = opt = options
        self.log_path = os.path.join(opt.log_dir, opt.model_name)
        self.device = pick_device(opt)
        paddle.set_device(self.device)
        if opt.seed is not None:
            random.seed(opt.seed)
            np.random.seed(opt.seed)
            paddle.seed(opt.seed)
        seed = opt.seed if opt.seed is not None else int(np.random.SeedSequence().entropy % 2 ** 31)

        self.model = MonodepthModel(opt)
        self.models = self.model.models
        self.frame_ids = self.model.frame_ids
        self.scheduler = paddle.optimizer.lr.LambdaDecay(
            opt.learning_rate, lambda epoch: lr_factor(epoch, opt.scheduler_step_size))
        self.optimizer = paddle.optimizer.Adam(self.scheduler, parameters=self.model.parameters())
        if opt.load_weights_folder is not None:
            self.load_model()

        dataset_class = {"kitti": KITTIRAWDataset, "kitti_odom": KITTIOdomDataset,
                         "kitti_depth": KITTIDepthDataset}.get(opt.dataset)
        if dataset_class is None:
            raise SystemExit("--dataset {} cannot be used for training".format(opt.dataset))
        split_dir = opt.split if os.path.isdir(opt.split) else os.path.join(file_dir, "splits", opt.split)
        split_file = os.path.join(split_dir, "{}_files.txt")
        for part in ("train", "val"):
            if not os.path.isfile(split_file.format(part)):
                raise SystemExit("split file {} not found (see README: splits)".format(split_file.format(part)))
        img_ext = ".png" if opt.png else ".jpg"
        self.train_dataset, self.val_dataset = [dataset_class(
            opt.data_path, readlines(split_file.format(part)), opt.height, opt.width,
            self.frame_ids, 4, is_train=part == "train", img_ext=img_ext, seed=seed)
            for part in ("train", "val")]
        self.train_sampler = SeededBatchSampler(len(self.train_dataset), opt.batch_size, True, True, seed)
        self.val_sampler = SeededBatchSampler(len(self.val_dataset), opt.batch_size, True, True, seed + 1)
        if len(self.train_sampler) == 0:
            raise SystemExit("--batch_size {} is larger than the {} training samples".format(
                opt.batch_size, len(self.train_dataset)))
        self.train_loader = paddle.io.DataLoader(self.train_dataset, batch_sampler=self.train_sampler,
                                                 num_workers=opt.num_workers)
        self.val_loader = paddle.io.DataLoader(self.val_dataset, batch_sampler=self.val_sampler,
                                               num_workers=0)
        self.val_iter = None
        self.num_total_steps = len(self.train_sampler) * opt.num_epochs

        print("Training model named:\n  ", opt.model_name)
        print("Models and logs are saved to:\n  ", opt.log_dir)
        print("Training is using:\n  ", self.device)
        print("Using split:\n  ", opt.split)
        print("There are {:d} training items and {:d} validation items\n".format(
            len(self.train_dataset), len(self.val_dataset)))
        self.save_opts()

    def train(self):
        self.epoch, self.step = 0, 0
        self.start_time = time.time()
        for self.epoch in range(self.opt.num_epochs):
            self.run_epoch()
            if (self.epoch + 1) % self.opt.save_frequency == 0:
                self.save_model()
            self.scheduler.step()

    def run_epoch(self):
        print("Training")
        self.model.train()
        for sampler in (self.train_sampler, self.val_sampler):
            sampler.set_epoch(self.epoch)
        self.train_dataset.set_epoch(self.epoch)
        for batch_idx, inputs in enumerate(self.train_loader):
            before_op_time = time.time()
            outputs, losses = self.model(inputs)
            self.optimizer.clear_grad()
            losses["loss"].backward()
            self.optimizer.step()
            duration = time.time() - before_op_time

            early_phase = batch_idx % self.opt.log_frequency == 0 and self.step < 2000
            late_phase = self.step % 2000 == 0
            if early_phase or late_phase:
                self.log_time(batch_idx, duration, float(losses["loss"]))
                self.val()
            self.step += 1

    def val(self):
        """Loss on one validation batch."""
        self.model.eval()
        if self.val_iter is None:
            self.val_iter = iter(self.val_loader)
        try:
            inputs = next(self.val_iter)
        except StopIteration:
            self.val_iter = iter(self.val_loader)
            inputs = next(self.val_iter)
        with paddle.no_grad():
            _, losses = self.model(inputs)
        self.model.train()
        return losses

    def log_time(self, batch_idx, duration, loss):
        """One progress line, as the reference prints it."""
        samples_per_sec = self.opt.batch_size / max(duration, 1e-9)
        time_sofar = time.time() - self.start_time
        left = (self.num_total_steps / self.step - 1.0) * time_sofar if self.step > 0 else 0
        print("epoch {:>3} | batch {:>6} | examples/s: {:5.1f} | loss: {:.5f} | time elapsed: {} | "
              "time left: {}".format(self.epoch, batch_idx, samples_per_sec, loss,
                                     sec_to_hm_str(time_sofar), sec_to_hm_str(left)))

    def save_opts(self):
        models_dir = os.path.join(self.log_path, "models")
        os.makedirs(models_dir, exist_ok=True)
        with open(os.path.join(models_dir, "opt.json"), "w") as f:
            json.dump(dict(vars(self.opt), frame_ids=self.frame_ids), f, indent=2)

    def save_model(self):
        """Write models/weights_<epoch>/ (every network, Adam) as one atomic step."""
        files = {}
        for name, layer in self.models.items():
            state = dict(layer.state_dict())
            if name == "encoder":  # what prediction needs to know about the inputs
                state.update(height=self.opt.height, width=self.opt.width, use_stereo=self.opt.use_stereo)
            files[name + ".pdparams"] = state
        files["adam.pdparams"] = self.optimizer.state_dict()
        save_folder_atomic(files, os.path.join(self.log_path, "models", "weights_{}".format(self.epoch)))

    def load_model(self):
        """Load --models_to_load from --load_weights_folder, and Adam's state when it is there."""
        folder = os.path.expanduser(self.opt.load_weights_folder)
        if not os.path.isdir(folder):
            raise SystemExit("--load_weights_folder {}: no such folder".format(folder))
        print("loading model from folder {}".format(folder))
        for name in self.opt.models_to_load:
            if name not in self.models:
                raise SystemExit("--models_to_load {}: these options build no such network (they "
                                 "build {})".format(name, ", ".join(self.models.keys())))
            print("Loading {} weights...".format(name))
            try:
                load_weights(self.models[name], os.path.join(folder, name + ".pdparams"))
            except (FileNotFoundError, ValueError) as e:
                raise SystemExit("{} (choose the networks to load with --models_to_load)".format(e))
        adam_path = os.path.join(folder, "adam.pdparams")
        if os.path.isfile(adam_path):
            print("Loading Adam weights")
            self.optimizer.set_state_dict(paddle.load(adam_path))
        else:
            print("Cannot find Adam weights so Adam is randomly initialized")
