"""export_model.py and inference.py: the exported network (run by Paddle Inference with
and without oneDNN) against the eager one, the files written, and the errors."""
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import export_model
from export_model import load_depth_net
from inference import predictor
from layers import upsample
from network import DepthDecoder, ResnetEncoder


def make_weights_folder(folder, use_stereo=True, height=64, width=192, seed=0):
    """An untrained ResNet-18 depth network saved as training saves it."""
    paddle.seed(seed)
    encoder = ResnetEncoder(18, False)
    decoder = DepthDecoder(encoder.num_ch_enc)
    os.makedirs(folder, exist_ok=True)
    paddle.save(dict(encoder.state_dict(), height=height, width=width, use_stereo=use_stereo),
                os.path.join(folder, "encoder.pdparams"))
    paddle.save(decoder.state_dict(), os.path.join(folder, "depth.pdparams"))
    return str(folder)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights_folder(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    """{(height, width): prefix}: the default size and one given on the command line."""
    out = tmp_path_factory.mktemp("exported")
    export_model.main(["--load_weights_folder", weights, "--output", str(out / "small")])
    export_model.main(["--load_weights_folder", weights, "--output", str(out / "large"),
                       "--height", "96", "--width", "320"])
    return {(64, 192): str(out / "small"), (96, 320): str(out / "large")}


@pytest.fixture(scope="module")
def eager_net(weights):
    return load_depth_net(weights)[0]


def test_static_upsample_copies_like_nearest_interpolation():
    """The formulation used in exported programs gives interpolate's values exactly."""
    static_upsample = paddle.jit.to_static(upsample, full_graph=True)
    for shape in [(2, 16, 6, 20), (1, 3, 5, 7), (3, 64, 2, 6)]:
        x = paddle.randn(shape)
        expected = F.interpolate(x, scale_factor=2, mode="nearest").numpy()
        np.testing.assert_array_equal(static_upsample(x).numpy(), expected)
        np.testing.assert_array_equal(upsample(x).numpy(), expected)


def test_export_writes_program_weights_and_info(exported):
    prefix = exported[(96, 320)]
    for suffix in (".json", ".pdiparams"):
        assert os.path.getsize(prefix + suffix) > 0
    with open(prefix + ".info.json") as f:
        assert json.load(f) == {"height": 96, "width": 320, "use_stereo": True, "num_layers": 18}


@pytest.mark.parametrize("size", [(64, 192), (96, 320)])
@pytest.mark.parametrize("use_onednn", [True, False])
def test_exported_model_agrees_with_eager(eager_net, exported, size, use_onednn):
    images = np.random.default_rng(1).random((2, 3) + size, dtype=np.float32)
    with paddle.no_grad():
        expected = eager_net(paddle.to_tensor(images)).numpy()
    net = predictor(exported[size], "cpu", use_onednn=use_onednn)
    disp = net(images)
    assert disp.shape == (2, 1) + size
    assert expected.std() > 1e-3  # a real picture, not a constant
    np.testing.assert_allclose(disp, expected, rtol=0, atol=1e-5)
    assert (net.info["height"], net.info["width"]) == size
    assert net.images_per_run == 1  # on the CPU a batch runs image by image; as one run:
    net.images_per_run = None
    np.testing.assert_allclose(net(images), disp, rtol=0, atol=1e-6)


def test_predictor_accepts_any_of_the_files_and_checks_the_input(exported):
    prefix = exported[(64, 192)]
    net = predictor(prefix + ".json", use_onednn=False)
    with pytest.raises(ValueError, match="takes B x 3 x 64 x 192 images, not 1x3x96x320"):
        net(np.zeros((1, 3, 96, 320), np.float32))
    with pytest.raises(ValueError, match="takes B x 3 x 64 x 192 images, not 0x3x64x192"):
        net(np.zeros((0, 3, 64, 192), np.float32))


def test_predictor_names_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model at .*nowhere.*export_model.py"):
        predictor(str(tmp_path / "nowhere"))


def run_export(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        export_model.main(list(args))
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def test_export_errors_name_the_problem(weights, tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert "weights folder not found: {}".format(missing) in run_export(
        capsys, "--load_weights_folder", missing)
    assert "--height 100: must be a positive multiple of 32" in run_export(
        capsys, "--load_weights_folder", weights, "--output", str(tmp_path / "m"), "--height", "100")
    no_decoder = tmp_path / "no_decoder"
    no_decoder.mkdir()
    os.link(os.path.join(weights, "encoder.pdparams"), no_decoder / "encoder.pdparams")
    assert "weights file not found: {}".format(no_decoder / "depth.pdparams") in run_export(
        capsys, "--load_weights_folder", str(no_decoder))
    assert not os.path.exists(no_decoder / "inference")
