"""Pose head on ResNet features: axis-angle and translation per predicted frame."""
import paddle
import paddle.nn as nn

from layers import init_like_torch
from cpu_ops import Conv2D


class PoseDecoder(nn.Layer):
    """Maps the last feature map of each of `num_input_features` encoders to
    (axisangle, translation), each B x num_frames_to_predict_for x 1 x 3."""

    def __init__(self, num_ch_enc, num_input_features, num_frames_to_predict_for=None, stride=1):
        super().__init__()
        self.num_ch_enc = num_ch_enc
        self.num_input_features = num_input_features
        if num_frames_to_predict_for is None:
            num_frames_to_predict_for = num_input_features - 1
        self.num_frames_to_predict_for = num_frames_to_predict_for

        self.convs = {
            "squeeze": Conv2D(int(self.num_ch_enc[-1]), 256, 1),
            ("pose", 0): Conv2D(num_input_features * 256, 256, 3, stride, 1),
            ("pose", 1): Conv2D(256, 256, 3, stride, 1),
            ("pose", 2): Conv2D(256, 6 * num_frames_to_predict_for, 1),
        }
        self.relu = nn.ReLU()
        self.net = nn.LayerList(list(self.convs.values()))
        init_like_torch(self)

    def forward(self, input_features):
        squeezed = [self.relu(self.convs["squeeze"](f[-1])) for f in input_features]
        out = paddle.concat(squeezed, axis=1)
        for i in range(3):
            out = self.convs[("pose", i)](out)
            if i != 2:
                out = self.relu(out)
        # the 0.01 keeps the initial motions small
        out = 0.01 * out.mean(axis=[2, 3]).reshape([-1, self.num_frames_to_predict_for, 1, 6])
        return out[..., :3], out[..., 3:]
