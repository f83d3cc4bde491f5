"""tools/convert_weights.py on torch-written fixtures (see tests/data/make_pth_fixtures.py).

The fixtures carry the reference networks' true names and shapes with pattern values
(`pattern_value`), so the converted files can be checked entry by entry and loaded
into the Paddle networks.
"""
import importlib.util
import os
import subprocess
import sys
import zlib

import numpy as np
import paddle
import pytest

import network
import torch_weights
from torch_weights import load_imagenet_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
REF_WEIGHTS = os.path.join(DATA, "ref_weights")
RESNET18 = os.path.join(DATA, "resnet18_legacy.pth")
PATTERN_LENGTH = 1024  # as in make_pth_fixtures.py


def _load_tool():
    path = os.path.join(ROOT, "tools", "convert_weights.py")
    spec = importlib.util.spec_from_file_location("convert_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_weights = _load_tool()


def pattern_value(torch_name, shape):
    """The values make_pth_fixtures.py gave the float tensor `torch_name` (torch layout)."""
    start = zlib.crc32(torch_name.encode()) % (PATTERN_LENGTH - shape[-1] + 1)
    return np.broadcast_to(np.arange(start, start + shape[-1], dtype=np.float32), shape)


def torch_name(paddle_name):
    return paddle_name.replace("._mean", ".running_mean").replace("._variance", ".running_var")


def check_against_pattern(weights):
    """Every float entry holds its pattern, fc weights transposed to Paddle's [in, out]."""
    for name, value in weights.items():
        value = np.asarray(value)
        if name.endswith("fc.weight"):
            value = value.T
        np.testing.assert_array_equal(value, pattern_value(torch_name(name), value.shape), err_msg=name)


def load_into(layer, path):
    weights = paddle.load(path)
    metadata = {k: v for k, v in weights.items() if not isinstance(v, paddle.Tensor)}
    missing, unexpected = layer.set_state_dict({k: v for k, v in weights.items() if k not in metadata})
    assert not missing and not unexpected, (path, missing, unexpected)
    return weights, metadata


def test_reference_folder_converts_and_loads_into_the_networks(tmp_path, capsys):
    dst = tmp_path / "paddle_weights"
    convert_weights.main([REF_WEIGHTS, str(dst)])
    out = capsys.readouterr().out
    assert sorted(os.listdir(dst)) == ["depth.pdparams", "encoder.pdparams", "pose.pdparams"]
    for name in ("encoder", "depth", "pose"):
        assert "wrote {}".format(dst / (name + ".pdparams")) in out
    assert "skipped adam.pth" in out

    encoder = network.ResnetEncoder(18, False)
    weights, metadata = load_into(encoder, str(dst / "encoder.pdparams"))
    assert metadata == {"height": 192, "width": 640, "use_stereo": True}
    assert "encoder.bn1._mean" in weights and "encoder.bn1.num_batches_tracked" not in weights
    assert weights["encoder.fc.weight"].shape == [512, 1000]
    check_against_pattern({k: v.numpy() for k, v in weights.items() if k not in metadata})
    np.testing.assert_array_equal(encoder.encoder.layer2[0].bn1._variance.numpy(),
                                  pattern_value("encoder.layer2.0.bn1.running_var", (128,)))

    depth = network.DepthDecoder(encoder.num_ch_enc, range(4))
    pose = network.PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    for layer, name in ((depth, "depth"), (pose, "pose")):
        weights, metadata = load_into(layer, str(dst / (name + ".pdparams")))
        assert not metadata
        check_against_pattern({k: v.numpy() for k, v in weights.items()})


def test_resnet_file_to_file_folder_and_default(tmp_path, monkeypatch, capsys):
    as_file = tmp_path / "init.pdparams"
    convert_weights.main([RESNET18, str(as_file)])
    assert "wrote {} (ImageNet ResNet-18)".format(as_file) in capsys.readouterr().out
    weights = paddle.load(str(as_file), return_numpy=True)
    assert weights["fc.weight"].shape == (512, 1000) and "bn1._mean" in weights
    check_against_pattern(weights)

    convert_weights.main([RESNET18, str(tmp_path / "new_folder")])
    assert os.listdir(tmp_path / "new_folder") == ["resnet18.pdparams"]

    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    convert_weights.main([RESNET18])
    assert os.listdir(tmp_path / "pretrained") == ["resnet18.pdparams"]
    loaded = load_imagenet_weights(18)
    assert loaded.keys() == weights.keys()
    for name in weights:
        np.testing.assert_array_equal(loaded[name], weights[name])
    encoder = network.ResnetEncoder(18, True)  # the --weights_init pretrained path
    np.testing.assert_array_equal(encoder.encoder.conv1.weight.numpy(), weights["conv1.weight"])


def test_resnet_file_goes_to_weights_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MONODEPTH2_PRETRAINED_DIR", raising=False)
    monkeypatch.setattr(torch_weights, "WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(torch_weights, "OLD_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    convert_weights.main([RESNET18])
    assert os.listdir(tmp_path / "weights") == ["resnet18.pdparams"]
    assert torch_weights.imagenet_weights_path(18) == str(tmp_path / "weights" / "resnet18.pdparams")


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing"], "no such PyTorch weights file: {tmp}/missing"),
    (["{tmp}", "{tmp}/out"], "{tmp} holds none of encoder.pth, depth.pth"),
    ([REF_WEIGHTS], "converting the weights folder {} needs a destination folder".format(REF_WEIGHTS)),
    ([REF_WEIGHTS, "{tmp}/file"], "destination {tmp}/file exists and is not a folder"),
    ([os.path.join(REF_WEIGHTS, "encoder.pth")], "is a reference network file: convert the folder"),
    ([os.path.join(REF_WEIGHTS, "adam.pth")], "neither a torchvision ResNet"),
    ([os.path.join(DATA, "make_pth_fixtures.py")], "not a file written by torch.save"),
    ([RESNET18, "{tmp}/no/such/dir/x.pdparams"], "the folder of {tmp}/no/such/dir/x.pdparams does not exist"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        convert_weights.main([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(tmp=tmp_path) in err


def test_command_line_exit_status_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_weights.py"),
                             str(tmp_path / "missing.pth")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "missing.pth" in result.stderr


def test_port_h5_file_converts_like_a_pth(tmp_path, capsys):
    from test_torch_weights import small_resnet_weights, write_port_h5
    weights = small_resnet_weights(5)
    write_port_h5(str(tmp_path / "resnet18-pytorch.h5"), weights)
    convert_weights.main([str(tmp_path / "resnet18-pytorch.h5"), str(tmp_path / "out")])
    assert "(ImageNet ResNet-18)" in capsys.readouterr().out
    converted = paddle.load(str(tmp_path / "out" / "resnet18.pdparams"), return_numpy=True)
    assert sorted(converted) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)
