"""The run folder of the training loop: an earlier run is continued or replaced only when
asked, --resume keeps the options, an interrupted checkpoint save is repaired at the next
start, and a non-finite loss says which checkpoint exists."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import utils
from conftest import ROOT
from options import MonodepthOptions
from trainer import Trainer



@pytest.fixture
def trainer(tiny_drive, tmp_path):
    """Trainer(extra options) of the run "run" on the tiny_drive, at 64x192, stereo only."""
    def make(*extra):
        return Trainer(MonodepthOptions().parse([
            "--data_path", tiny_drive, "--split", os.path.join(tiny_drive, "splits"), "--height", "64",
            "--width", "192",
            "--batch_size", "2", "--num_epochs", "1", "--weights_init", "scratch", "--frame_ids", "0",
            "--use_stereo", "--num_workers", "0", "--seed", "1", "--log_dir", str(tmp_path / "logs"),
            "--model_name", "run"] + list(extra)))
    return make


def test_an_earlier_run_is_only_continued_or_replaced_when_asked(trainer, tmp_path):
    trainer()
    models = tmp_path / "logs" / "run" / "models"
    (models / "weights_0").mkdir()
    with pytest.raises(SystemExit, match=r"logs/run already holds a run \(models, train, val\): continue it with "
                                         r"--resume, or start it again with --overwrite"):
        trainer()
    assert (models / "weights_0").is_dir()
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(["--resume", "--overwrite"])
    trainer("--overwrite")
    assert not (models / "weights_0").exists() and (models / "opt.json").is_file()


@pytest.mark.parametrize("name", ["", " ", "/tmp/elsewhere", "..", "../run", "a/../../run", ".", "a/.."])
def test_a_model_name_that_leaves_the_log_dir_is_refused(name, capsys):
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(["--model_name", name])
    assert "--model_name {!r} must name a folder inside --log_dir (not empty, not an absolute path, no '..')".format(
        name) in capsys.readouterr().err
    assert MonodepthOptions().parse(["--model_name", "group/run"]).model_name == "group/run"


def test_overwrite_deletes_only_what_a_run_writes_once_the_new_run_has_started(trainer, tmp_path, capsys):
    trainer().save_model("weights_0")
    run = tmp_path / "logs" / "run"
    (run / "models" / "notes.txt").write_text("mine")
    (run / "train" / "plot.png").write_bytes(b"mine")
    (run / "data").mkdir()
    with pytest.raises(SystemExit, match="neither pretrained"):  # a start that fails deletes nothing
        trainer("--overwrite", "--weights_init", str(tmp_path / "missing.pdparams"))
    assert (run / "models" / "weights_0" / "depth.pdparams").is_file()
    capsys.readouterr()
    trainer("--overwrite")
    out = capsys.readouterr().out
    assert "--overwrite left {}: a run does not write it".format(run / "models" / "notes.txt") in out
    assert sorted(os.listdir(run / "models")) == ["notes.txt", "opt.json"]
    assert (run / "train" / "plot.png").read_bytes() == b"mine" and (run / "data").is_dir()
    assert len([n for n in os.listdir(run / "train") if n.startswith("vdlrecords.")]) == 1


@pytest.mark.parametrize("failure", [["--weights_init", "missing.pdparams"], ["--split", "missing_split"]])
def test_a_failed_start_leaves_no_run_folder(trainer, tmp_path, failure):
    with pytest.raises(SystemExit):
        trainer(*failure)
    assert not (tmp_path / "logs").exists()
    (tmp_path / "logs" / "run").mkdir(parents=True)  # a folder that was there stays
    with pytest.raises(SystemExit):
        trainer(*failure)
    assert os.listdir(tmp_path / "logs" / "run") == []


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(trainer, tmp_path):
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, run_folder; run_folder.lock(sys.argv[1]); "
                               "print('locked', flush=True); sys.stdin.read()", str(run)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(SystemExit) as stop:
            trainer()
        assert str(stop.value) == ("{} is in use by another run (process {}): wait until it ends, or give another "
                                   "--model_name".format(run, holder.pid))
        assert os.listdir(run) == [".lock"]  # nothing of the run that holds it was touched
    finally:
        holder.communicate("", timeout=60)  # it ends, and with it its lock
    trainer()
    assert (run / "models" / "opt.json").is_file()


def test_resume_refuses_options_that_change_the_run(trainer):
    trainer().save_last(0, 1)
    with pytest.raises(SystemExit, match=r"has other options: --height 64 \(now 96\), --width 192 \(now 320\), "
                                         r"--learning_rate 0.0001 \(now 0.001\)"):
        trainer("--resume", "--height", "96", "--width", "320", "--learning_rate", "1e-3")
    resumed = trainer("--resume", "--num_workers", "2", "--num_epochs", "3")  # these do not change the run
    assert (resumed.epoch, resumed.start_batch) == (0, 1)


@pytest.mark.parametrize("killed_at, complete", [
    (1, False),  # at the rename that marks the written files complete: the previous checkpoint stays
    (2, True),   # before the previous checkpoint is moved aside: the new one replaces it
    (3, True),   # between the renames, models/last missing: the new one, not the previous
    ("deleting the old folder", True),
])
def test_a_save_killed_midway_is_repaired_at_the_next_start(trainer, tmp_path, monkeypatch, capsys, killed_at,
                                                            complete):
    first = trainer()
    first.save_last(0, 1)
    models = tmp_path / "logs" / "run" / "models"
    saved = utils.read_weights(str(models / "last" / "depth.pdparams"))
    first.step = 99
    real_replace, real_rmtree, renames = os.replace, shutil.rmtree, []

    def kill_at_rename(src, dst):
        renames.append(dst)
        if len(renames) == killed_at:
            raise KeyboardInterrupt  # stands for a kill -9
        real_replace(src, dst)

    def kill_at_deleting_the_old_folder(path, *args, **kwargs):
        if ".old_" in str(path):
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)

    if killed_at == "deleting the old folder":
        monkeypatch.setattr(shutil, "rmtree", kill_at_deleting_the_old_folder)
    else:
        monkeypatch.setattr(os, "replace", kill_at_rename)
        monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)  # a kill cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        first.save_last(0, 2)
    monkeypatch.undo()
    assert (models / "last").is_dir() == (killed_at != 3)
    (models / ".tmp_lastABCDEFGH").mkdir()  # an older half-written save
    (models / ".tmp_lastABCDEFGH" / "encoder.pdparams").write_bytes(b"half")

    resumed = trainer("--resume")
    out = capsys.readouterr().out
    assert sorted(os.listdir(models)) == ["last", "opt.json"]
    state = json.load(open(models / "last" / "trainer.json"))
    if complete:  # the newest complete checkpoint is kept
        assert (state["batch"], resumed.start_batch, resumed.step) == (2, 2, 99)
    else:  # the previous checkpoint is kept
        assert (state["batch"], resumed.start_batch, resumed.step) == (1, 1, 0)
        np.testing.assert_array_equal(utils.read_weights(str(models / "last" / "depth.pdparams"))
                                      ["decoder.0.conv.conv.weight"], saved["decoder.0.conv.conv.weight"])
    if killed_at in (2, 3):
        assert "completed the interrupted save of {}".format(models / "last") in out
    assert "left by an interrupted save" in out


def test_a_non_finite_loss_says_which_checkpoint_exists(trainer, tmp_path):
    for checkpoint in (False, True):
        run = trainer("--overwrite")
        if checkpoint:
            run.save_last(0, 0)
        bias = run.models["depth"].convs[("dispconv", 0)].conv.bias
        bias.set_value(np.full(bias.shape, np.nan, np.float32))
        with pytest.raises(SystemExit) as stop:
            run.train()
        last = tmp_path / "logs" / "run" / "models" / "last"
        expected = ("the last checkpoint is {} (epoch 0, batch 0), its weights are finite: --resume continues "
                    "from it".format(last) if checkpoint else
                    "no checkpoint has been written yet (there is no {})".format(last))
        assert re.search(r"the weights have diverged: depth\.decoder\.\d+\.conv\.bias holds values that are not "
                         r"finite; " + re.escape(expected) + "$", str(stop.value))


def test_diverged_weights_are_not_saved_and_a_diverged_checkpoint_is_named(trainer, tmp_path):
    run = trainer()
    run.save_last(0, 1)
    last = tmp_path / "logs" / "run" / "models" / "last"
    good = utils.read_weights(str(last / "depth.pdparams"))
    weight = run.models["depth"].convs[("dispconv", 0)].conv.weight
    for value in (1e10, np.inf):
        weight.set_value(np.full(weight.shape, value, np.float32))
        for save in (lambda: run.save_last(0, 2), lambda: run.save_model("weights_0")):
            with pytest.raises(SystemExit, match=r"^the weights have diverged \(depth\.decoder\.\d+\.conv\.weight "
                                                 r"(reaches 1e\+10|holds values that are not finite)\): .* was not "
                                                 r"written, it keeps its last good version; the last checkpoint is "
                                                 r".*last \(epoch 0, batch 1\), its weights are finite"):
                save()
    assert sorted(os.listdir(last.parent)) == ["last", "opt.json"]
    kept = utils.read_weights(str(last / "depth.pdparams"))
    for name, value in good.items():
        np.testing.assert_array_equal(kept[name], value)
    # a checkpoint with such weights (written by an older version) is named as diverged
    depth = dict(good, **{name: np.full(np.shape(v), 1e10, np.float32) for name, v in good.items()
                          if isinstance(v, np.ndarray)})
    utils.save_atomic(depth, str(last / "depth.pdparams"))
    with pytest.raises(SystemExit, match=r"the last checkpoint is .*last \(epoch 0, batch 1\), but its weights "
                                         r"have diverged too \(depth.pdparams: .* reaches 1e\+10\): start again "
                                         r"from an earlier weights_N"):
        run.save_last(0, 2)


@pytest.mark.parametrize("damage, what", [
    (lambda text: text[:len(text) // 2], "Expecting"),  # truncated
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "step"}), "no 'step'"),
    (lambda text: json.dumps(dict(json.loads(text), batch="1")), "'batch' is '1', not a non-negative integer"),
    (lambda text: json.dumps(dict(json.loads(text), best_val_loss=None)), "no 'best_val_loss'"),
    (lambda text: "[1, 2]", "not a JSON object"),
])
def test_a_damaged_trainer_json_says_what_to_do(trainer, tmp_path, damage, what):
    trainer().save_last(0, 1)
    path = tmp_path / "logs" / "run" / "models" / "last" / "trainer.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(SystemExit) as stop:
        trainer("--resume")
    message = str(stop.value)
    assert message.startswith("--resume: {} is damaged (".format(path)) and what in message
    assert message.endswith("start the run again with --overwrite, optionally from these weights with "
                            "--load_weights_folder {} (copy them elsewhere first: --overwrite deletes them)".format(
                                path.parent))
