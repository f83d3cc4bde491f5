"""The folder of a training run, <log_dir>/<model_name>: held by one process at a time, and
deleted only as far as a run wrote it (--overwrite, or a start that failed)."""
import os
import re
import shutil

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

LOCK_FILE = ".lock"
# what a run writes in models/: options, checkpoints, the weights_best link, unfinished saves
MODELS_ENTRY = re.compile(r"opt\.json|last|best|weights_best|weights_\d+|\.(tmp|new|old)_.+")
LOG_FILE = re.compile(r"vdlrecords\..+")  # what VisualDL writes in train/ and val/

_held = {}  # real path of a run folder -> its open lock file, kept while this process runs


def lock(folder):
    """Hold the lock of the run folder `folder` while this process runs (fcntl.lockf: the
    system releases it when the process ends, however it ends; the DataLoader's workers do not
    inherit it). A second process asking for it stops with a message naming the folder and
    the process that holds it."""
    key = os.path.realpath(folder)
    if fcntl is None or key in _held:
        return
    f = open(os.path.join(folder, LOCK_FILE), "a+")
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise SystemExit("{} is in use by another run (process {}): wait until it ends, or give another "
                         "--model_name".format(folder, holder)) from None
    f.seek(0)
    f.truncate()
    f.write("{}\n".format(os.getpid()))
    f.flush()
    _held[key] = f


def unlock(folder):
    """Give up the lock of `folder` if this process holds it; whether it did."""
    f = _held.pop(os.path.realpath(folder), None)
    if f is not None:
        f.close()
    return f is not None


def run_files(folder):
    """The paths in the run folder `folder` that a run writes, those that exist (not the lock)."""
    found = []
    models = os.path.join(folder, "models")
    if os.path.isdir(models):
        found += [os.path.join(models, n) for n in sorted(os.listdir(models)) if MODELS_ENTRY.fullmatch(n)]
    for mode in ("train", "val"):
        logs = os.path.join(folder, mode)
        if os.path.isdir(logs):
            found += [os.path.join(logs, n) for n in sorted(os.listdir(logs)) if LOG_FILE.fullmatch(n)]
    return found


def remove_run(folder):
    """Delete what a run wrote in `folder`, then its models/, train/ and val/ if that left them
    empty; returns the other files and folders found there, which stay."""
    for path in run_files(folder):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    kept = []
    for name in ("models", "train", "val"):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            left = sorted(os.listdir(path))
            if left:
                kept += [os.path.join(path, n) for n in left]
            else:
                os.rmdir(path)
    return kept


def missing_folders(folder):
    """`folder` and those of its parents that do not exist yet, the deepest first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def remove_failed_start(folder, created):
    """Undo a start in the run folder `folder` that failed (before writing anything but the
    lock): its lock, and the folders `created` (missing_folders before the start) left empty."""
    if unlock(folder):
        os.remove(os.path.join(folder, LOCK_FILE))
    for path in created:
        if not os.path.isdir(path) or os.listdir(path):
            return
        os.rmdir(path)
