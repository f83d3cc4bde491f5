"""The training loop on real KITTI frames: checkpoints, fine-tuning, resuming, failures, two processes."""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import ROOT
from options import MonodepthOptions
from trainer import COLLAPSE_SPREAD, Trainer, collapse_message

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


@pytest.fixture
def split(tmp_path, kitti_sample):
    folder = tmp_path / "split"
    folder.mkdir()
    for part in ("train", "val"):
        (folder / "{}_files.txt".format(part)).write_text("{0} 1 l\n{0} 1 r\n".format(DRIVE))
    return str(folder)


def options(split, kitti_sample, tmp_path, *extra):
    args = ["--data_path", kitti_sample, "--split", split, "--png", "--height", "64", "--width", "192",
            "--batch_size", "1", "--num_epochs", "2", "--weights_init", "scratch", "--num_workers", "0",
            "--log_dir", str(tmp_path / "logs"), "--seed", "3", "--frame_ids", "0", "-1", "1", "--use_stereo",
            "--log_frequency", "1"] + list(extra)
    return MonodepthOptions().parse(args)


def weights(folder, name="depth"):
    return paddle.load(os.path.join(folder, name + ".pdparams"), return_numpy=True)


def test_checkpoints_logs_and_fine_tuning_at_another_resolution(split, kitti_sample, tmp_path):
    Trainer(options(split, kitti_sample, tmp_path, "--model_name", "a")).train()
    models = tmp_path / "logs" / "a" / "models"
    assert sorted(os.listdir(models)) == ["best", "last", "opt.json", "weights_0", "weights_1", "weights_best"]
    assert os.readlink(models / "weights_best") == "best"  # the published port's name
    assert sorted(os.listdir(models / "weights_1")) == [
        "adam.pdparams", "depth.pdparams", "encoder.pdparams", "pose.pdparams", "pose_encoder.pdparams"]
    encoder = weights(str(models / "weights_1"), "encoder")
    assert (encoder["height"], encoder["width"], encoder["use_stereo"]) == (64, 192, True)
    assert json.load(open(models / "opt.json"))["frame_ids"] == [0, -1, 1, "s"]
    assert os.listdir(tmp_path / "logs" / "a" / "train")  # VisualDL events
    before = weights(str(models / "weights_0"))["decoder.0.conv.conv.weight"]
    after = weights(str(models / "weights_1"))["decoder.0.conv.conv.weight"]
    assert not np.array_equal(before, after)

    fine = Trainer(options(split, kitti_sample, tmp_path, "--model_name", "b", "--height", "96", "--width", "320",
                           "--load_weights_folder", str(models / "weights_1"),
                           "--models_to_load", "encoder", "depth"))
    np.testing.assert_array_equal(fine.models["depth"].state_dict()["decoder.0.conv.conv.weight"].numpy(), after)


def test_an_interrupted_run_resumes_to_the_same_weights(split, kitti_sample, tmp_path, monkeypatch):
    Trainer(options(split, kitti_sample, tmp_path, "--model_name", "whole")).train()

    interrupted = Trainer(options(split, kitti_sample, tmp_path, "--model_name", "cut", "--checkpoint_minutes", "0"))
    real_step, calls = interrupted.optimizer.step, []

    def step_then_crash():
        calls.append(1)
        if len(calls) == 3:  # killed in the middle of the second epoch
            raise KeyboardInterrupt
        real_step()

    monkeypatch.setattr(interrupted.optimizer, "step", step_then_crash)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    state = json.load(open(tmp_path / "logs" / "cut" / "models" / "last" / "trainer.json"))
    assert (state["epoch"], state["batch"]) == (1, 0)

    with pytest.raises(SystemExit, match="the run used --batch_size 1, not 2"):
        Trainer(options(split, kitti_sample, tmp_path, "--model_name", "cut", "--resume", "--batch_size", "2"))
    Trainer(options(split, kitti_sample, tmp_path, "--model_name", "cut", "--resume")).train()
    for name in ("encoder", "depth", "pose"):
        whole = weights(str(tmp_path / "logs" / "whole" / "models" / "weights_1"), name)
        resumed = weights(str(tmp_path / "logs" / "cut" / "models" / "weights_1"), name)
        for key, value in whole.items():
            if isinstance(value, str):  # what the encoder file records: kind, dataset
                assert resumed[key] == value, key
            else:
                np.testing.assert_allclose(resumed[key], value, rtol=1e-5, atol=1e-7, err_msg=key)


def test_resume_without_a_checkpoint_and_bad_weights_folder_are_clear_errors(split, kitti_sample, tmp_path):
    with pytest.raises(SystemExit, match="--resume: no checkpoint"):
        Trainer(options(split, kitti_sample, tmp_path, "--model_name", "none", "--resume"))
    with pytest.raises(SystemExit, match="only with 18 or 50 layers"):
        Trainer(options(split, kitti_sample, tmp_path, "--num_layers", "34"))
    with pytest.raises(SystemExit, match="no such folder"):
        Trainer(options(split, kitti_sample, tmp_path, "--load_weights_folder", str(tmp_path / "nope")))


def test_a_non_finite_loss_stops_the_run_naming_the_step(split, kitti_sample, tmp_path):
    trainer = Trainer(options(split, kitti_sample, tmp_path, "--model_name", "nan"))
    bias = trainer.models["depth"].convs[("dispconv", 0)].conv.bias
    bias.set_value(np.full(bias.shape, np.nan, np.float32))
    with pytest.raises(SystemExit, match=r"loss is not finite at epoch 0, batch 0 \(step 0\)"):
        trainer.train()
    assert "last" not in os.listdir(tmp_path / "logs" / "nan" / "models")  # no broken weights saved


def test_two_processes_train_like_one(split, kitti_sample, tmp_path):
    """paddle.distributed.launch on the CPU (gloo): each process takes half of every batch."""
    args = ["--data_path", kitti_sample, "--split", split, "--png", "--height", "64", "--width", "192",
            "--batch_size", "2", "--num_epochs", "1", "--weights_init", "scratch", "--num_workers", "0",
            "--log_dir", str(tmp_path / "logs"), "--seed", "3", "--frame_ids", "0", "--use_stereo",
            "--model_name", "two", "--device", "cpu"]
    env = dict(os.environ, PADDLE_DISTRI_BACKEND="gloo")
    run = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "launch"), os.path.join(ROOT, "train.py")] + args,
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(open(tmp_path / "launch" / f).read() for f in os.listdir(tmp_path / "launch"))
    assert run.returncode == 0, run.stdout[-2000:] + logs[-3000:]
    assert "cpu x 2" in run.stdout + logs
    assert "weights_0" in os.listdir(tmp_path / "logs" / "two" / "models")


def batch_norm_statistics(layers):
    return {(name, key): value.numpy().copy() for name, layer in layers.items()
            for key, value in layer.state_dict().items() if key.endswith(("._mean", "._variance"))}


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_the_statistics_and_visualdl_frequency_sets_the_logs(split, kitti_sample, tmp_path,
                                                                             monkeypatch, freeze):
    extra = ["--freeze_bn", "--visualdl_frequency", "1"] if freeze else []
    run = Trainer(options(split, kitti_sample, tmp_path, "--model_name", "bn", "--num_epochs", "1",
                          "--log_frequency", "250", *extra))
    before = batch_norm_statistics(run.models)
    conv_before = run.models["depth"].state_dict()["decoder.0.conv.conv.weight"].numpy().copy()
    logged = []
    real_log = run.log
    monkeypatch.setattr(run, "log", lambda mode, *a: (logged.append(mode), real_log(mode, *a)))
    run.train()
    after = batch_norm_statistics(run.models)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert (changed == []) == freeze, changed[:3]
    assert not np.array_equal(conv_before, run.models["depth"].state_dict()["decoder.0.conv.conv.weight"].numpy())
    # two batches: VisualDL after each with --visualdl_frequency 1, else with the console log (batch 0)
    assert logged.count("train") == (2 if freeze else 1)


@pytest.mark.parametrize("args, message", [
    (["--num_gpus", "2"], "python -m paddle.distributed.launch --gpus 0,1 train.py"),
    (["--split", "no_such_split"], "split file .*no_such_split.*python tools/get_splits.py"),
    (["--data_path", "{tmp}/nowhere"], "--data_path .*nowhere: no such folder"),
    (["--data_path", "{tmp}"], r"--data_path .* lacks frames of --split .*: split line 1 .* is missing"),
])
def test_start_up_errors_name_the_fix(split, kitti_sample, tmp_path, args, message):
    with pytest.raises(SystemExit) as stop:
        Trainer(options(split, kitti_sample, tmp_path, *[a.format(tmp=tmp_path) for a in args]))
    assert re.search(message, str(stop.value)), str(stop.value)
    assert "skip_missing" not in str(stop.value)


def test_fine_tuning_needs_imagenet_weights_only_for_encoders_the_folder_lacks(tmp_path):
    from model import encoder_init
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "encoder.pdparams").write_bytes(b"")
    opt = MonodepthOptions().parse(["--load_weights_folder", str(folder)])
    assert encoder_init(opt) == "pretrained"  # no pose_encoder.pdparams
    (folder / "pose_encoder.pdparams").write_bytes(b"")
    assert encoder_init(opt) == "scratch"
    opt.models_to_load = ["encoder", "depth"]
    assert encoder_init(opt) == "pretrained"
    stereo = MonodepthOptions().parse(["--frame_ids", "0", "--use_stereo", "--weights_init", "x.h5",
                                       "--load_weights_folder", str(folder), "--models_to_load", "encoder"])
    assert encoder_init(stereo) == "scratch"  # no pose network
    assert encoder_init(MonodepthOptions().parse(["--weights_init", "x.h5"])) == "x.h5"


def test_collapse_detector_names_the_likely_cause():
    opt = MonodepthOptions().parse(["--min_depth", "1"])
    assert collapse_message(0.2, 0.9, opt) is None and collapse_message(0.5, 0.5 + COLLAPSE_SPREAD, opt) is None
    near = collapse_message(0.9999, 1.0, opt)  # depth = --min_depth everywhere
    assert "training has collapsed" in near and "a depth of 1 everywhere" in near
    assert "--min_depth 1.0 is likely too large" in near and "mono learns with the default 0.1" in near
    far = collapse_message(0.0, 0.0005, opt)
    assert "--max_depth 100.0 is likely too small, or the camera does not move" in far


def test_a_collapsed_run_is_reported_and_progress_shows_within_the_epoch(split, kitti_sample, tmp_path, capsys):
    trainer = Trainer(options(split, kitti_sample, tmp_path, "--model_name", "flat", "--num_epochs", "1",
                              "--log_frequency", "250", "--frame_ids", "0", "-1", "1", "--min_depth", "1"))
    for s in range(4):  # every pixel at the largest disparity, saturated so that it stays there
        conv = trainer.models["depth"].convs[("dispconv", s)].conv
        conv.weight.set_value(np.zeros(conv.weight.shape, np.float32))
        conv.bias.set_value(np.full(conv.bias.shape, 30, np.float32))
    capsys.readouterr()
    trainer.train()
    out = capsys.readouterr().out
    assert "WARNING: training has collapsed: the disparity is 1.0000..1.0000 over the whole validation set, " \
           "a depth of 1 everywhere. --min_depth 1.0 is likely too large" in out
    # not a terminal: a line about every tenth of the epoch (here each of its 2 batches), not only every 250
    assert re.findall(r"epoch   0 \| batch +(\d+)", out) == ["0", "1"]


def test_time_left_is_estimated_from_the_first_step(monkeypatch, capsys):
    import trainer as trainer_module
    monkeypatch.setattr(trainer_module.time, "time", lambda: 102.0)
    state = argparse.Namespace(opt=argparse.Namespace(batch_size=4), start_time=100.0, step=0, first_step=0,
                               num_total_steps=11, epoch=0)
    Trainer.log_time(state, 0, 2.0, 0.5)
    assert "time elapsed: 00h00m02s | time left: 00h00m20s" in capsys.readouterr().out
