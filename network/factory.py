"""Builds the networks, from the options when training and from a weights folder when
predicting (evaluation, export, the demo, pose evaluation all come here).

A backbone is a module in network/ registered once in BACKBONES. Its encoder file records
its kind and num_layers (checkpoint.py writes them), so a loader builds what was trained;
files that predate this (the reference's, the published Paddle port's) are ResNets whose
depth is read from their parameters."""
import json
import os

import paddle.nn as nn

from torch_weights import resnet_depth
from utils import load_weights, read_weights
from .depth_decoder import DepthDecoder
from .pose_decoder import PoseDecoder
from .resnet_encoder import ResnetEncoder

# kind -> encoder class, called as (num_layers, pretrained, num_input_images=n), with
# `num_ch_enc` (channels of its five feature maps) and `title` (its name in messages)
BACKBONES = {"resnet": ResnetEncoder}
# What an encoder file records beside its weights: the network's kind and depth, and the
# training options that decide what it outputs, and for stereo training the metres per network
# unit (stereo_scale; else the dataset's rig's). None when a file does not record it.
RECORDED = ("kind", "num_layers", "height", "width", "use_stereo", "min_depth", "max_depth", "frame_ids",
            "dataset", "resize", "stereo_scale")


def backbone(kind):
    """The encoder class registered as `kind`."""
    if kind not in BACKBONES:
        raise ValueError("unknown backbone {!r}: choose from {}".format(kind, ", ".join(sorted(BACKBONES))))
    return BACKBONES[kind]


def build_encoder(kind, num_layers, pretrained=False, num_input_images=1):
    return backbone(kind)(num_layers, pretrained, num_input_images=num_input_images)


def encoder_record(path, num_layers=None):
    """(saved state, record) of an encoder file; `record` holds RECORDED, with kind and
    num_layers inferred for older files. `num_layers`, when given (an explicit
    --num_layers), must be the file's."""
    state = read_weights(path)
    return state, state_record(state, path, num_layers)


def state_record(state, source, num_layers=None):
    """The record (see encoder_record) of the encoder state dict `state` read from `source`."""
    record = {k: state.get(k) for k in RECORDED}
    record["kind"] = record["kind"] or "resnet"
    if record["num_layers"] is None:
        plain = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        try:
            record["num_layers"] = resnet_depth(plain)
        except ValueError as e:
            if num_layers is None:
                raise ValueError("{}: {}".format(source, e)) from None
            record["num_layers"] = num_layers  # load_weights then names the mismatch
    if num_layers is not None and num_layers != record["num_layers"]:
        raise ValueError("{} holds a {}-{} encoder but --num_layers is {}: pass --num_layers {}".format(
            source, backbone(record["kind"]).title, record["num_layers"], num_layers, record["num_layers"]))
    return record


def weights_record(folder, num_layers=None):
    """The record (see RECORDED) of the weights folder `folder`: its encoder file's, with
    what that lacks taken from the run's opt.json beside the weights folders (checkpoints
    written before encoders recorded the options)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError("weights folder not found: {}".format(folder))
    _, record = encoder_record(os.path.join(folder, "encoder.pdparams"), num_layers)
    opt_path = os.path.join(os.path.dirname(os.path.abspath(folder)), "opt.json")
    if None in record.values() and os.path.isfile(opt_path):
        with open(opt_path) as f:
            saved = json.load(f)
        for key, value in record.items():
            if value is None and key in saved:
                record[key] = saved[key]
    if record["frame_ids"] is not None:  # opt.json lists the stereo frame "s" too
        record["frame_ids"] = [f for f in record["frame_ids"] if f != "s"]
    return record


class DepthNet(nn.Layer):
    """Encoder and depth decoder as one layer: image batch in, scale-0 disparity out. The
    decoder has scale 0 only: its weights are a subset of any trained decoder's."""

    def __init__(self, num_layers, kind="resnet"):
        super().__init__()
        self.encoder = build_encoder(kind, num_layers)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, scales=[0])

    def forward(self, images):
        return self.decoder(self.encoder(images))[("disp", 0)]


def load_depth_net(folder, num_layers=None):
    """(DepthNet in evaluation mode with the weights of `folder`, the folder's record)."""
    record = weights_record(folder, num_layers)
    net = DepthNet(record["num_layers"], record["kind"])
    load_weights(net.encoder, os.path.join(folder, "encoder.pdparams"))
    load_weights(net.decoder, os.path.join(folder, "depth.pdparams"))
    net.eval()
    return net, record


def load_pose_net(folder, num_layers=None):
    """(pose encoder, pose decoder) of a separate_resnet pose network on frame pairs, in
    evaluation mode, with the weights of `folder`."""
    encoder_path = os.path.join(folder, "pose_encoder.pdparams")
    _, record = encoder_record(encoder_path, num_layers)
    encoder = build_encoder(record["kind"], record["num_layers"], num_input_images=2)
    decoder = PoseDecoder(encoder.num_ch_enc, 1, 2)
    load_weights(encoder, encoder_path)
    load_weights(decoder, os.path.join(folder, "pose.pdparams"))
    encoder.eval()
    decoder.eval()
    return encoder, decoder
