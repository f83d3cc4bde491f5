"""Every weight load checks every expected entry (parameters and batch-norm statistics) for
presence, shape and finite values, naming the file and the entry: --weights_init (.pdparams,
.h5, .pth), weights folders (training, evaluation, export, the demo) and conversion, which
writes nothing when a check fails. Paddle alone would warn and leave a misshapen layer
random, and NaN weights would predict a constant."""
import os
import shutil
import zipfile

import numpy as np
import paddle
import pytest

import export_model
import network
from checkpoint import load_checkpoint
from test_convert_weights import REF_WEIGHTS, RESNET18, convert_weights
from test_export_model import make_weights_folder
from test_torch_weights import small_resnet_weights, write_port_h5
from utils import load_weights

FAULTS = {  # entry -> (damaged value, what the message says)
    "shape": ("layer2.0.conv1.weight", lambda v: v[:, :-1], r"has shape \[128, 63, 3, 3\] but the network expects "
                                                            r"\[128, 64, 3, 3\]"),
    "nan": ("layer3.1.conv2.weight", lambda v: np.where(np.arange(v.size).reshape(v.shape) == 7, np.nan, v),
            "holds 1 NaN or infinite values of 589824"),
    "inf in a running variance": ("layer1.0.bn2._variance", lambda v: np.full_like(v, np.inf),
                                  "holds 64 NaN or infinite values of 64"),
    "missing running mean": ("layer4.1.bn1._mean", None, "lacks 1 of the network's weights"),
    "text": ("fc.bias", lambda v: "a string", r"holds text \(<U8\), not numbers"),
}


def damaged(weights, fault):
    name, change, message = FAULTS[fault]
    weights = dict(weights)
    if change is None:
        del weights[name]
    else:
        weights[name] = change(weights[name])
    return weights, name, message


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("ext", [".pdparams", ".h5"])
def test_weights_init_files_that_do_not_fit_are_refused(tmp_path, ext, fault):
    weights, name, message = damaged(small_resnet_weights(0), fault)
    path = str(tmp_path / ("init" + ext))
    if ext == ".h5":
        if fault == "text":
            pytest.skip("an HDF5 string dataset: test_h5_string_and_compound_datasets_are_named")
        write_port_h5(path, weights)
    else:
        paddle.save(weights, path)
    for stacked in (1, 2):  # the depth encoder and a pose encoder spreading conv1
        with pytest.raises(ValueError, match=message) as err:
            network.ResnetEncoder(18, path, num_input_images=stacked)
        assert path in str(err.value)
        if ext == ".h5":  # the HDF5 file's datasets are checked as it is read, under their own names
            name = name.replace("._variance", ".running_var")
        assert "'{}'".format(name) in str(err.value)


def nan_pth(src, dst):
    """A copy of the torch zip file `src` whose storages hold a NaN every 7 elements."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if "/data/" in item.filename:
                values = np.frombuffer(data, "<f4").copy()
                values[::7] = np.nan
                data = values.tobytes()
            new.writestr(item, data)


def test_a_pth_with_nan_is_refused_by_conversion_which_writes_nothing(tmp_path, capsys):
    src = tmp_path / "ref"
    shutil.copytree(REF_WEIGHTS, src)
    nan_pth(os.path.join(REF_WEIGHTS, "depth.pth"), str(src / "depth.pth"))
    with pytest.raises(SystemExit):
        convert_weights.main([str(src), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert err.startswith("error: {}: '".format(src / "depth.pth")) and "NaN or infinite" in err
    assert not os.path.exists(tmp_path / "out")


def test_conversion_of_an_imagenet_file_checks_before_writing(tmp_path, capsys):
    weights, _, message = damaged(small_resnet_weights(0), "shape")
    write_port_h5(str(tmp_path / "bad.h5"), weights)
    with pytest.raises(SystemExit):
        convert_weights.main([str(tmp_path / "bad.h5"), str(tmp_path / "out.pdparams")])
    err = capsys.readouterr().err
    assert "{}: 'layer2.0.conv1.weight' ".format(tmp_path / "bad.h5") in err
    assert not os.path.exists(tmp_path / "out.pdparams")
    convert_weights.main([RESNET18, str(tmp_path / "good.pdparams")])  # the sound file still converts
    assert os.path.isfile(tmp_path / "good.pdparams")


@pytest.mark.parametrize("file, name", [("encoder", "encoder.layer1.0.bn1._variance"),
                                        ("depth", "decoder.0.conv.conv.weight")])
def test_weights_folders_with_nan_are_refused_everywhere(tmp_path, capsys, file, name):
    folder = make_weights_folder(tmp_path / "w")
    path = os.path.join(folder, file + ".pdparams")
    state = paddle.load(path, return_numpy=True)
    state[name] = np.full_like(state[name], np.nan)
    paddle.save(state, path)
    message = "{}: '{}' holds".format(path, name)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):  # evaluation, the demo
        network.load_depth_net(folder)
    with pytest.raises(SystemExit):  # export
        export_model.main(["--load_weights_folder", folder])
    assert message in capsys.readouterr().err
    models = {"encoder": network.ResnetEncoder(18, False)}
    models["depth"] = network.DepthDecoder(models["encoder"].num_ch_enc)
    optimizer = paddle.optimizer.Adam(parameters=[p for m in models.values() for p in m.parameters()])
    with pytest.raises(SystemExit, match=message):  # --load_weights_folder, --resume
        load_checkpoint(folder, models, ["encoder", "depth"], optimizer, verbose=False)


def test_float64_weights_load_as_float32(tmp_path):
    encoder = network.ResnetEncoder(18, False)
    weights = {k: v.numpy().astype(np.float64) + 1 for k, v in encoder.state_dict().items()}
    paddle.save(weights, str(tmp_path / "f64.pdparams"))
    load_weights(encoder, str(tmp_path / "f64.pdparams"))
    assert encoder.encoder.conv1.weight.dtype == paddle.float32
    np.testing.assert_array_equal(encoder.encoder.conv1.weight.numpy(),
                                  weights["encoder.conv1.weight"].astype(np.float32))
