"""Unpickling that cannot run code: a file may only name the globals its reader allows.

Weights come from the internet (released models, other ports' zips), and both
``paddle.save`` and ``torch.save`` write pickles; ``pickle.load`` would call any function
such a file names (``os.system`` included). Every pickle the project reads goes through
`RestrictedUnpickler`: the Paddle files here (`load_paddle_pickle`), the ``.pth`` files in
torch_weights.py with their own list of globals.
"""
import pickle

import numpy as np
try:
    from numpy._core import multiarray  # NumPy 2
except ImportError:  # NumPy 1.x names it numpy.core
    from numpy.core import multiarray
from paddle.framework.io_utils import _pack_loaded_dict  # joins parameters saved in slices


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a class or function its reader does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the (module, name) pairs of `allowed`."""

    allowed = {}

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                "refusing to load the global {}.{}: only arrays, numbers, strings and plain "
                "containers are read, never other objects or functions".format(module, name)) from None


class _RecordedState:
    """Stands for an object rebuilt from its __setstate__ tuple (kept in `.state`)."""

    def __setstate__(self, state):
        self.state = state


def _latin1_bytes(text, encoding):
    """What protocol-2 pickles call for bytes (_codecs.encode), for that one encoding only."""
    if encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode with encoding {!r}".format(encoding))
    return text.encode("latin1")


# What paddle.save writes for a dict of arrays: ndarrays and numpy scalars (by either numpy
# module name: numpy.core before NumPy 2), a tensor as tuple((name, array)), which paddle.load
# turns back into one, and with protocol 2 bytes through _codecs and builtins as __builtin__.
# A Layer's state_dict() is an OrderedDict; paddle.save writes it as one when it holds more than
# tensors (a Monodepth2 encoder's height, width, use_stereo): it is read as a plain dict.
_PADDLE_SAVE_GLOBALS = {
    ("collections", "OrderedDict"): dict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "tuple"): tuple,
    ("__builtin__", "tuple"): tuple,
    ("_codecs", "encode"): _latin1_bytes,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _PADDLE_SAVE_GLOBALS[(_module, "_reconstruct")] = multiarray._reconstruct
    _PADDLE_SAVE_GLOBALS[(_module, "scalar")] = multiarray.scalar


class PaddleUnpickler(RestrictedUnpickler):
    """Reads paddle.save files of arrays, numbers, strings and containers; also the
    random-generator state older checkpoints pickled (rng_state.pkl), as plain tuples."""

    allowed = dict(_PADDLE_SAVE_GLOBALS)
    allowed[("paddle.base.libpaddle", "GeneratorState")] = _RecordedState


def rebuild(obj, replace):
    """`obj` with plain containers rebuilt and every value `replace` changes (it returns
    another object for it) replaced: placeholders left by unpickling become their values."""
    new = replace(obj)
    if new is not obj:
        return new
    if isinstance(obj, dict):
        return {k: rebuild(v, replace) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(rebuild(v, replace) for v in obj)
    return obj


def _paddle_value(obj):
    """A saved tensor (name, array) as its array, as paddle.load with return_numpy=True
    gives it; a _RecordedState as its state tuple."""
    if isinstance(obj, _RecordedState):
        return getattr(obj, "state", None)
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    return obj


def load_paddle_pickle(path):
    """The object of a paddle.save file (arrays as numpy arrays, like paddle.load with
    return_numpy=True); ValueError naming the file for anything else or a damaged file."""
    try:
        with open(path, "rb") as f:
            result = rebuild(PaddleUnpickler(f, encoding="latin1").load(), _paddle_value)
    except OSError as e:
        raise ValueError("cannot read {}: {}".format(path, e.strerror or e)) from None
    except RefusedGlobal as e:
        raise ValueError("cannot read {}: {}".format(path, e)) from None
    except Exception as e:  # a damaged pickle fails in many ways (EOFError, KeyError, ...)
        raise ValueError("cannot read {}: {} (truncated, or not written by paddle.save?)".format(
            path, str(e) or type(e).__name__)) from None
    if isinstance(result, dict):
        result = _pack_loaded_dict(result)
        result.pop("StructuredToParameterName@@", None)  # Paddle 2.0's name table
    return result
