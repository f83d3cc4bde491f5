"""Small helpers shared by the scripts: text files, time strings, images, weight files, progress bars."""
import contextlib
import json
import os
import shutil
import tempfile

import numpy as np
import paddle
from paddle.base.data_feeder import convert_dtype
from PIL import Image

from safe_pickle import load_paddle_pickle


def read_text(path):
    """The contents of the text file `path`; a ValueError naming it when its bytes are not
    text (Python's UnicodeDecodeError names only the byte, and a caller reading several files
    would be blamed for it)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError("{} is not a text file (byte {} is not UTF-8): damaged, or another kind of "
                         "file?".format(path, e.start)) from None


def readlines(filename):
    """The lines of a text file, without line endings."""
    return read_text(filename).splitlines()


def sec_to_hm_str(t):
    """10239 -> '02h50m39s'."""
    t = int(t)
    return "{:02d}h{:02d}m{:02d}s".format(t // 3600, t // 60 % 60, t % 60)


def normalize_image(x):
    """Rescale to [0, 1] for display (a constant image maps to ~0)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo if hi != lo else 1e5)


def to_rgb(image, path):
    """An RGB copy of a PIL image, loaded so that it outlives its file. 16-bit grayscale is
    scaled to 8 bits (convert("RGB") would clip it to white); 32-bit modes, whose range is
    unknown, are a ValueError naming `path`."""
    if image.mode.startswith("I;16"):
        gray = np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("I", "F"):
        raise ValueError("{} is a 32-bit {} image of unknown range: save it with 8 or 16 bits per "
                         "channel".format(path, "integer" if image.mode == "I" else "float"))
    return image.convert("RGB")


@contextlib.contextmanager


def errors_naming(path):
    """Re-raise an OSError as one naming `path` (a full disk says only "[Errno 28] No space
    left on device")."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, "cannot write {}: {}".format(path, e.strerror or e)) from None


def check_writable(folder):
    """Create `folder` if needed and write a file in it: an OSError naming it now rather
    than one from deep inside a library later."""
    with errors_naming(folder):
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass


def progress(iterable=None, total=None, desc=None, unit="image", disable=None):
    """A tqdm progress bar (rate and time left) over `iterable`, drawn only when stderr is a
    terminal (and `disable` is not True); use bar.update(n) when there is no iterable."""
    from tqdm import tqdm  # imported here: only the long-running scripts need it

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable or None, dynamic_ncols=True)


def save_atomic(obj, path):
    """paddle.save to `path` through a temporary file and a rename: a crash leaves the
    old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    with errors_naming(path):
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
    JSON, bytes as they are, others with paddle.save, into a temporary sibling folder
    (.tmp_<name>XXXXXXXX) renamed .new_<name>XXXXXXXX once every file is written, which then
    replaces `folder` (recover_interrupted_saves finishes what a kill interrupts)."""
    with errors_naming(folder):
        _save_folder(files, folder)


def _save_folder(files, folder):
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
        new = os.path.join(parent, ".new_" + os.path.basename(tmp)[len(".tmp_"):])
        os.replace(tmp, new)  # complete: from here on it is the version to keep
        _put_in_place(new, folder)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def _put_in_place(new, folder):
    """Rename the folder `new` to `folder`, the previous `folder` moved aside first into
    .old_<name>XXXXXXXX/x and deleted after."""
    parent = os.path.dirname(os.path.abspath(folder))
    old = None
    if os.path.exists(folder):
        old = tempfile.mkdtemp(dir=parent, prefix=".old_" + os.path.basename(folder))
        os.replace(folder, os.path.join(old, "x"))
    os.replace(new, folder)
    if old:
        shutil.rmtree(old)


def recover_interrupted_saves(parent):
    """Finish or undo what a kill in the middle of save_folder_atomic left in `parent`;
    returns what was done, one line each. A complete new version (.new_<name>XXXXXXXX) is put
    in place of the folder, whether the kill came before the previous version was moved aside
    or after (the folder missing, the previous version in .old_<name>XXXXXXXX/x). Without
    one, a previous version whose folder is missing is moved back. Temporary folders of
    unfinished saves (.tmp_*) and left-over .old_* folders are deleted."""
    done = []
    entries = sorted(os.listdir(parent)) if os.path.isdir(parent) else []  # .new_ before .old_ and .tmp_
    for entry in entries:
        path = os.path.join(parent, entry)
        if not os.path.isdir(path) or not entry.startswith((".new_", ".old_", ".tmp_")):
            continue
        folder = os.path.join(parent, entry[len(".old_"):-8])  # the prefixes have 5, mkdtemp adds 8 characters
        if entry.startswith(".new_"):
            _put_in_place(path, folder)
            done.append("completed the interrupted save of {} from {}".format(folder, path))
            continue
        if entry.startswith(".old_") and os.path.isdir(os.path.join(path, "x")) and not os.path.exists(folder):
            os.replace(os.path.join(path, "x"), folder)
            done.append("restored {} from {} (a save was interrupted)".format(folder, path))
        shutil.rmtree(path)
        done.append("deleted {}, left by an interrupted save".format(path))
    return done


def read_weights(path):
    """{name: array or value} of a .pdparams file, read without running code from it;
    errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError("weights file not found: {}".format(path))
    saved = load_paddle_pickle(path)
    if not isinstance(saved, dict):
        raise ValueError("{} holds a {}, not a dict of weights".format(path, type(saved).__name__))
    return saved


def check_tensor(value, name, source, shape=None):
    """`value` as a NumPy array, or a ValueError naming `source` and the entry `name` when it is
    not an array of numbers, not of `shape` (when given) or holds NaN or infinite values."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        kind = {"S": "bytes", "U": "text", "V": "compound records", "b": "booleans"}.get(array.dtype.kind, "strings or other objects")
        raise ValueError("{}: '{}' holds {} ({}), not numbers: not a weights file of these networks".format(
            source, name, kind, array.dtype))
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ValueError("{}: '{}' has shape {} but the network expects {}: wrong network or "
                         "--num_layers?".format(source, name, list(array.shape), list(shape)))
    bad = array.size - np.count_nonzero(np.isfinite(array))
    if bad:
        raise ValueError("{}: '{}' holds {} NaN or infinite values of {}: the training that wrote it "
                         "diverged, or the file is damaged".format(source, name, bad, array.size))
    return array


def fitting_weights(layer, saved, source):
    """{name: array} of every entry of `layer`'s state dict (parameters and batch-norm
    statistics) taken from `saved`, each checked by check_tensor and cast to the layer's dtype.
    Every load goes through here: Paddle would only warn about a missing or misshapen entry and
    leave it random, and NaN weights predict a constant. Other entries of `saved` (the
    reference's height, width, use_stereo; network.RECORDED) are ignored."""
    own = layer.state_dict()
    missing = [k for k in own if k not in saved]
    if missing:
        raise ValueError("{} lacks {} of the network's weights (e.g. '{}'): wrong network or "
                         "--num_layers?".format(source, len(missing), missing[0]))
    return {name: check_tensor(saved[name], name, source, value.shape).astype(convert_dtype(value.dtype), copy=False)
            for name, value in own.items()}


def load_weights(layer, path):
    """Load the .pdparams file `path` into `layer`, checked by fitting_weights; returns the
    file's entries."""
    saved = read_weights(path)
    layer.set_state_dict(fitting_weights(layer, saved, path))
    return saved


def pick_device(opt):
    """"gpu" when Paddle has one and the options allow it, else "cpu"."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if opt.no_cuda or opt.device == "cpu":
        return "cpu"
    if opt.device == "gpu" and not has_gpu:
        raise SystemExit("--device gpu: this Paddle build sees no GPU (install paddlepaddle-gpu "
                         "or use --device cpu)")
    return "gpu" if has_gpu else "cpu"


def rng_state_json():
    """Paddle's random-generator state as JSON-able lists (JSON cannot carry code, a pickle can)."""
    return [list(state.__getstate__()) for state in paddle.get_rng_state()]


def read_rng_state(folder):
    """The generator state saved in `folder`: rng_state.json, or the rng_state.pkl of older
    checkpoints read by the restricted unpickler. ValueError naming the file otherwise."""
    path = os.path.join(folder, "rng_state.json")
    if os.path.isfile(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError("cannot read {}: {}".format(path, e)) from None
    else:
        path = os.path.join(folder, "rng_state.pkl")
        saved = load_paddle_pickle(path)
    states = []
    try:
        for device, seed, offset, engine in saved:
            state = paddle.base.libpaddle.GeneratorState.__new__(paddle.base.libpaddle.GeneratorState)
            state.__setstate__((int(device), int(seed), int(offset), [int(c) for c in engine]))
            states.append(state)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError("{} is not a random-generator state: {}".format(path, e)) from None
    return states
