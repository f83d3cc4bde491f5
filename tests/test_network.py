"""Networks: shapes, parameter layout of the reference's checkpoints, ImageNet initialisation."""
import json

import numpy as np
import paddle
import pytest

from conftest import GOLDEN, need
from network import DepthDecoder, PoseCNN, PoseDecoder, ResnetEncoder
from torch_weights import to_paddle_state_dict
from utils import save_atomic


def image(n=2, c=3, h=64, w=96, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).rand(n, c, h, w).astype(np.float32))


@pytest.mark.parametrize("layers, channels", [(18, [64, 64, 128, 256, 512]),
                                              (34, [64, 64, 128, 256, 512]),
                                              (50, [64, 256, 512, 1024, 2048])])
def test_encoder_features_have_the_reference_channels_and_strides(layers, channels):
    encoder = ResnetEncoder(layers, False)
    assert list(encoder.num_ch_enc) == channels
    features = encoder(image())
    assert [f.shape for f in features] == [[2, c, 64 // 2 ** (i + 1), 96 // 2 ** (i + 1)]
                                            for i, c in enumerate(channels)]


def test_unknown_depth_and_unsupported_multi_image_encoder_are_refused():
    with pytest.raises(ValueError, match="valid number of resnet layers"):
        ResnetEncoder(20, False)
    with pytest.raises(ValueError, match="18 or 50"):
        ResnetEncoder(34, False, num_input_images=2)


def test_decoder_outputs_sigmoid_disparities_at_each_scale():
    encoder = ResnetEncoder(18, False)
    decoder = DepthDecoder(encoder.num_ch_enc, scales=[0, 2], num_output_channels=2)
    out = decoder(encoder(image()))
    assert sorted(out) == [("disp", 0), ("disp", 2)]
    assert out[("disp", 0)].shape == [2, 2, 64, 96] and out[("disp", 2)].shape == [2, 2, 16, 24]
    values = out[("disp", 0)].numpy()
    assert values.min() > 0 and values.max() < 1


def test_pose_networks_output_small_motions_per_frame():
    encoder = ResnetEncoder(18, False, num_input_images=2)
    axisangle, translation = PoseDecoder(encoder.num_ch_enc, 1, 2)([encoder(image(c=6))])
    assert axisangle.shape == [2, 2, 1, 3] and translation.shape == [2, 2, 1, 3]
    axisangle, translation = PoseCNN(3)(image(c=9))
    assert axisangle.shape == [2, 2, 1, 3] and float(axisangle.abs().max()) < 0.1


@pytest.mark.parametrize("network, build", [
    ("encoder", lambda: ResnetEncoder(18, False)),
    ("pose_encoder", lambda: ResnetEncoder(18, False, num_input_images=2)),
    ("depth", lambda: DepthDecoder(np.array([64, 64, 128, 256, 512]))),
    ("pose", lambda: PoseDecoder(np.array([64, 64, 128, 256, 512]), 1, 2))])
def test_parameter_names_and_shapes_are_the_reference_checkpoints(network, build):
    torch_shapes = dict((n, s) for n, s in json.loads(str(np.load(need(GOLDEN))["manifest/" + network])))
    converted = to_paddle_state_dict({n: np.zeros(s, np.float32) for n, s in torch_shapes.items()})
    own = build().state_dict()
    assert sorted(converted) == sorted(own)
    for name, value in own.items():
        assert list(converted[name].shape) == list(value.shape), name


def test_imagenet_initialisation_loads_and_spreads_over_stacked_images(tmp_path, monkeypatch):
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        ResnetEncoder(18, True)
    weights = {k: np.random.RandomState(1).rand(*v.shape).astype(np.float32)
               for k, v in ResnetEncoder(18, False).encoder.state_dict().items()}
    save_atomic(weights, str(tmp_path / "resnet18.pdparams"))
    single = ResnetEncoder(18, True)
    np.testing.assert_array_equal(single.encoder.conv1.weight.numpy(), weights["conv1.weight"])
    np.testing.assert_array_equal(single.encoder.layer3[1].bn2._variance.numpy(),
                                  weights["layer3.1.bn2._variance"])
    triple = ResnetEncoder(18, True, num_input_images=3)
    np.testing.assert_allclose(triple.encoder.conv1.weight.numpy(),
                               np.concatenate([weights["conv1.weight"]] * 3, 1) / 3, rtol=1e-6)


def test_batch_norm_running_variance_is_unbiased_like_pytorch():
    encoder = ResnetEncoder(18, False)
    bn = encoder.encoder.bn1
    x = paddle.to_tensor(np.random.RandomState(4).randn(2, 64, 3, 5).astype(np.float32))
    x.stop_gradient = False
    before = bn._variance.numpy().copy()
    bn.train()
    bn(x).sum().backward()
    flat = x.numpy().transpose(1, 0, 2, 3).reshape(64, -1)
    np.testing.assert_allclose(bn._variance.numpy(), 0.9 * before + 0.1 * flat.var(1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(bn._mean.numpy(), 0.1 * flat.mean(1), rtol=1e-4, atol=1e-7)
