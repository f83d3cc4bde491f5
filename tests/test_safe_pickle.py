"""Loading runs no code: every weights, optimizer, generator-state and ground-truth file the
project reads is refused, naming the file and the global, when it asks for more than arrays,
numbers, strings and containers. (The .pth reader's own case is in test_torch_weights.py.)"""
import collections
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

import evaluate_depth
import evaluate_pose
import export_model
import torch_weights
from conftest import ROOT
from export_gt_depth import GroundTruth
from network import ResnetEncoder
from options import MonodepthOptions
from safe_pickle import load_paddle_pickle
from trainer import Trainer
from utils import read_rng_state, read_weights, rng_state_json

REFUSED = r"refusing to load the global (posix|os)\.system"


class _Exploit:
    """Pickles as a call of os.system that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ("touch " + self.marker,)


def write_crafted(path, marker, protocol=4):
    """A state dict that looks like weights but one entry runs a command when unpickled."""
    state = {"encoder.conv1.weight": np.zeros((2, 3), np.float32), "height": _Exploit(marker)}
    with open(path, "wb") as f:
        pickle.dump(state, f, protocol=protocol)
    return str(path)


@pytest.fixture
def marker(tmp_path):
    path = str(tmp_path / "code_ran")
    yield path
    assert not os.path.exists(path), "the crafted file ran its command"


@pytest.mark.parametrize("protocol", [2, 4])
def test_paddle_save_files_read_as_paddle_load_reads_them(tmp_path, protocol):
    layer = ResnetEncoder(18, False)
    state = dict(layer.state_dict(), height=192, width=640, use_stereo=True, scale=np.float32(0.5),
                 nested={"a": [1, 2.5, "x"], "b": (np.arange(3),)})
    paddle.save(state, str(tmp_path / "encoder.pdparams"), protocol=protocol)
    ours = read_weights(str(tmp_path / "encoder.pdparams"))
    theirs = paddle.load(str(tmp_path / "encoder.pdparams"), return_numpy=True)
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        if isinstance(value, np.ndarray):
            assert ours[key].dtype == value.dtype
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert (ours["height"], ours["use_stereo"], ours["scale"]) == (192, True, 0.5)
    assert ours["nested"]["a"] == [1, 2.5, "x"]

    adam = paddle.optimizer.Adam(paddle.optimizer.lr.LambdaDecay(1e-4, lambda epoch: 0.1 ** epoch),
                                 parameters=layer.parameters())
    layer(paddle.ones([1, 3, 64, 64])).pop().mean().backward()
    adam.step()
    paddle.save(adam.state_dict(), str(tmp_path / "adam.pdparams"), protocol=protocol)
    ours = read_weights(str(tmp_path / "adam.pdparams"))
    theirs = paddle.load(str(tmp_path / "adam.pdparams"), return_numpy=True)
    assert sorted(ours) == sorted(theirs) and ours["LR_Scheduler"] == theirs["LR_Scheduler"]
    moment = [k for k in theirs if k.endswith("_moment1_0")][0]
    np.testing.assert_array_equal(ours[moment], theirs[moment])


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_a_state_dict_with_entries_added_is_read_as_a_plain_dict(tmp_path, protocol):
    """The published port's save_model: state_dict() (an OrderedDict) with the encoder's three
    entries added in place, which paddle.save pickles as a collections.OrderedDict."""
    state = ResnetEncoder(18, False).state_dict()
    assert type(state) is collections.OrderedDict
    state["height"], state["width"], state["use_stereo"] = 192, 640, True
    path = str(tmp_path / "encoder.pdparams")
    paddle.save(state, path, protocol=protocol)
    assert b"OrderedDict" in open(path, "rb").read()
    ours = read_weights(path)
    theirs = paddle.load(path, return_numpy=True)
    assert type(ours) is dict and list(ours) == list(theirs) == list(state)
    for key, value in theirs.items():
        if isinstance(value, np.ndarray):
            assert ours[key].dtype == value.dtype
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert (ours["height"], ours["width"], ours["use_stereo"]) == (192, 640, True)


@pytest.mark.parametrize("protocol", [2, 4])
def test_other_containers_and_code_inside_an_ordered_dict_are_refused(tmp_path, marker, protocol):
    path = tmp_path / "encoder.pdparams"
    with open(path, "wb") as f:
        pickle.dump(collections.defaultdict(list, {"height": 192}), f, protocol=protocol)
    with pytest.raises(ValueError, match="refusing to load the global collections.defaultdict"):
        read_weights(str(path))
    with open(path, "wb") as f:
        pickle.dump(collections.OrderedDict(height=_Exploit(marker)), f, protocol=protocol)
    with pytest.raises(ValueError, match=REFUSED):
        read_weights(str(path))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", ["encoder", "depth", "pose_encoder", "pose", "adam"])
def test_crafted_weights_files_are_refused_naming_file_and_global(tmp_path, marker, protocol, name):
    path = write_crafted(tmp_path / (name + ".pdparams"), marker, protocol)
    with pytest.raises(ValueError, match=REFUSED) as err:
        read_weights(path)
    assert path in str(err.value)


@pytest.mark.parametrize("payload", [
    b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x0fprint('hello')\x85R.",  # builtins.eval
    b"\x80\x02cnumpy\nload\nq\x00.",  # a numpy function other than the array rebuilders
])
def test_other_globals_are_refused_too(tmp_path, payload):
    path = tmp_path / "x.pdparams"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=r"refusing to load the global (builtins\.eval|numpy\.load)"):
        load_paddle_pickle(str(path))


@pytest.mark.parametrize("content", [b"", b"\x80\x04\x95", b"not a pickle at all"])
def test_damaged_weights_file_is_named(tmp_path, content):
    path = tmp_path / "depth.pdparams"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot read .*depth.pdparams"):
        read_weights(str(path))


def test_every_loader_refuses_a_crafted_file(tmp_path, marker, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("encoder", "depth", "pose_encoder", "pose"):
        write_crafted(folder / (name + ".pdparams"), marker)
    opt = MonodepthOptions().parse(["--num_layers", "18"])
    for load in (lambda: evaluate_depth.load_network(opt, str(folder)),
                 lambda: evaluate_pose.load_pose_network(opt, str(folder)),
                 lambda: export_model.load_net_and_info(str(folder))):
        with pytest.raises(ValueError, match=REFUSED):
            load()
    monkeypatch.setenv(torch_weights.PRETRAINED_DIR_ENV, str(tmp_path))
    write_crafted(tmp_path / "resnet18.pdparams", marker)
    with pytest.raises(ValueError, match=REFUSED):
        torch_weights.load_imagenet_weights(18)


def test_demo_refuses_a_crafted_encoder_and_exits_1(tmp_path, marker):
    folder = tmp_path / "weights"
    folder.mkdir()
    encoder = write_crafted(folder / "encoder.pdparams", marker)
    Image.new("RGB", (64, 32)).save(tmp_path / "image.jpg")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "demo.py"), "--image_path",
                          str(tmp_path / "image.jpg"), "--load_weights_folder", str(folder)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert encoder in run.stderr and "system" in run.stderr and "Traceback" not in run.stderr


def test_generator_state_is_json_and_old_pickles_are_read_safely(tmp_path, marker):
    paddle.seed(11)
    paddle.randn([4])
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "rng_state.json").write_text(json.dumps(rng_state_json()))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "rng_state.pkl").write_bytes(pickle.dumps(paddle.get_rng_state()))
    expected = paddle.randn([4]).numpy()
    for folder in ("new", "old"):
        paddle.set_rng_state(read_rng_state(str(tmp_path / folder)))
        np.testing.assert_array_equal(paddle.randn([4]).numpy(), expected)

    (tmp_path / "evil").mkdir()
    path = write_crafted(tmp_path / "evil" / "rng_state.pkl", marker)
    with pytest.raises(ValueError, match=REFUSED) as err:
        read_rng_state(str(tmp_path / "evil"))
    assert path in str(err.value)
    (tmp_path / "evil" / "rng_state.json").write_text('[[1, 2, "x"]]')
    with pytest.raises(ValueError, match="rng_state.json is not a random-generator state"):
        read_rng_state(str(tmp_path / "evil"))


def test_crafted_ground_truth_and_disparities_are_refused(tmp_path, marker):
    gt = str(tmp_path / "gt_depths.npz")
    np.savez(gt, data=np.array([_Exploit(marker)], dtype=object))
    with pytest.raises(ValueError, match="pickled object array") as err:
        GroundTruth(gt)
    assert gt in str(err.value)
    disps = str(tmp_path / "disps.npy")
    np.save(disps, np.array([_Exploit(marker)], dtype=object))
    opt = MonodepthOptions().parse(["--ext_disp_to_eval", disps])
    with pytest.raises(ValueError, match="--ext_disp_to_eval .*disps.npy: not a .npy array"):
        evaluate_depth.load_disparities(opt)


# ---- the training loop: Adam state of a weights folder, generator state under --resume

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def trainer_options(kitti_sample, tmp_path, *extra):
    split = tmp_path / "split"
    split.mkdir(exist_ok=True)
    for part in ("train", "val"):
        (split / "{}_files.txt".format(part)).write_text("{0} 1 l\n{0} 1 r\n".format(DRIVE))
    return MonodepthOptions().parse([
        "--data_path", kitti_sample, "--split", str(split), "--png", "--height", "64", "--width", "192",
        "--batch_size", "1", "--num_epochs", "1", "--weights_init", "scratch", "--num_workers", "0",
        "--log_dir", str(tmp_path / "logs"), "--seed", "3", "--frame_ids", "0", "--use_stereo"] + list(extra))


def test_trainer_refuses_crafted_adam_and_generator_state(kitti_sample, tmp_path, marker):
    first = Trainer(trainer_options(kitti_sample, tmp_path, "--model_name", "run"))
    first.save_last(0, 0)
    last = tmp_path / "logs" / "run" / "models" / "last"
    adam = write_crafted(last / "adam.pdparams", marker)
    with pytest.raises(SystemExit, match=REFUSED) as err:
        Trainer(trainer_options(kitti_sample, tmp_path, "--model_name", "other",
                                "--load_weights_folder", str(last), "--models_to_load", "encoder"))
    assert adam in str(err.value)

    first.save_last(0, 0)  # a sound checkpoint again, whose generator state is then replaced
    os.remove(last / "rng_state.json")
    rng = write_crafted(last / "rng_state.pkl", marker)
    with pytest.raises(SystemExit, match=REFUSED) as err:
        Trainer(trainer_options(kitti_sample, tmp_path, "--model_name", "run", "--resume"))
    assert rng in str(err.value)
