"""Geometry, warping and losses of Monodepth2, shared by training, evaluation and tests."""
import contextlib

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import cpu_ops
from cpu_ops import Conv2D


def disp_to_depth(disp, min_depth, max_depth):
    """Map the decoder's sigmoid output to (scaled disparity, depth) in [min_depth, max_depth]."""
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def rot_from_axisangle(vec):
    """4x4 rotation matrices (B x 4 x 4) from axis-angle vectors of shape B x 1 x 3."""
    angle = paddle.linalg.norm(vec, p=2, axis=2, keepdim=True)
    axis = vec / (angle + 1e-7)
    ca = paddle.cos(angle)[:, 0, 0]
    sa = paddle.sin(angle)[:, 0, 0]
    c = 1 - ca
    x, y, z = axis[:, 0, 0], axis[:, 0, 1], axis[:, 0, 2]
    xs, ys, zs = x * sa, y * sa, z * sa
    xc, yc, zc = x * c, y * c, z * c
    xyc, yzc, zxc = x * yc, y * zc, z * xc
    zero, one = paddle.zeros_like(x), paddle.ones_like(x)
    rows = [x * xc + ca, xyc - zs, zxc + ys, zero,
            xyc + zs, y * yc + ca, yzc - xs, zero,
            zxc - ys, yzc + xs, z * zc + ca, zero,
            zero, zero, zero, one]
    return paddle.stack(rows, axis=1).reshape([-1, 4, 4])


def get_translation_matrix(translation):
    """4x4 translation matrices from vectors of shape B x 1 x 3 (or B x 3)."""
    t = translation.reshape([-1, 3, 1])
    b = t.shape[0]
    top = paddle.concat([paddle.eye(3, dtype=t.dtype).expand([b, 3, 3]), t], axis=2)
    bottom = paddle.to_tensor([[[0, 0, 0, 1]]], dtype=t.dtype).expand([b, 1, 4])
    return paddle.concat([top, bottom], axis=1)


def transformation_from_parameters(axisangle, translation, invert=False):
    """Camera transform from the pose network's outputs; `invert` gives the inverse motion."""
    R = rot_from_axisangle(axisangle)
    if invert:
        return paddle.matmul(R.transpose([0, 2, 1]), get_translation_matrix(-translation))
    return paddle.matmul(get_translation_matrix(translation), R)


def init_like_torch(layer):
    """PyTorch's default initialisation for every Conv2D/Linear in `layer`.

    Paddle's defaults differ (Xavier weights, zero biases); training from scratch
    should start where the reference starts: uniform in +-1/sqrt(fan_in)."""
    for m in [layer] + layer.sublayers():
        if isinstance(m, (nn.Conv2D, nn.Linear)):
            shape = m.weight.shape
            fan_in = int(np.prod(shape[1:])) if isinstance(m, nn.Conv2D) else shape[0]
            init = nn.initializer.Uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in))
            init(m.weight)
            if m.bias is not None:
                init(m.bias)


def reflection_pad(x):
    """Pads a B x C x H x W tensor by one pixel, mirrored about the border pixels.

    The same values as F.pad(x, [1, 1, 1, 1], mode="reflect"). Eagerly on the CPU it is
    cpu_ops' kernel, elsewhere slices: Paddle's pad3d kernel took a tenth of a training step,
    and under oneDNN (exported models) a third of the inference time."""
    ops = cpu_ops.for_eager(x)
    if ops is not None and x.ndim == 4 and min(x.shape[2:]) >= 2:
        return ops.reflection_pad1(x)
    x = paddle.concat([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return paddle.concat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


class Conv3x3(nn.Layer):
    """3x3 convolution on a reflection- (or zero-) padded input, keeping the size."""

    def __init__(self, in_channels, out_channels, use_refl=True):
        super().__init__()
        self.pad = reflection_pad if use_refl else nn.Pad2D(1)
        self.conv = Conv2D(int(in_channels), int(out_channels), 3)

    def forward(self, x):
        return self.conv(self.pad(x))


class ConvBlock(nn.Layer):
    """Conv3x3 followed by ELU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU()

    def forward(self, x):
        return self.nonlin(self.conv(x))


STATIC_UPSAMPLE = {"mode": "expand"}  # how a traced program upsamples: "expand" or "resize"


@contextlib.contextmanager
def static_upsample(mode):
    """Trace upsample() as `mode` inside the block (export_model.py: "resize" for ONNX)."""
    before = STATIC_UPSAMPLE["mode"]
    STATIC_UPSAMPLE["mode"] = mode
    try:
        yield
    finally:
        STATIC_UPSAMPLE["mode"] = before


def upsample(x):
    """Nearest-neighbour upsampling by 2.

    Eagerly (training, evaluation) this is F.interpolate with a scale, or on the CPU in float32
    cpu_ops' kernel (the same values; gradients summed in PyTorch's order). A traced program
    either broadcasts each pixel to a 2x2 block ("expand"), because Paddle Inference 3.3.1
    cannot run interpolate's scale or size attributes under oneDNN (and expand is faster there
    than tile), or interpolates to a fixed size ("resize"), which becomes one ONNX Resize:
    OpenVINO runs the expand as a reference kernel, a tenth of the network's time at 640x192.
    The values are the same; the expand's gradients are not bit for bit (summed in another
    order), hence the eager paths."""
    if paddle.in_dynamic_mode():
        ops = cpu_ops.for_eager(x)
        if ops is not None and x.ndim == 4:
            return ops.upsample2(x)
        return F.interpolate(x, scale_factor=2, mode="nearest")
    _, c, h, w = x.shape
    if STATIC_UPSAMPLE["mode"] == "resize":
        return F.interpolate(x, size=[2 * h, 2 * w], mode="nearest")
    return x.unsqueeze([3, 5]).expand([-1, c, h, 2, w, 2]).reshape([-1, c, 2 * h, 2 * w])


class BackprojectDepth(nn.Layer):
    """Depth map (B x 1 x H x W) to homogeneous camera points (B x 4 x H*W)."""

    def __init__(self, height, width):
        super().__init__()
        self.height, self.width = height, width
        xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="xy")
        pix = np.stack([xs.ravel(), ys.ravel(), np.ones(height * width)])[None]
        pix = pix.astype(paddle.get_default_dtype())
        self.register_buffer("pix_coords", paddle.to_tensor(pix), persistable=False)

    def forward(self, depth, inv_K):
        rays = paddle.matmul(inv_K[:, :3, :3], self.pix_coords)
        points = depth.reshape([depth.shape[0], 1, -1]) * rays
        return paddle.concat([points, paddle.ones_like(points[:, :1])], axis=1)


class Project3D(nn.Layer):
    """Camera points to grid_sample coordinates in [-1, 1] (B x H x W x 2) of the camera K.T.

    Normalising by W-1 and H-1 is what the reference does; it matches grid_sample
    with align_corners=True."""

    def __init__(self, height, width, eps=1e-7):
        super().__init__()
        self.height, self.width, self.eps = height, width, eps

    def forward(self, points, K, T):
        # The image plane's rows and the depth row of K.T in two products rather than slices
        # of one: Paddle's slice gradients made this twice as slow (AMD EPYC VM).
        P = paddle.matmul(K, T)
        xy = paddle.matmul(P[:, :2, :], points)
        z = paddle.matmul(P[:, 2:3, :], points)
        pix = xy / (z + self.eps)
        pix = pix.reshape([-1, 2, self.height, self.width]).transpose([0, 2, 3, 1])
        scale = paddle.to_tensor([self.width - 1, self.height - 1], dtype=pix.dtype)
        return (pix / scale - 0.5) * 2


def warp(image, grid):
    """Bilinear, border-padded sampling of `image` at `grid` (align_corners=True).

    Eagerly on the CPU it is cpu_ops' kernel, which skips the image's gradient when the
    image takes none (the input frames never do). Paddle 3.3's grid_sample backward crashes
    (segfault) in that case, so there the image is handed over as a fresh leaf that asks for
    a gradient; that gradient is computed and dropped, the one to the grid is exact."""
    ops = cpu_ops.for_eager(image, grid)
    if (ops is not None and image.ndim == 4 and grid.ndim == 4 and grid.shape[3] == 2
            and grid.shape[0] == image.shape[0] and min(image.shape[2:]) > 0):
        return ops.grid_sample_border(image, grid, not image.stop_gradient)
    if image.stop_gradient and not grid.stop_gradient:
        image = image.detach()
        image.stop_gradient = False
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def mean3x3(x):
    """The mean of every 3x3 window of a B x C x H x W tensor (stride 1, no padding): the
    values of nn.AvgPool2D(3, 1). Eagerly on the CPU it is cpu_ops' kernel: Paddle's pool2d,
    forward and backward, took a fifth of a training step there (AMD EPYC VM)."""
    ops = cpu_ops.for_eager(x)
    if ops is not None and x.ndim == 4 and min(x.shape[2:]) >= 3:
        return ops.mean3x3(x)
    return F.avg_pool2d(x, 3, 1)


class SSIM(nn.Layer):
    """Per-pixel (1 - SSIM) / 2 over 3x3 windows of reflection-padded images.

    The target's statistics do not depend on the image compared with it, and training
    compares one target with every source at every scale: `target_stats(y)` computes them
    once, and may be passed instead of `y`. The values are those of pooling all five
    moments at once, bit for bit (pooling is per channel)."""

    C1 = 0.01 ** 2
    C2 = 0.03 ** 2

    def target_stats(self, y):
        """(padded y, local mean, its square, local mean of y*y) of the image `y`."""
        y = reflection_pad(y)
        mu_y, yy = paddle.split(mean3x3(paddle.concat([y, y * y], axis=1)), 2, axis=1)
        return y, mu_y, paddle.square(mu_y), yy

    def forward(self, x, y):
        y, mu_y, mu_y2, yy = y if isinstance(y, tuple) else self.target_stats(y)
        x = reflection_pad(x)
        mu_x, xx, xy = paddle.split(mean3x3(paddle.concat([x, x * x, x * y], axis=1)), 3, axis=1)
        mu_x2 = paddle.square(mu_x)  # not x ** 2: Paddle's pow is 5-9x slower and not correctly rounded
        sigma_x = xx - mu_x2
        sigma_y = yy - mu_y2
        sigma_xy = xy - mu_x * mu_y
        n = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        d = (mu_x2 + mu_y2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return paddle.clip((1 - n / d) / 2, 0, 1)


def composed_photometric_error(pred, target, target_stats):
    """Per-pixel 0.85 * (1 - SSIM) / 2 + 0.15 * L1, each averaged over the channels: the
    reference's reprojection error of `pred` against `target`, whose SSIM.target_stats are
    given, in Paddle's operators."""
    l1 = paddle.abs(target - pred).mean(1, keepdim=True)
    return 0.85 * SSIM()(pred, target_stats).mean(1, keepdim=True) + 0.15 * l1


def photometric_error(pred, target, target_stats):
    """composed_photometric_error, the same values (in IEEE 754 arithmetic; DEVELOPERS.md for MKL's
    division); `target_stats` must be SSIM.target_stats(target).
    Eagerly on the CPU it is one cpu_ops kernel, which reads the target from its statistics
    and gives it no gradient: composed of Paddle's elementwise operators it was a sixth of a
    training step."""
    y, mu_y, _, yy = target_stats  # the kernel squares mu_y itself
    ops = cpu_ops.for_eager(pred, y, mu_y, yy)
    if ops is not None and y.stop_gradient and mu_y.stop_gradient and yy.stop_gradient and pred.ndim == 4 \
            and min(pred.shape[2:]) >= 2 and list(y.shape) == pred.shape[:2] + [s + 2 for s in pred.shape[2:]]:
        return ops.photometric_error(pred, y, mu_y, yy)
    return composed_photometric_error(pred, target, target_stats)


def get_smooth_loss(disp, img):
    """Edge-aware smoothness: disparity gradients, down-weighted where the image has edges."""
    grad_disp_x = paddle.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = paddle.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = paddle.mean(paddle.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = paddle.mean(paddle.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    return (grad_disp_x * paddle.exp(-grad_img_x)).mean() + \
        (grad_disp_y * paddle.exp(-grad_img_y)).mean()


def compute_depth_errors(gt, pred):
    """The seven KITTI depth metrics of matching 1-D arrays of valid pixels (NumPy, float64):
    abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3."""
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    a1, a2, a3 = [(thresh < 1.25 ** k).mean() for k in (1, 2, 3)]
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean((gt - pred) ** 2 / gt)
    return np.array([abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3])
