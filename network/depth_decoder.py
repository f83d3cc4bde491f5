"""U-Net style decoder: sigmoid disparities at each requested scale."""
import numpy as np
import paddle
import paddle.nn as nn

from layers import Conv3x3, ConvBlock, init_like_torch, upsample


class DepthDecoder(nn.Layer):
    """Decodes the encoder's five feature maps into {("disp", s): B x C x H/2^s x W/2^s}.

    Layers are kept in a flat list (`decoder`) in the reference's order, so parameter
    names (`decoder.<i>.conv.conv.weight`) match its checkpoints."""

    def __init__(self, num_ch_enc, scales=range(4), num_output_channels=1, use_skips=True):
        super().__init__()
        self.num_output_channels = num_output_channels
        self.use_skips = use_skips
        self.scales = list(scales)
        self.num_ch_enc = num_ch_enc
        self.num_ch_dec = np.array([16, 32, 64, 128, 256])

        self.convs = {}
        for i in range(4, -1, -1):
            cin = self.num_ch_enc[-1] if i == 4 else self.num_ch_dec[i + 1]
            self.convs[("upconv", i, 0)] = ConvBlock(cin, self.num_ch_dec[i])
            cin = self.num_ch_dec[i]
            if self.use_skips and i > 0:
                cin += self.num_ch_enc[i - 1]
            self.convs[("upconv", i, 1)] = ConvBlock(cin, self.num_ch_dec[i])
        for s in self.scales:
            self.convs[("dispconv", s)] = Conv3x3(self.num_ch_dec[s], self.num_output_channels)
        self.decoder = nn.LayerList(list(self.convs.values()))
        self.sigmoid = nn.Sigmoid()
        init_like_torch(self)

    def forward(self, input_features):
        outputs = {}
        x = input_features[-1]
        for i in range(4, -1, -1):
            x = [upsample(self.convs[("upconv", i, 0)](x))]
            if self.use_skips and i > 0:
                x.append(input_features[i - 1])
            x = self.convs[("upconv", i, 1)](paddle.concat(x, axis=1))
            if i in self.scales:
                outputs[("disp", i)] = self.sigmoid(self.convs[("dispconv", i)](x))
        return outputs
