"""Compare this port with golden outputs of the PyTorch reference.

    python tools/check_golden.py ../shared/golden/ms_r18_64x192.npz [...]

Each file holds the reference's inputs, deterministic weights (rebuilt by the
golden_weights.py beside it), activations, losses, gradients and single-layer results
for one option set (`config/args`). The batch is run here with the same options and
weights, in training mode with its backward pass and in inference mode, and every key
of the file is compared; a key this check does not know is a failure. Exits non-zero
on any mismatch."""
import argparse
import importlib.util
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cpu_threads  # noqa: E402,F401  (before paddle: sets its CPU thread count)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from layers import SSIM, compute_depth_errors, get_smooth_loss, transformation_from_parameters, warp  # noqa: E402
from options import MonodepthOptions  # noqa: E402
from torch_weights import to_paddle_state_dict  # noqa: E402
from model import MonodepthModel  # noqa: E402

# Worst error allowed: forward values relative to the golden tensor's largest magnitude,
# losses and gradients as L2 distance relative to the golden L2 norm (|a-b|/|b| for scalars).
# "exact" are the float64 gradients, "exact_loss" the float64 losses (see compare).
TOLERANCES = {"forward": 1e-4, "loss": 1e-5, "exact": 1e-6, "exact_loss": 1e-9}
# float32 gradients: how far from exact arithmetic this port's may be beyond twice the
# reference's own float32 error (see compare). The reference's float32 gradients move by up
# to 3.2e-2 when its inputs change by one ulp (golden/README.md), so less is no gross error.
GRAD_GUARD = 5e-2


def frame_key(text):
    return text if text == "s" else int(text)


def golden_options(golden):
    opt = MonodepthOptions().parse(shlex.split(str(golden["config/args"])))
    opt.weights_init = "scratch"  # every weight comes from the golden manifest
    return opt


def load_golden_weights(model, golden, golden_dir, dtype=np.float32):
    """Load each network's manifest weights (PyTorch names) through the project's converter."""
    spec = importlib.util.spec_from_file_location("golden_weights", os.path.join(golden_dir, "golden_weights.py"))
    golden_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden_weights)
    names = sorted(k.split("/", 1)[1] for k in golden if k.startswith("manifest/"))
    if names != sorted(model.models.keys()):
        raise SystemExit("the golden file has networks {} but the options build {}".format(
            names, sorted(model.models.keys())))
    for name in names:
        manifest = json.loads(str(golden["manifest/" + name]))
        weights = to_paddle_state_dict(golden_weights.make_state_dict(name, manifest))
        layer = model.models[name]
        expected = set(layer.state_dict().keys())
        if set(weights) != expected:
            raise SystemExit("{}: manifest and network differ: missing {}, unexpected {}".format(
                name, sorted(expected - set(weights)), sorted(set(weights) - expected)))
        layer.set_state_dict({k: paddle.to_tensor(v.astype(dtype) if v.dtype == np.float32 else v)
                              for k, v in weights.items()})


def golden_inputs(golden, dtype=np.float32):
    inputs = {}
    for key in golden:
        parts = key.split("/")
        if parts[0] != "in":
            continue
        if parts[1] in ("color", "color_aug"):
            name = (parts[1], frame_key(parts[2]), int(parts[3]))
        elif parts[1] in ("K", "inv_K"):
            name = (parts[1], int(parts[2]))
        else:
            name = parts[1]
        inputs[name] = paddle.to_tensor(golden[key].astype(dtype))
    return inputs


def paddle_named(golden, prefix, network):
    """{paddle name: golden array} for golden keys `<prefix>/<network>/<torch name>`."""
    head = "{}/{}/".format(prefix, network)
    torch_named = {k[len(head):]: golden[k] for k in golden if k.startswith(head)}
    keys = {k[len(head):]: k for k in golden if k.startswith(head)}
    converted = to_paddle_state_dict(torch_named)
    # to_paddle_state_dict keeps order, so the i-th paddle name belongs to the i-th golden key
    return {p: (keys[t], converted[p]) for t, p in zip(torch_named, converted)}


def training_step(golden, golden_dir, dtype=np.float32, replay=None):
    """Build the golden options' model in `dtype`, run the batch in training mode (with the
    per-pixel minimum choices `replay`, if given) and backpropagate. Returns the model,
    inputs, outputs, losses, encoder features and, per scale, the candidates of the
    per-pixel minimum with the indices chosen among them."""
    paddle.set_default_dtype(dtype)
    try:
        model = MonodepthModel(golden_options(golden), tie_break_noise=False)
        model.replay_choices = replay
        load_golden_weights(model, golden, golden_dir, dtype)
        inputs = golden_inputs(golden, dtype)
        captured, minima = [], {}
        hook = model.models["encoder"].register_forward_post_hook(lambda layer, inp, out: captured.append(out))
        choose = model.minimum_choice

        def recorded_choice(combined, scale):
            minima[scale] = combined, choose(combined, scale)
            return minima[scale][1]

        model.minimum_choice = recorded_choice
        model.train()
        outputs, losses = model(inputs)
        hook.remove()
        losses["loss"].backward()
    finally:
        paddle.set_default_dtype(np.float32)
    return model, inputs, outputs, losses, captured[0], minima


def gradients(golden, model, prefix=""):
    """{golden key: value} for the golden's `<prefix>grad_norm/` and `<prefix>grad/` keys."""
    got = {}
    for network, layer in model.models.items():
        params = dict(layer.named_parameters())
        for pname, (gkey, _) in paddle_named(golden, prefix + "grad_norm", network).items():
            grad = params[pname].grad
            # in float64: a float32 norm of a 2.4M-value gradient is itself off by ~1e-3
            got[gkey] = np.linalg.norm(grad.numpy().astype(np.float64)) if grad is not None else 0.0
        for pname, (gkey, _) in paddle_named(golden, prefix + "grad", network).items():
            grad = params[pname].grad.numpy()
            got[gkey] = grad.T if pname.endswith("fc.weight") else grad
    return got


def run(golden, golden_dir):
    """{golden key: computed array} for every key this check knows how to compute.

    The float32 step gives the forward values, losses, float32 gradients and per-pixel
    minimum choices ("choice/<s>", with their candidates as "candidates/<s>"); the same step
    in float64 with the golden's own choices replayed gives "exact/..." losses and gradients.
    ValueError for a golden file without the exact keys."""
    if not any(k.startswith("exact/") for k in golden):
        raise ValueError("the file has no exact/ keys: it predates gradients judged in exact "
                         "arithmetic (see ../shared/golden/README.md); make it again")
    paddle.set_device("cpu")
    tensor = paddle.to_tensor
    model, inputs, outputs, losses, features, minima = training_step(golden, golden_dir)
    opt = model.opt
    got = gradients(golden, model)
    for scale, (combined, chosen) in minima.items():
        got["choice/{}".format(scale)] = chosen[:, 0]
        got["candidates/{}".format(scale)] = combined
    missing = ["choice/{}".format(s) for s in minima if "choice/{}".format(s) not in golden]
    if missing:
        raise ValueError("the file lacks {}, the reference's per-pixel minimum choices that the "
                         "float64 step replays".format(", ".join(missing)))
    replay = {s: golden["choice/{}".format(s)] for s in minima}
    _, _, _, losses64, _, _ = exact_step = training_step(golden, golden_dir, np.float64, replay)
    got.update(gradients(golden, exact_step[0], "exact/"))
    got.update(("exact/loss/" + k, v) for k, v in losses64.items())

    for i, f in enumerate(features):
        got["train/features/{}".format(i)] = f
    for key, value in outputs.items():
        if isinstance(key, tuple):
            name, *rest = key
            if name == "disp":
                got["train/disp/{}".format(rest[0])] = value
            elif name == "color" and "train/sample/{}/{}".format(*rest) in golden:
                # Bilinear sampling turns the grid's round-off (checked as train/sample) into
                # colour differences as large as the image's gradient times it (9e-4 seen with
                # ResNet-50), so the warp is checked on the golden grid.
                f, s = rest
                grid = tensor(golden["train/sample/{}/{}".format(f, s)])
                got["train/color/{}/{}".format(f, s)] = warp(inputs[("color", f, s if opt.v1_multiscale else 0)], grid)
            else:
                got["train/{}/{}/{}".format(name, *rest)] = value
        elif key == "predictive_mask":
            for (_, s), mask in value.items():
                got["train/predictive_mask/disp/{}".format(s)] = mask
        else:
            got["train/" + key] = value
    for key, value in losses.items():
        got["loss/" + key] = value

    for network, layer in model.models.items():
        state = layer.state_dict()
        for pname, (gkey, _) in paddle_named(golden, "bn_after_train_step", network).items():
            got[gkey] = state[pname].numpy()  # before the weights are reset for inference

    model.eval()
    load_golden_weights(model, golden, golden_dir)
    with paddle.no_grad():
        features = model.models["encoder"](inputs[("color", 0, 0)])
        for i, f in enumerate(features):
            got["eval/features/{}".format(i)] = f
        for (_, s), disp in model.models["depth"](features).items():
            got["eval/disp/{}".format(s)] = disp
        if "pose_encoder" in model.models:
            # frames (-1, 0), or all of them in training order when the pose network takes all
            frames = [-1, 0] if model.num_pose_frames == 2 else [f for f in model.frame_ids if f != "s"]
            stacked = paddle.concat([inputs[("color", f, 0)] for f in frames], 1)
            axisangle, translation = model.models["pose"]([model.models["pose_encoder"](stacked)])
            got["eval/axisangle/-1"] = axisangle
            got["eval/translation/-1"] = translation

    if "layer/ssim/x" in golden:
        got["layer/ssim/out"] = SSIM()(tensor(golden["layer/ssim/x"]), tensor(golden["layer/ssim/y"]))
    if "layer/smooth/disp" in golden:
        # the golden files take the smoothness loss's image from the SSIM inputs
        image = golden.get("layer/smooth/img", golden.get("layer/ssim/x"))
        got["layer/smooth/out"] = get_smooth_loss(tensor(golden["layer/smooth/disp"]), tensor(image))
    if "layer/transform/axisangle" in golden:
        aa, t = tensor(golden["layer/transform/axisangle"]), tensor(golden["layer/transform/translation"])
        got["layer/transform/forward"] = transformation_from_parameters(aa, t)
        got["layer/transform/inverse"] = transformation_from_parameters(aa, t, invert=True)
    if "layer/depth_errors/gt" in golden:
        got["layer/depth_errors/out"] = compute_depth_errors(golden["layer/depth_errors/gt"],
                                                              golden["layer/depth_errors/pred"])
    return {k: np.asarray(v.numpy() if isinstance(v, paddle.Tensor) else v) for k, v in got.items()}


# keys that are inputs of the check rather than results
INPUT_KEY = re.compile(r"^(config/|manifest/|in/|layer/ssim/[xy]$|layer/smooth/(disp|img)$|"
                       r"layer/transform/(axisangle|translation)$|layer/depth_errors/(gt|pred)$)")


def kind_of(key):
    """Which tolerance applies (see TOLERANCES)."""
    for prefix, kind in (("exact/loss/", "exact_loss"), ("exact/", "exact"), ("loss/", "loss"),
                         ("grad_norm/", "grad"), ("grad/", "grad"), ("choice/", "choice"),
                         ("train/identity_selection/", "choice")):
        if key.startswith(prefix):
            return kind
    return "forward"


def group_of(key):
    """Keys that differ only by frame, scale or parameter share a group."""
    parts = key.split("/")
    if parts[0] in ("grad", "grad_norm", "bn_after_train_step"):
        return "/".join(parts[:2])
    if parts[0] == "exact" and parts[1] != "loss":
        return "/".join(parts[:3])
    return "/".join(p for p in parts if not re.fullmatch(r"-?\d+|s", p))


def relative_error(have, want, kind):
    """Forward values: worst difference over the tensor's largest magnitude; losses and
    gradients: L2 distance over the golden L2 norm (for a scalar |a-b|/|b|)."""
    if kind in ("forward", "choice"):
        scale = np.abs(want).max() if want.size else 0.0
        error = np.abs(have - want).max(initial=0.0)
    else:
        scale, error = np.linalg.norm(want), np.linalg.norm(have - want)
    return error / scale if scale > 0 else error


def undecided_choices(key, candidates, have, want):
    """Pixels whose choice round-off may decide: the candidates the two sides chose (for
    the automask, the best unwarped and the best warped one) are within the forward
    tolerance of each other, relative to the largest candidate."""
    if key.startswith("choice/"):
        pick = lambda index: np.take_along_axis(candidates, index[:, None].astype(np.int64), 1)[:, 0]
        gap = np.abs(pick(have) - pick(want))
    else:  # with auto-masking the candidates are the unwarped errors, then as many warped ones
        half = candidates.shape[1] // 2
        gap = np.abs(candidates[:, :half].min(1) - candidates[:, half:].min(1))
    return gap <= TOLERANCES["forward"] * np.abs(candidates).max()


def compare(golden, got):
    """(worst error per group, failures).

    Forward values, losses and choices are compared with the reference's float32 run;
    gradients with its float64 rerun of the same step (exact/), which this port's float64
    rerun with the same choices must meet. Float32 gradients are decided by round-off in
    places (near-ties, ReLU signs near 0, cancellation), so they are only guarded against
    gross errors: this port's float32 gradient may be GRAD_GUARD plus twice the reference's
    own float32 error away from the exact one. (Allowing this port's own float32 error as
    well would let any float32 gradient pass.)"""
    worst, failures = {}, []
    for key in sorted(golden.keys()):
        if INPUT_KEY.match(key):
            continue
        if key not in got:
            failures.append("{}: not computed (unknown key or option)".format(key))
            continue
        want = np.asarray(golden[key], dtype=np.float64)
        have = np.asarray(got[key], dtype=np.float64)
        if want.shape != have.shape:
            failures.append("{}: shape {} != golden {}".format(key, have.shape, want.shape))
            continue
        kind = kind_of(key)
        if kind == "choice":
            # a discrete choice: it must agree wherever it is decided by more than round-off
            scale = key.rsplit("/", 1)[1]
            undecided = undecided_choices(key, got["candidates/" + scale], have, want)
            error = float(np.mean((have != want) & ~undecided))
            tolerance = 0.0
        else:
            error = relative_error(have, want, kind)
            tolerance = TOLERANCES.get(kind)
        if kind == "grad":
            exact_key = "exact/" + key
            if exact_key not in golden:
                failures.append("{}: the file has no {} to judge it by".format(key, exact_key))
                continue
            exact = np.asarray(golden[exact_key], np.float64)
            # judged against exact arithmetic, allowing twice the reference's own float32 error
            error = relative_error(have, exact, kind)
            tolerance = GRAD_GUARD + 2 * relative_error(want, exact, kind)
        group = group_of(key)
        if error > worst.get(group, (-1, None))[0]:
            worst[group] = (error, key)
        if not error <= tolerance:
            failures.append("{}: {} {:.3g} > {:.3g}".format(
                key, "share of decided pixels chosen otherwise" if kind == "choice" else "relative error",
                error, tolerance))
    return worst, failures


def worst_exact_per_network(worst):
    """{network: (error, key)}: the largest exact-gradient error of each network."""
    per_network = {}
    for group, (error, key) in worst.items():
        parts = group.split("/")
        if parts[0] == "exact" and parts[1] in ("grad", "grad_norm"):
            if error > per_network.get(parts[2], (-1, None))[0]:
                per_network[parts[2]] = (error, key)
    return per_network


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="golden .npz files")
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        if not os.path.isfile(path):
            print("{}: no such file".format(path))
            failed = True
            continue
        golden = dict(np.load(path))
        print("{} ({})".format(path, golden.get("config/args", "no config/args")))
        try:
            worst, failures = compare(golden, run(golden, os.path.dirname(os.path.abspath(path))))
        except ValueError as e:
            print("  FAILED: {}".format(e))
            failed = True
            continue
        for group in sorted(worst):
            error, key = worst[group]
            print("  {:<40s} worst {:.2e}  ({})".format(group, error, key))
        print("  worst exact-gradient error (relative L2) per network:")
        for network, (error, key) in sorted(worst_exact_per_network(worst).items()):
            print("    {:<14s} {:.2e}  ({})".format(network, error, key))
        for line in failures:
            print("  FAIL " + line)
        print("  {}: {} failures".format("FAILED" if failures else "OK", len(failures)))
        failed |= bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
