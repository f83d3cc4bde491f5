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
    return {k: values.get(k) for k in RECORDED}  # stereo_scale: set by the trainer


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


def save_checkpoint(folder, models, optimizer, opt, progress=None):
    """Write `folder` (every network and Adam) as one atomic step; with `progress` (epoch,
    batch, step, ... of trainer.json) also the random state, for --resume."""
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
    with open(path) as f:
        state = json.load(f)
    # the skipped batches are only the ones done if the order and batches are the same
    for flag in ("seed", "batch_size"):
        given = getattr(opt, flag)
        if given is not None and given != state[flag]:
            raise SystemExit("--resume: the run used --{} {}, not {}".format(flag, state[flag], given))
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
        return "the last checkpoint is {} (epoch {}, batch {}): --resume continues from it".format(
            path, state["epoch"], state["batch"])
    except (OSError, ValueError, KeyError):
        return "no checkpoint has been written yet (there is no {})".format(path)


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
