"""The training step for every option, its replay of per-pixel choices, the schedule and checkpoints."""
import errno
import os

import numpy as np
import paddle
import pytest

from options import MonodepthOptions
from model import MonodepthModel
from trainer import Trainer, lr_factor
from utils import load_weights, save_folder_atomic


def synthetic_batch(opt, seed=0):
    """A batch keyed as the loaders' (K for a KITTI-like camera) from random images."""
    rng = np.random.RandomState(seed)
    frames = list(opt.frame_ids) + (["s"] if opt.use_stereo else [])
    batch = {}
    for s in range(4):
        h, w = opt.height // 2 ** s, opt.width // 2 ** s
        K = np.array([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                     np.float32)
        batch[("K", s)] = np.stack([K] * opt.batch_size)
        batch[("inv_K", s)] = np.stack([np.linalg.inv(K)] * opt.batch_size)
        for f in frames:
            img = rng.rand(opt.batch_size, 3, h, w).astype(np.float32)
            batch[("color", f, s)] = img
            batch[("color_aug", f, s)] = img
    T = np.eye(4, dtype=np.float32)
    T[0, 3] = 0.1
    batch["stereo_T"] = np.stack([T] * opt.batch_size)
    return {k: paddle.to_tensor(v) for k, v in batch.items()}


OPTION_SETS = [
    "--frame_ids 0 -1 1",
    "--frame_ids 0 --use_stereo",
    "--frame_ids 0 -1 1 --use_stereo --v1_multiscale",
    "--avg_reprojection",
    "--disable_automasking --predictive_mask --use_stereo",
    "--no_ssim --scales 0 2",
    "--pose_model_type posecnn",
    "--pose_model_type posecnn --pose_model_input all --use_stereo",
    "--pose_model_type shared",
    "--pose_model_type shared --pose_model_input all --use_stereo",
    "--pose_model_input all --frame_ids 0 -2 -1 1 2",
    "--amp --use_stereo",
]


@pytest.mark.parametrize("args", OPTION_SETS)
def test_every_option_set_trains_one_step(args):
    opt = MonodepthOptions().parse(("--height 64 --width 96 --batch_size 2 --weights_init scratch " + args).split())
    paddle.seed(0)
    model = MonodepthModel(opt)
    model.train()
    outputs, losses = model(synthetic_batch(opt))
    assert sorted(k for k in losses) == sorted(["loss"] + ["loss/{}".format(s) for s in opt.scales])
    assert np.isfinite(float(losses["loss"])) and float(losses["loss"]) > 0
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if not p.stop_gradient]
    assert all(g is not None for g in grads[:3])
    for s in opt.scales:
        size = [64 // 2 ** s, 96 // 2 ** s] if opt.v1_multiscale else [64, 96]
        for f in model.frame_ids[1:]:
            assert outputs[("color", f, s)].shape == [2, 3] + size
    if not opt.disable_automasking:
        assert outputs["identity_selection/{}".format(opt.scales[0])].shape == [2, 64, 96]


def small_model(seed):
    """Options, a model without tie-break noise in eval mode and a batch, at 64x96."""
    opt = MonodepthOptions().parse("--height 64 --width 96 --batch_size 2 --weights_init scratch".split())
    paddle.seed(seed)
    model = MonodepthModel(opt, tie_break_noise=False)
    model.eval()
    return opt, model, synthetic_batch(opt)


def test_tie_break_noise_is_tiny_and_optional():
    _, model, batch = small_model(1)
    with paddle.no_grad():
        a = float(model(batch)[1]["loss"])
        b = float(model(batch)[1]["loss"])
        model.tie_break_noise = True
        c = float(model(batch)[1]["loss"])
    assert a == b and abs(c - a) < 1e-5


def test_replayed_choices_decide_the_per_pixel_minimum():
    opt, model, batch = small_model(2)
    chosen, worst, own = {}, {}, model.minimum_choice

    def spy(combined, scale):
        chosen[scale] = own(combined, scale)[:, 0].numpy()
        worst[scale] = combined.argmax(1).numpy()
        return own(combined, scale)

    model.minimum_choice = spy
    with paddle.no_grad():
        free = float(model(batch)[1]["loss"])
        del model.minimum_choice
        model.replay_choices = chosen
        same = float(model(batch)[1]["loss"])
        model.replay_choices = worst
        forced = float(model(batch)[1]["loss"])
        model.replay_choices = {s: c[:, :-1] for s, c in chosen.items()}
        with pytest.raises(ValueError, match="scale 0"):
            model(batch)
    assert sorted(chosen) == opt.scales and same == free
    assert forced > free + 1e-3  # the largest candidate everywhere instead of the smallest


def test_learning_rate_drops_after_step_size_minus_one_epochs():
    assert [lr_factor(e, 15) for e in (0, 13)] == [1, 1]
    assert lr_factor(14, 15) == pytest.approx(0.1) and lr_factor(29, 15) == pytest.approx(0.01)


def test_checkpoint_folder_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    folder = str(tmp_path / "weights_0")
    save_folder_atomic({"a.pdparams": {"w": np.ones(2, np.float32)}}, folder)
    real_save = paddle.save

    def crash_on_second(obj, path, *args, **kwargs):
        if path.endswith("b.pdparams"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name, as a full disk says
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, "save", crash_on_second)
    with pytest.raises(OSError, match="cannot write {}: No space left on device".format(folder)):
        save_folder_atomic({"a.pdparams": {"w": np.zeros(2, np.float32)}, "b.pdparams": {}}, folder)
    assert sorted(os.listdir(tmp_path)) == ["weights_0"]
    assert sorted(os.listdir(folder)) == ["a.pdparams"]
    np.testing.assert_array_equal(paddle.load(os.path.join(folder, "a.pdparams"))["w"], [1, 1])


def test_load_weights_names_the_file_on_mismatch(tmp_path):
    from network import DepthDecoder, ResnetEncoder
    encoder = ResnetEncoder(18, False)
    path = str(tmp_path / "encoder.pdparams")
    paddle.save(dict(encoder.state_dict(), height=64, width=96, use_stereo=False), path)
    other = ResnetEncoder(18, False)
    assert load_weights(other, path)["height"] == 64
    np.testing.assert_array_equal(other.encoder.conv1.weight.numpy(), encoder.encoder.conv1.weight.numpy())
    with pytest.raises(ValueError, match="encoder.pdparams.*num_layers"):
        load_weights(ResnetEncoder(50, False), path)
    with pytest.raises(ValueError, match="encoder.pdparams"):
        load_weights(DepthDecoder(encoder.num_ch_enc), path)
    with pytest.raises(FileNotFoundError, match="depth.pdparams"):
        load_weights(encoder, str(tmp_path / "depth.pdparams"))


@pytest.mark.parametrize("log_dir", ["a_file/logs", "/proc/no_such_folder"])
def test_a_log_dir_that_cannot_be_written_is_a_clear_error(tmp_path, monkeypatch, log_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="--log_dir {}: cannot write {}/mdp: ".format(log_dir, log_dir)):
        Trainer(MonodepthOptions().parse(["--log_dir", log_dir, "--weights_init", "scratch"]))


def test_a_resumed_run_needs_its_adam_state(tmp_path):
    from checkpoint import load_checkpoint, save_checkpoint
    opt, model, batch = small_model(3)
    optimizer = paddle.optimizer.Adam(1e-4, parameters=model.parameters())
    model.train()
    model(batch)[1]["loss"].backward()
    optimizer.step()  # Adam has state for every parameter from its first step on
    folder = str(tmp_path / "last")
    save_checkpoint(folder, model.models, optimizer, opt)
    load_checkpoint(folder, model.models, list(model.models.keys()), optimizer, resuming=True)
    os.remove(os.path.join(folder, "adam.pdparams"))
    load_checkpoint(folder, model.models, list(model.models.keys()), optimizer)  # fine-tuning: a fresh Adam
    with pytest.raises(SystemExit, match="--resume: .*adam.pdparams is missing"):
        load_checkpoint(folder, model.models, list(model.models.keys()), optimizer, resuming=True)
