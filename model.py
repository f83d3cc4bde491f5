"""The Monodepth2 training step: the networks the options ask for, warping and losses."""
import os

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import network
from layers import (SSIM, BackprojectDepth, Project3D, disp_to_depth, get_smooth_loss, photometric_error,
                    transformation_from_parameters, warp)


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
    models = {"encoder": network.build_encoder(opt.backbone, opt.num_layers, pretrained)}
    num_ch_enc = models["encoder"].num_ch_enc
    models["depth"] = network.DepthDecoder(num_ch_enc, opt.scales)
    if uses_pose_net(opt):
        if opt.pose_model_type == "separate_resnet":
            models["pose_encoder"] = network.build_encoder(
                opt.backbone, opt.num_layers, pretrained, num_input_images=num_pose_frames)
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
        if self.opt.no_ssim:
            return paddle.abs(target - pred).mean(1, keepdim=True)
        return photometric_error(pred, target, target_stats or self.ssim.target_stats(target))

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
