"""network/factory.py and checkpoint.py: what a weights folder records, and every loader
building the network from it (also from files that predate the records)."""
import json

import numpy as np
import paddle
import pytest

import network
from checkpoint import save_checkpoint
from model import build_models
from options import MonodepthOptions


def trained_folder(folder, *args):
    """A weights folder written as training writes it, for untrained networks of `args`."""
    opt = MonodepthOptions().parse(["--height", "64", "--width", "96", "--weights_init", "scratch"] + list(args))
    paddle.seed(0)
    models = paddle.nn.LayerDict(build_models(opt))
    optimizer = paddle.optimizer.Adam(1e-4, parameters=models.parameters())
    save_checkpoint(str(folder), models, optimizer, opt)
    return models


def test_checkpoint_records_kind_depth_and_output_options(tmp_path):
    models = trained_folder(tmp_path / "w", "--min_depth", "1", "--max_depth", "50", "--frame_ids", "0", "-1", "1",
                            "--use_stereo", "--resize", "nearest")
    _, record = network.encoder_record(str(tmp_path / "w" / "encoder.pdparams"))
    assert record == {"kind": "resnet", "num_layers": 18, "height": 64, "width": 96, "use_stereo": True,
                      "min_depth": 1.0, "max_depth": 50.0, "frame_ids": [0, -1, 1], "dataset": "kitti",
                      "resize": "nearest", "stereo_scale": None}  # the trainer sets it (from the dataset)
    _, pose = network.encoder_record(str(tmp_path / "w" / "pose_encoder.pdparams"))
    assert (pose["kind"], pose["num_layers"]) == ("resnet", 18)

    net, saved = network.load_depth_net(str(tmp_path / "w"))
    assert saved == record and not net.training
    images = paddle.to_tensor(np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32))
    models.eval()
    with paddle.no_grad():
        expected = models["depth"](models["encoder"](images))[("disp", 0)].numpy()
        np.testing.assert_array_equal(net(images).numpy(), expected)


def test_old_files_without_records_still_load(tmp_path):
    """The reference's and the published port's encoders hold height, width and use_stereo
    only: the depth (here 34) comes from the parameters, the options from opt.json beside
    the weights folders when the run left one."""
    paddle.seed(0)
    encoder = network.ResnetEncoder(34, False)
    folder = tmp_path / "models" / "weights_3"
    folder.mkdir(parents=True)
    paddle.save(dict(encoder.state_dict(), height=64, width=96, use_stereo=False), str(folder / "encoder.pdparams"))
    paddle.save(network.DepthDecoder(encoder.num_ch_enc).state_dict(), str(folder / "depth.pdparams"))
    net, record = network.load_depth_net(str(folder))
    assert record["kind"] == "resnet" and record["num_layers"] == 34 and record["min_depth"] is None
    np.testing.assert_array_equal(net.encoder.encoder.layer3[5].conv1.weight.numpy(),
                                  encoder.encoder.layer3[5].conv1.weight.numpy())

    (tmp_path / "models" / "opt.json").write_text(json.dumps(
        {"min_depth": 1.0, "max_depth": 80.0, "frame_ids": [0, -1, 1, "s"], "use_stereo": True}))
    record = network.weights_record(str(folder))
    assert (record["min_depth"], record["max_depth"], record["frame_ids"]) == (1.0, 80.0, [0, -1, 1])
    assert record["use_stereo"] is False  # the encoder file's own entry wins
    with pytest.raises(ValueError, match="holds a ResNet-34 encoder but --num_layers is 18: pass --num_layers 34"):
        network.load_depth_net(str(folder), num_layers=18)


def test_unknown_backbones_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'vgg': choose from resnet"):
        network.build_encoder("vgg", 16)
    trained_folder(tmp_path / "w")
    path = str(tmp_path / "w" / "encoder.pdparams")
    state = paddle.load(path)
    paddle.save(dict(state, kind="vgg"), path)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        network.load_depth_net(str(tmp_path / "w"))
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(["--backbone", "vgg"])
    with pytest.raises(FileNotFoundError, match="weights folder not found: .*nowhere"):
        network.load_depth_net(str(tmp_path / "nowhere"))
