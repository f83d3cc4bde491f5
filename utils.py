"""Small helpers shared by the scripts: text files, time strings, images, weight files, progress bars."""
import json
import os
import shutil
import tempfile

import numpy as np
import paddle


def readlines(filename):
    """The lines of a text file, without line endings."""
    with open(filename, "r") as f:
        return f.read().splitlines()


def sec_to_hm_str(t):
    """10239 -> '02h50m39s'."""
    t = int(t)
    return "{:02d}h{:02d}m{:02d}s".format(t // 3600, t // 60 % 60, t % 60)


def normalize_image(x):
    """Rescale to [0, 1] for display (a constant image maps to ~0)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo if hi != lo else 1e5)


def progress(iterable=None, total=None, desc=None, unit="image"):
    """A tqdm progress bar (rate and time left) over `iterable`, drawn only when stderr is a
    terminal; use bar.update(n) when there is no iterable."""
    from tqdm import tqdm  # imported here: only the long-running scripts need it

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True)


def save_atomic(obj, path):
    """paddle.save to `path` through a temporary file and a rename: a crash leaves the
    old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_" + os.path.basename(path))
    os.close(fd)
    try:
        paddle.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_folder_atomic(files, folder):
    """Write {file name: object} as the folder `folder`, all or nothing: .json files as
    JSON, bytes as they are, others with paddle.save, into a temporary sibling folder that
    replaces `folder` once every file is written."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp_" + os.path.basename(folder))
    try:
        for name, obj in files.items():
            if name.endswith(".json"):
                with open(os.path.join(tmp, name), "w") as f:
                    json.dump(obj, f, indent=2)
            elif isinstance(obj, bytes):
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(obj)
            else:
                paddle.save(obj, os.path.join(tmp, name))
        old = None
        if os.path.exists(folder):
            old = tempfile.mkdtemp(dir=parent, prefix=".old_" + os.path.basename(folder))
            os.replace(folder, os.path.join(old, "x"))
        os.replace(tmp, folder)
        if old:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def read_weights(path):
    """{name: array or value} of a .pdparams file, with errors that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError("weights file not found: {}".format(path))
    try:
        return paddle.load(path, return_numpy=True)
    except Exception as e:  # paddle raises assorted types for corrupt files
        raise ValueError("cannot read weights file {}: {}".format(path, e)) from None


def load_weights(layer, path):
    """Load a .pdparams file into `layer`, ignoring the extra entries the reference keeps
    (height, width, use_stereo); a missing file or a shape mismatch is an error naming it."""
    saved = read_weights(path)
    own = layer.state_dict()
    missing = [k for k in own if k not in saved]
    if missing:
        raise ValueError("{} lacks {} of the network's weights (e.g. {}): wrong network or "
                         "--num_layers?".format(path, len(missing), missing[0]))
    for name, value in own.items():
        if tuple(np.shape(saved[name])) != tuple(value.shape):
            raise ValueError("{}: '{}' has shape {} but the network expects {}: wrong network "
                             "or --num_layers?".format(path, name, list(np.shape(saved[name])), value.shape))
    layer.set_state_dict({k: saved[k] for k in own})
    return saved
