"""The published Paddle port's five notebook commands, typed as its users type them, on a
synthetic drive in the KITTI layout (as ~/data/kitti and ~/data/eigen) and a weights/ folder
made the way that port makes its files: an HDF5 ImageNet ResNet written with h5py, and weights
folders written as its trainer's save_model writes them. That saves each network's
state_dict() with paddle.save, the encoder's with height, width and use_stereo added, so under
Paddle 3.x encoder.pdparams is a pickled collections.OrderedDict and the others plain dicts."""
import json
import os
import pickle
import shlex
import shutil
import sys

import h5py
import numpy as np
import paddle
import pytest

import demo
import evaluate_depth
import export_gt_depth
import trainer
from conftest import ROOT
from network import DepthDecoder, PoseDecoder
from options import MonodepthOptions

sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_synthetic_kitti import generate_dataset  # noqa: E402

TRAIN = ("python train.py --model_name mono+stereo_model_640x192 --frame_ids 0 -1 1 --use_stereo "
         "--data_path ~/data/kitti --log_dir logs --num_workers 4 --weights_init weights/resnet18-pytorch")
FINE_TUNE = ("python train.py --model_name mono+stereo_model_1024x320 --frame_ids 0 -1 1 --use_stereo "
             "--data_path ~/data/kitti --height 320 --width 1024 --load_weights_folder weights/best_640x192/ "
             "--log_dir logs --num_workers 4 --batch_size 4 --num_epochs 2 --learning_rate 5e-5")
EXPORT_GT = "python export_gt_depth.py --data_path ~/data/eigen --split eigen"
EVALUATE = ("python evaluate_depth.py --load_weights_folder weights/best_1024x320/ --eval_stereo "
            "--data_path ~/data/eigen --num_workers 4")
# The port's demo.py has no default weights folder: its notebook names the image and the folder.
DEMO = "python demo.py --image_path assets/test_image.jpg --load_weights_folder weights/best_1024x320/"


def typed(command):
    """The arguments a shell would hand the script (~ expanded)."""
    return [os.path.expanduser(word) for word in shlex.split(command)[2:]]


def torchvision_names(state_dict):
    """A Paddle ResNet state dict under torchvision's names and layouts, as the port's .h5."""
    out = {}
    for name, value in state_dict.items():
        value = value.numpy()
        if name.endswith("._mean"):
            out[name[:-len("_mean")] + "running_mean"] = value
            out[name[:-len("_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
        elif name.endswith("._variance"):
            out[name[:-len("_variance")] + "running_var"] = value
        else:
            out[name] = value.T if name == "fc.weight" else value
    return out


class PortResnetEncoder(paddle.nn.Layer):
    """The port's encoder: paddle.vision's ResNet-18 as its `encoder`, whose first convolution
    takes `images` stacked frames (the pose encoder's two)."""

    def __init__(self, images=1):
        super().__init__()
        self.encoder = paddle.vision.models.resnet18()
        if images > 1:
            self.encoder.conv1 = paddle.nn.Conv2D(3 * images, 64, 7, 2, 3, bias_attr=False)


def port_folder(folder, height, width, seed):
    """A weights folder saved as the port's Trainer.save_model saves one (its networks' parameter
    names are those of PortResnetEncoder and of this project's decoders)."""
    paddle.seed(seed)
    num_ch_enc = np.array([64, 64, 128, 256, 512])
    models = {"encoder": PortResnetEncoder(), "depth": DepthDecoder(num_ch_enc, range(4)),
              "pose_encoder": PortResnetEncoder(images=2), "pose": PoseDecoder(num_ch_enc, 1, 2)}
    os.makedirs(folder)
    for name, model in models.items():
        to_save = model.state_dict()
        if name == "encoder":
            to_save["height"] = height
            to_save["width"] = width
            to_save["use_stereo"] = True
        paddle.save(to_save, os.path.join(folder, "{}.pdparams".format(name)))


def pickled_globals(path):
    """The (module, name) pairs a pickle file we wrote ourselves imports when loaded."""
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    with open(path, "rb") as f:
        Recorder(f).load()
    return found


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A home with ~/data/kitti and ~/data/eigen, a working folder with weights/ and assets/,
    and split files for the synthetic drive under the standard names."""
    root = tmp_path_factory.mktemp("port_user")
    home, work, splits = root / "home", root / "work", root / "splits"
    kitti = home / "data" / "kitti"
    generate_dataset(str(kitti), num_frames=5, width=192, height=64, test_frames=2, workers=1)
    (home / "data" / "eigen").symlink_to(kitti)
    lines = {part: open(kitti / "splits" / "{}_files.txt".format(part)).read().split("\n")
             for part in ("train", "val", "test")}
    (splits / "eigen_zhou").mkdir(parents=True)
    (splits / "eigen").mkdir()
    (splits / "eigen_zhou" / "train_files.txt").write_text(lines["train"][0] + "\n")
    (splits / "eigen_zhou" / "val_files.txt").write_text(lines["val"][0] + "\n")
    (splits / "eigen" / "test_files.txt").write_text(open(kitti / "splits" / "test_files.txt").read())

    (work / "weights").mkdir(parents=True)
    paddle.seed(5)
    imagenet = torchvision_names(paddle.vision.models.resnet18().state_dict())
    with h5py.File(work / "weights" / "resnet18-pytorch.h5", "w") as f:
        for name, value in imagenet.items():
            f.create_dataset(name, data=value)
    port_folder(str(work / "weights" / "best_640x192"), 192, 640, 6)
    port_folder(str(work / "weights" / "best_1024x320"), 320, 1024, 7)
    (work / "assets").mkdir()
    shutil.copy(os.path.join(ROOT, "assets", "test_image.jpg"), work / "assets")
    return dict(home=home, work=work, splits=splits, imagenet=imagenet)


@pytest.fixture
def user(made, monkeypatch, tmp_path):
    """In the working folder, with ~ at the made home, the splits in place and no ImageNet file."""
    monkeypatch.setenv("HOME", str(made["home"]))
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path / "no_imagenet"))
    monkeypatch.chdir(made["work"])
    for module in (trainer, evaluate_depth, export_gt_depth):
        monkeypatch.setattr(module, "SPLITS_DIR", str(made["splits"]))
    return made


def budget(opt):
    """One training step of one sample: a 640x192 batch of 12 for 20 epochs takes hours on the
    CPU. Everything else (sizes, weights, paths, workers) stays as typed."""
    opt.batch_size, opt.num_epochs = 1, 1
    return opt


def plain_copy(folder, to):
    """`folder` with its encoder.pdparams re-saved as a plain dict: what the port's folders had to
    be turned into before OrderedDict pickles were read."""
    shutil.copytree(folder, to)
    encoder = dict(paddle.load(os.path.join(folder, "encoder.pdparams")))
    paddle.save(encoder, os.path.join(to, "encoder.pdparams"))
    assert ("collections", "OrderedDict") not in pickled_globals(os.path.join(to, "encoder.pdparams"))
    return to


def test_the_folders_are_pickled_as_the_port_pickles_them(made):
    for folder in ("best_640x192", "best_1024x320"):
        path = made["work"] / "weights" / folder
        assert ("collections", "OrderedDict") in pickled_globals(path / "encoder.pdparams")
        for name in ("depth", "pose_encoder", "pose"):
            assert pickled_globals(path / (name + ".pdparams")) <= {
                ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}


def test_train_from_the_port_h5_file(user):
    opt = MonodepthOptions().parse(typed(TRAIN))
    assert (opt.weights_init, opt.height, opt.width, opt.batch_size) == ("weights/resnet18-pytorch", 192, 640, 12)
    run = trainer.Trainer(budget(opt))
    conv1 = user["imagenet"]["conv1.weight"]
    np.testing.assert_array_equal(run.models["encoder"].encoder.conv1.weight.numpy(), conv1)
    np.testing.assert_array_equal(run.models["encoder"].encoder.fc.weight.numpy(), user["imagenet"]["fc.weight"].T)
    np.testing.assert_allclose(run.models["pose_encoder"].encoder.conv1.weight.numpy(),
                               np.concatenate([conv1, conv1], 1) / 2, rtol=1e-6)
    run.train()
    models = user["work"] / "logs" / "mono+stereo_model_640x192" / "models"
    assert os.path.realpath(models / "weights_best") == os.path.realpath(models / "best")
    encoder = paddle.load(str(models / "weights_best" / "encoder.pdparams"), return_numpy=True)
    assert (encoder["height"], encoder["width"], encoder["use_stereo"]) == (192, 640, True)


def test_fine_tune_from_a_port_folder_needs_no_imagenet_file(user):
    opt = MonodepthOptions().parse(typed(FINE_TUNE))
    assert (opt.weights_init, opt.learning_rate, opt.num_epochs) == ("pretrained", 5e-5, 2)
    run = trainer.Trainer(budget(opt))
    for name, model in run.models.items():  # every network starts from the port's weights
        saved = paddle.load(os.path.join("weights", "best_640x192", name + ".pdparams"), return_numpy=True)
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value.numpy(), saved[key], err_msg="{} {}".format(name, key))
    assert run.train_dataset[0][("color", 0, 0)].shape == (3, 320, 1024)
    run.train()  # one 1024x320 step (about 30 s here)
    encoder = paddle.load(str(user["work"] / "logs" / "mono+stereo_model_1024x320" / "models" / "weights_0" /
                              "encoder.pdparams"), return_numpy=True)
    assert (encoder["height"], encoder["width"]) == (320, 1024)
    assert not np.array_equal(encoder["encoder.conv1.weight"], paddle.load(
        os.path.join("weights", "best_640x192", "encoder.pdparams"), return_numpy=True)["encoder.conv1.weight"])


@pytest.mark.parametrize("resize", ["", " --resize nearest"], ids=["as_typed", "resize_nearest"])
def test_evaluate_a_port_folder(user, capsys, tmp_path, resize):
    export_gt_depth.main(typed(EXPORT_GT))
    assert os.path.isfile(user["splits"] / "eigen" / "gt_depths.npz")
    evaluate_depth.main(typed(EVALUATE + resize + " --save_pred_disps"))
    out = capsys.readouterr().out
    assert "Computing predictions with size 1024x320" in out
    result = json.load(open(os.path.join("weights", "best_1024x320", "eval_depth_eigen.json")))
    assert result["num_images"] == 2 and result["mode"] == "stereo"
    assert all(np.isfinite(v) for v in result["metrics"].values())
    disps = np.load(os.path.join("weights", "best_1024x320", "disps_eigen_split.npy"))
    # the same weights from a plain-dict encoder file give the same disparities, bit for bit
    plain = plain_copy(os.path.join("weights", "best_1024x320"), str(tmp_path / "plain"))
    evaluate_depth.main(typed(EVALUATE.replace("weights/best_1024x320/", plain) + resize + " --save_pred_disps"))
    np.testing.assert_array_equal(disps, np.load(os.path.join(plain, "disps_eigen_split.npy")))


def test_demo_on_the_shipped_image(user, tmp_path):
    demo.main(typed(DEMO))
    disp = np.load(os.path.join("assets", "test_image_disp.npy"))
    assert disp.shape == (1, 1, 320, 1024) and np.isfinite(disp).all()
    assert os.path.isfile(os.path.join("assets", "test_image_disp.jpeg"))
    plain = plain_copy(os.path.join("weights", "best_1024x320"), str(tmp_path / "plain"))
    shutil.copy(os.path.join("assets", "test_image.jpg"), tmp_path)
    demo.main(["--image_path", str(tmp_path / "test_image.jpg"), "--load_weights_folder", plain])
    np.testing.assert_array_equal(disp, np.load(str(tmp_path / "test_image_disp.npy")))
