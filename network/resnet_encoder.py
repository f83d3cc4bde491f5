"""ResNet encoders for depth and pose, laid out like torchvision's ResNets so that
converted PyTorch checkpoints load one to one (same parameter names and shapes)."""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from layers import init_like_torch
from cpu_ops import Conv2D
from torch_weights import imagenet_init
from utils import fitting_weights

BLOCKS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
          50: ("bottleneck", [3, 4, 6, 3]), 101: ("bottleneck", [3, 4, 23, 3]),
          152: ("bottleneck", [3, 8, 36, 3])}

# The reference builds its multi-image (pose) encoder only for these depths.
MULTI_IMAGE_LAYERS = (18, 50)


class BatchNorm2D(nn.BatchNorm2D):
    """Batch norm whose running variance tracks the unbiased batch variance.

    Paddle updates running statistics with the biased variance, PyTorch with the unbiased
    one; the difference (a factor n/(n-1)) is large on the small late feature maps, so the
    evaluation-mode outputs after training would drift from the reference. The fix rescales
    the new contribution after Paddle's own update instead of recomputing the variance.
    """

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        # the op updates the statistics it is given in place, and its backward pass keeps
        # them: hand it copies so that the buffers can be corrected afterwards
        mean, variance = self._mean.clone(), self._variance.clone()
        out = F.batch_norm(x, mean, variance, self.weight, self.bias, training=True,
                           momentum=self._momentum, epsilon=self._epsilon)
        n = x.shape[0] * x.shape[2] * x.shape[3]
        with paddle.no_grad():
            fresh = (variance - self._momentum * self._variance) * (n / max(n - 1, 1))
            paddle.assign(mean, self._mean)
            paddle.assign(self._momentum * self._variance + fresh, self._variance)
        return out


def conv(cin, cout, kernel, stride=1, padding=0):
    """Bias-free convolution initialised as torchvision does: He normal over the fan-out."""
    init = nn.initializer.KaimingNormal(fan_in=cout * kernel * kernel, nonlinearity="relu")
    return Conv2D(cin, cout, kernel, stride, padding, weight_attr=paddle.ParamAttr(initializer=init),
                  bias_attr=False)


def conv3x3(cin, cout, stride=1):
    return conv(cin, cout, 3, stride, 1)


def conv1x1(cin, cout, stride=1):
    return conv(cin, cout, 1, stride)


class BasicBlock(nn.Layer):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = BatchNorm2D(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2D(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Layer):
    """torchvision's v1.5 bottleneck: the stride sits on the 3x3 convolution."""
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = BatchNorm2D(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = BatchNorm2D(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = BatchNorm2D(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Layer):
    """torchvision's ResNet with `num_input_images` RGB images stacked on the channels.

    The classifier `fc` is never used, but it is kept so that state dicts match
    the reference's checkpoints key for key."""

    def __init__(self, num_layers, num_input_images=1):
        super().__init__()
        kind, counts = BLOCKS[num_layers]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.inplanes = 64
        self.conv1 = conv(3 * num_input_images, 64, 7, 2, 3)
        self.bn1 = BatchNorm2D(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, counts[0], 1)
        self.layer2 = self._make_layer(block, 128, counts[1], 2)
        self.layer3 = self._make_layer(block, 256, counts[2], 2)
        self.layer4 = self._make_layer(block, 512, counts[3], 2)
        self.fc = nn.Linear(512 * block.expansion, 1000)
        init_like_torch(self.fc)
        for p in self.fc.parameters():  # the classifier is never run, so it gets no gradient
            p.stop_gradient = True

    def _make_layer(self, block, planes, count, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       BatchNorm2D(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)


class ResnetEncoder(nn.Layer):
    """ResNet feature pyramid (5 maps) of one image, or of `num_input_images` stacked ones
    for the pose network. `pretrained` is a --weights_init value (pretrained, scratch,
    paddle_pretrained or a weights file) or a bool (pretrained / scratch)."""

    title = "ResNet"

    def __init__(self, num_layers, pretrained, num_input_images=1):
        super().__init__()
        if num_layers not in BLOCKS:
            raise ValueError("{} is not a valid number of resnet layers (choose from {})".format(
                num_layers, sorted(BLOCKS)))
        if num_input_images > 1 and num_layers not in MULTI_IMAGE_LAYERS:
            raise ValueError("a ResNet-{} encoder for {} stacked images is not supported: the "
                             "reference builds multi-image encoders only with {} layers".format(
                                 num_layers, num_input_images, " or ".join(map(str, MULTI_IMAGE_LAYERS))))
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        if num_layers > 34:
            self.num_ch_enc[1:] *= 4
        self.encoder = ResNet(num_layers, num_input_images)
        init = imagenet_init(pretrained, num_layers)
        if init is not None:
            path, weights = init
            # Stacked images share the ImageNet filters, scaled to keep the activation range.
            conv1 = np.asarray(weights.get("conv1.weight"))
            if num_input_images > 1 and conv1.ndim == 4 and conv1.shape[1] == 3:
                weights = dict(weights, **{"conv1.weight": np.concatenate([conv1] * num_input_images, 1)
                                           / num_input_images})
            self.encoder.set_state_dict(fitting_weights(self.encoder, weights, "--weights_init " + path))

    def forward(self, input_image):
        e = self.encoder
        x = (input_image - 0.45) / 0.225
        features = [e.relu(e.bn1(e.conv1(x)))]
        features.append(e.layer1(e.maxpool(features[-1])))
        features.append(e.layer2(features[-1]))
        features.append(e.layer3(features[-1]))
        features.append(e.layer4(features[-1]))
        return features
