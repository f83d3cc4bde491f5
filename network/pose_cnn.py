"""Stand-alone pose network on stacked frames (the `posecnn` pose model)."""
import paddle.nn as nn

from layers import init_like_torch
from cpu_ops import Conv2D


class PoseCNN(nn.Layer):
    """Seven strided convolutions on `num_input_frames` stacked RGB images, then
    (axisangle, translation) for the num_input_frames - 1 other frames."""

    def __init__(self, num_input_frames):
        super().__init__()
        self.num_input_frames = num_input_frames
        specs = [(3 * num_input_frames, 16, 7), (16, 32, 5), (32, 64, 3), (64, 128, 3),
                 (128, 256, 3), (256, 256, 3), (256, 256, 3)]
        self.convs = {i: Conv2D(cin, cout, k, 2, k // 2) for i, (cin, cout, k) in enumerate(specs)}
        self.pose_conv = Conv2D(256, 6 * (num_input_frames - 1), 1)
        self.num_convs = len(self.convs)
        self.relu = nn.ReLU()
        self.net = nn.LayerList(list(self.convs.values()))
        init_like_torch(self)

    def forward(self, out):
        for i in range(self.num_convs):
            out = self.relu(self.convs[i](out))
        out = self.pose_conv(out).mean(axis=[2, 3])
        out = 0.01 * out.reshape([-1, self.num_input_frames - 1, 1, 6])
        return out[..., :3], out[..., 3:]
