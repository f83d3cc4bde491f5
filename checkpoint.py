"""Checkpoints: writing and reading a weights folder (every network, Adam, and for
--resume where the run stopped), with Adam's state keyed so that it loads into any process."""
import json
import os

import numpy as np
import paddle

from network import RECORDED
from utils import load_weights, read_rng_state, read_weights, rng_state_json, save_folder_atomic

ADAM_SUFFIXES = ("_moment1_0", "_moment2_0", "_beta1_pow_acc_0", "_beta2_pow_acc_0")


def encoder_entries(opt):
    """What the encoder file records beside its weights (network.RECORDED): what it is,
    and the options that decide its output, so that prediction can read them from it."""
    values = dict(vars(opt), kind=opt.backbone, frame_ids=list(opt.frame_ids))
    return {k: values[k] for k in RECORDED}


def checkpoint_files(models, optimizer, opt):
    files = {}
    for name, layer in models.items():
        state = dict(layer.state_dict())
        if name == "encoder":
            state.update(encoder_entries(opt))
        elif name == "pose_encoder":
            state.update(kind=opt.backbone, num_layers=opt.num_layers)
        files[name + ".pdparams"] = state
    files["adam.pdparams"] = optimizer_state(models, optimizer)
    return files


def optimizer_state(models, optimizer):
    """Adam's state keyed by parameter paths ("depth.decoder.0.conv.conv.weight_moment1_0")
    instead of Paddle's generated names, which depend on how many layers the process
    built before: a checkpoint must load into any process."""
    paths = {p.name: name for name, p in models.named_parameters()}
    return {rename_state_key(k, paths): v for k, v in optimizer.state_dict().items()}


def load_optimizer_state(models, optimizer, state):
    """Adam's state saved by optimizer_state; ValueError unless it fits every trained
    parameter (Paddle itself would only notice at the first step)."""
    for name, p in models.named_parameters():
        if p.stop_gradient:
            continue
        for suffix in ADAM_SUFFIXES:
            value = state.get(name + suffix)
            if value is None or (suffix.startswith("_moment") and list(np.shape(value)) != list(p.shape)):
                raise ValueError("no state for {} of shape {}".format(name + suffix, p.shape))
    names = {name: p.name for name, p in models.named_parameters()}
    optimizer.set_state_dict({rename_state_key(k, names): v for k, v in state.items()})


def rename_state_key(key, names):
    """Optimizer-state key with its parameter name replaced through `names`."""
    for suffix in ADAM_SUFFIXES:
        if key.endswith(suffix) and key[:-len(suffix)] in names:
            return names[key[:-len(suffix)]] + suffix
    return key


# Adam moves a weight by about the learning rate per step: far beyond this, weights come from a
# divergence (an infinite gradient), not from training
DIVERGED = 1e6


def weights_problem(weights):
    """How the {name: array} `weights` have diverged (a value that is not finite, or beyond
    DIVERGED), or None."""
    for name, value in weights.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
            if not np.isfinite(value).all():
                return "{} holds values that are not finite".format(name)
            if np.abs(value).max() > DIVERGED:
                return "{} reaches {:.3g}".format(name, float(np.abs(value).max()))
    return None


def networks_problem(models):
    """weights_problem of the parameters of `models` (a LayerDict of networks)."""
    return weights_problem({name: p.numpy() for name, p in models.named_parameters()})


def save_checkpoint(folder, models, optimizer, opt, progress=None):
    """Write `folder` (every network and Adam) as one atomic step; with `progress` (epoch,
    batch, step, ... of trainer.json) also the random state, for --resume. Diverged weights
    are not written: the folder keeps its last good version."""
    problem = networks_problem(models)
    if problem:
        raise SystemExit("the weights have diverged ({}): {} was not written, it keeps its last good version; "
                         "{}".format(problem, folder, last_checkpoint(os.path.dirname(folder))))
    files = checkpoint_files(models, optimizer, opt)
    if progress is not None:
        files["trainer.json"] = progress
        # the tie-breaking noise continues as it would have
        files["rng_state.json"] = rng_state_json()
    save_folder_atomic(files, folder)


def resume_state(folder, opt):
    """Where the checkpoint `folder` (models/last) says the interrupted run stopped; an
    error if there is nothing."""
    path = os.path.join(folder, "trainer.json")
    if not os.path.isfile(path):
        raise SystemExit("--resume: no checkpoint at {} (a run writes it every --checkpoint_minutes "
                         "and at the end of every epoch)".format(os.path.dirname(path)))
    state = read_progress(path)
    # the skipped batches are only the ones done if the order and batches are the same
    for flag in ("seed", "batch_size"):
        given = getattr(opt, flag)
        if given is not None and given != state[flag]:
            raise SystemExit("--resume: the run used --{} {}, not {}".format(flag, state[flag], given))
    return state


# what trainer.json holds (Trainer.save_last writes it), and the types of the values
PROGRESS_KEYS = {"epoch": int, "batch": int, "step": int, "seed": int, "batch_size": int, "best_val_loss": float}


def read_progress(path):
    """The trainer.json at `path`; SystemExit naming it and what to do when it is damaged."""
    try:
        with open(path) as f:
            state = json.load(f)
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        for key, kind in PROGRESS_KEYS.items():
            value = state.get(key)
            if value is None:
                raise ValueError("no {!r}".format(key))
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind) or (
                    kind is int and value < 0):
                raise ValueError("{!r} is {!r}, not a {}".format(
                    key, value, "number" if kind is float else "non-negative integer"))
    except (OSError, ValueError) as e:  # also truncated or not JSON at all
        folder = os.path.dirname(path)
        raise SystemExit("--resume: {} is damaged ({}), so where the run stopped is unknown: start the run again "
                         "with --overwrite, optionally from these weights with --load_weights_folder {} (copy "
                         "them elsewhere first: --overwrite deletes them)".format(path, e, folder)) from None
    return state


def restore_rng_state(folder):
    try:
        paddle.set_rng_state(read_rng_state(folder))
    except ValueError as e:
        raise SystemExit("--resume: {}".format(e))


def last_checkpoint(models_dir):
    """What --resume would continue from, in words."""
    path = os.path.join(models_dir, "last")
    try:
        with open(os.path.join(path, "trainer.json")) as f:
            state = json.load(f)
        where = "the last checkpoint is {} (epoch {}, batch {})".format(path, state["epoch"], state["batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no checkpoint has been written yet (there is no {})".format(path)
    for name in sorted(os.listdir(path)):
        if name.endswith(".pdparams") and name != "adam.pdparams":
            try:
                problem = weights_problem(read_weights(os.path.join(path, name)))
            except ValueError as e:
                problem = str(e)
            if problem:
                return "{}, but its weights have diverged too ({}: {}): start again from an earlier weights_N " \
                       "with --load_weights_folder and --overwrite".format(where, name, problem)
    return where + ", its weights are finite: --resume continues from it"


def load_checkpoint(folder, models, names, optimizer, verbose=True, resuming=False):
    """Load the networks `names` from `folder`, and Adam's state when it is there (a resumed
    run needs the file: without it, it would not continue as the interrupted one)."""
    if not os.path.isdir(folder):
        raise SystemExit("--load_weights_folder {}: no such folder".format(folder))
    if verbose:
        print("loading model from folder {}".format(folder))
    for name in names:
        if name not in models:
            raise SystemExit("--models_to_load {}: these options build no such network (they "
                             "build {})".format(name, ", ".join(models.keys())))
        try:
            load_weights(models[name], os.path.join(folder, name + ".pdparams"))
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit("{} (choose the networks to load with --models_to_load)".format(e))
    adam_path = os.path.join(folder, "adam.pdparams")
    if os.path.isfile(adam_path):
        try:
            state = read_weights(adam_path)
        except ValueError as e:  # damaged or crafted: not a file to train on
            raise SystemExit(str(e))
        try:
            load_optimizer_state(models, optimizer, state)
        except ValueError as e:  # also a checkpoint written before the first step: no moments yet
            print("Adam state in {} does not fit these networks ({}); Adam starts afresh".format(adam_path, e))
    elif resuming:
        raise SystemExit("--resume: {} is missing".format(adam_path))
    elif verbose:
        print("Cannot find Adam weights so Adam is randomly initialized")
