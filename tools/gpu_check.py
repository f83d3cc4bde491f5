"""GPU self-check: run it on any machine with paddlepaddle-gpu (python tools/gpu_check.py).

It prints the device and versions, then checks on a small synthetic drive, with the project's
own trainer, training step and export:
- a few training steps on one batch, without and with --amp: every loss finite, the last
  below the first;
- one training step's loss and gradients on the GPU against the same step on the CPU (same
  weights and batch, the CPU's per-pixel minimum choices replayed on the GPU, so only kernel
  round-off tells them apart; the warp's grid_sample gradient, which needs the image as a
  leaf asking for a gradient (DEVELOPERS.md), is part of it);
- the exported model through Paddle Inference on the GPU against the eager network;
and ends with a table of pass/fail and timings. Exit status 1 when a check fails. Without a
GPU it says so and exits 0; --device cpu runs every check on the CPU (the comparison is then
CPU against CPU), which the tests use."""
import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cpu_threads  # noqa: E402,F401  (before paddle: sets its CPU thread count)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

import export_model  # noqa: E402
import inference  # noqa: E402
from make_synthetic_kitti import generate_dataset  # noqa: E402
from model import MonodepthModel  # noqa: E402
from options import MonodepthOptions  # noqa: E402
from trainer import Trainer  # noqa: E402

# Tolerances of the GPU against the CPU. float32 kernels differ in summation order (and the
# GPU may use TF32 convolutions), so the gradients are compared per network as relative L2.
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-2
DISP_ATOL = 1e-3  # exported against eager disparity (in 0..1), max abs


def has_gpu():
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def versions(device):
    lines = ["Python {}, PaddlePaddle {} ({}), NumPy {}".format(
        platform.python_version(), paddle.__version__,
        "CUDA {}, cuDNN {}".format(paddle.version.cuda(), paddle.version.cudnn())
        if paddle.device.is_compiled_with_cuda() else "CPU build", np.__version__)]
    if device == "gpu":
        lines.append("GPU 0 of {}: {}".format(paddle.device.cuda.device_count(),
                                              paddle.device.cuda.get_device_name(0)))
    return lines


def relative_l2(have, want):
    """|have - want| / |want| over all values (float64), 0 when both are zero."""
    have, want = np.asarray(have, np.float64).ravel(), np.asarray(want, np.float64).ravel()
    norm = np.linalg.norm(want)
    diff = np.linalg.norm(have - want)
    return diff / norm if norm else diff


def training_options(data_path, log_dir, device, amp=False, height=64, width=192):
    args = ["--data_path", data_path, "--split", os.path.join(data_path, "splits"), "--log_dir", log_dir,
            "--model_name", "amp" if amp else "fp32", "--device", device, "--height", str(height),
            "--width", str(width), "--batch_size", "2", "--num_workers", "0", "--weights_init", "scratch",
            "--frame_ids", "0", "-1", "1", "--use_stereo", "--min_depth", "1", "--seed", "1",
            "--learning_rate", "1e-4"]
    return MonodepthOptions().parse(args + (["--amp"] if amp else []))


def train_steps(opt, steps):
    """(losses of `steps` steps of the Trainer on its first batch, the trainer)."""
    trainer = Trainer(opt)
    batch = next(iter(trainer.train_loader))
    trainer.set_train()
    losses = []
    for _ in range(steps):
        _, step_losses = trainer.step_model(batch)
        losses.append(float(step_losses["loss"]))
        trainer.optimize(step_losses["loss"])
    return losses, trainer


def losses_fall(losses):
    return bool(np.all(np.isfinite(losses))) and losses[-1] < losses[0]


def one_step(opt, state, batch, device, replay=None):
    """Loss, {network: all its gradients flattened} and the per-pixel minimum choices of one
    training step on `device` from the weights `state` and the NumPy `batch`."""
    paddle.set_device(device)
    model = MonodepthModel(opt, tie_break_noise=False)
    model.set_state_dict(state)
    model.replay_choices = replay
    choices, choose = {}, model.minimum_choice

    def recorded_choice(combined, scale):
        choices[scale] = choose(combined, scale).squeeze(1).numpy()
        return paddle.to_tensor(choices[scale]).unsqueeze(1)

    model.minimum_choice = recorded_choice
    model.train()
    _, losses = model({k: paddle.to_tensor(v) for k, v in batch.items()})
    losses["loss"].backward()
    grads = {name: np.concatenate([p.grad.numpy().ravel() for p in layer.parameters() if p.grad is not None])
             for name, layer in model.models.items()}
    return float(losses["loss"]), grads, choices


def compare_step(opt, state, batch, device, reference="cpu"):
    """(relative loss difference, {network: relative L2 gradient difference}) of one step on
    `device` against `reference`, with the reference's per-pixel choices replayed."""
    want_loss, want_grads, choices = one_step(opt, state, batch, reference)
    have_loss, have_grads, _ = one_step(opt, state, batch, device, replay=choices)
    return abs(have_loss - want_loss) / abs(want_loss), {
        name: relative_l2(have_grads[name], want_grads[name]) for name in want_grads}


def exported_against_eager(folder, device, seed=0):
    """Max abs difference between the eager network of the weights `folder` and its export
    run by Paddle Inference on `device`, on two random images."""
    paddle.set_device(device)
    prefix = os.path.join(folder, "inference", "depth")
    info = export_model.export(folder, prefix, formats=export_model.FORMATS["paddle"])
    images = np.random.RandomState(seed).rand(2, 3, info["height"], info["width"]).astype(np.float32)
    net, _ = export_model.load_net_and_info(folder)
    with paddle.no_grad():
        eager = net(paddle.to_tensor(images)).numpy()
    exported = inference.predictor(prefix, backend="paddle", device=device)(images)
    return float(np.abs(exported - eager).max())


def table(rows):
    """Rows (check, passed, measured, seconds) as a text table."""
    lines = ["{:<50} {:<6} {:>9}  {}".format("check", "result", "time", "measured")]
    for check, passed, measured, seconds in rows:
        lines.append("{:<50} {:<6} {:>8.1f}s  {}".format(check, "PASS" if passed else "FAIL", seconds, measured))
    return "\n".join(lines)


def run_checks(device, steps, work):
    """Every check on `device` (the step comparison against the CPU); the table's rows."""
    rows = []
    data = os.path.join(work, "drive")
    generate_dataset(data, num_frames=6, width=192, height=64, test_frames=2, workers=1)
    for amp in (False, True):
        start = time.time()
        losses, trainer = train_steps(training_options(data, os.path.join(work, "logs"), device, amp), steps)
        rows.append(("{} training steps{} on one batch".format(steps, ", --amp" if amp else ""),
                     losses_fall(losses), "loss {}".format(" ".join("{:.4f}".format(v) for v in losses)),
                     time.time() - start))
    start = time.time()
    batch = {k: v.numpy() for k, v in next(iter(trainer.train_loader)).items()}
    opt = training_options(data, os.path.join(work, "logs"), device)
    loss_diff, grad_diffs = compare_step(opt, trainer.model.state_dict(), batch, device)
    rows.append(("one step's loss, {} against the CPU".format(device), loss_diff <= LOSS_RTOL,
                 "relative {:.1e} (<= {:.0e})".format(loss_diff, LOSS_RTOL), time.time() - start))
    for name, diff in grad_diffs.items():
        rows.append(("  gradients of {}".format(name), diff <= GRAD_RTOL,
                     "relative L2 {:.1e} (<= {:.0e})".format(diff, GRAD_RTOL), 0.0))
    start = time.time()
    paddle.set_device(device)
    trainer.save_model("gpu_check")
    diff = exported_against_eager(os.path.join(trainer.models_dir, "gpu_check"), device)
    rows.append(("exported (Paddle Inference) against eager, {}".format(device), diff <= DISP_ATOL,
                 "max abs {:.1e} (<= {:.0e})".format(diff, DISP_ATOL), time.time() - start))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu",
                        help="where to run the checks (cpu: everything on the CPU, to test this script)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per run (at least 2)")
    parser.add_argument("--work", default=None, help="folder for the drive, logs and export (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps {}: at least 2 are needed to see the loss fall".format(args.steps))
    if args.device == "gpu" and not has_gpu():
        print("no GPU: this Paddle ({}, {}) sees no CUDA device, so there is nothing to check here. Run "
              "it on a GPU machine with paddlepaddle-gpu (README, GPU and AI Studio).".format(
                  paddle.__version__, "CUDA build" if paddle.device.is_compiled_with_cuda() else "CPU build"))
        return 0
    print("\n".join(versions(args.device)))
    with tempfile.TemporaryDirectory() as scratch:
        rows = run_checks(args.device, args.steps, args.work or scratch)
    print()
    print(table(rows))
    failed = [r[0].strip() for r in rows if not r[1]]
    print("\n{}".format("all checks passed" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
