"""PyTorch weights for the Paddle networks, without PyTorch.

A ``torch.save`` file is a pickle whose tensors point at raw storages kept next to it:
in a zip archive (``<folder>/data.pkl`` plus ``<folder>/data/<key>``, torch >= 1.6) or,
in the legacy format of older releases, in the same stream after the pickle. `load_pth`
reads both with a restricted unpickler that only rebuilds tensors and plain containers,
so a weights file can never run code. `to_paddle_state_dict` renames the few entries
whose Paddle name or layout differs; the Paddle networks otherwise use the torch names.

The published Paddle port ships its ImageNet ResNet as HDF5 (``resnet18-pytorch.h5``): one
dataset per tensor under torchvision's names and layouts; `load_h5` reads it.

ImageNet initialisation (`imagenet_init`, for --weights_init): ``pretrained`` reads
torchvision's ResNet from the project's ``weights/`` folder (or ``$MONODEPTH2_PRETRAINED_DIR``),
converted there by ``tools/convert_weights.py`` or as downloaded (`imagenet_files`);
``paddle_pretrained`` takes Paddle's own ImageNet weights from paddle.vision's cache; any
other value is a .pdparams, .pth or .h5 file, its extension optional.
"""
import collections
import io
import os
import pickle
import re
import zipfile

import numpy as np

from safe_pickle import RestrictedUnpickler, rebuild
from utils import check_tensor, read_weights

PRETRAINED_DIR_ENV = "MONODEPTH2_PRETRAINED_DIR"
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
OLD_PRETRAINED_DIR = os.path.join(os.path.dirname(WEIGHTS_DIR), "pretrained")  # before weights/
PORT_RESNET18_H5 = "resnet18-pytorch.h5"  # the published Paddle port's torchvision ResNet-18
WEIGHT_EXTENSIONS = (".pdparams", ".pth", ".h5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TORCHVISION_URL = "https://download.pytorch.org/models/"
# The files torchvision's ResNet*_Weights.IMAGENET1K_V1 download.
TORCHVISION_FILES = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
    152: "resnet152-394f9c45.pth",
}
# Blocks per stage and whether the blocks are bottlenecks (have a conv3).
RESNET_LAYOUTS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # widened to float32 once read
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands for a ``torch.<Name>Storage`` class inside the pickle."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat typed buffer; `data` is filled in once its bytes have been read."""

    def __init__(self, storage_type, numel):
        self.type = storage_type
        self.numel = numel
        self.data = None

    def fill(self, raw, byteorder):
        itemsize = self.type.dtype.itemsize
        if len(raw) < self.numel * itemsize:
            raise ValueError(f"storage holds {len(raw)} bytes, expected {self.numel * itemsize} "
                             "(truncated file?)")
        data = np.frombuffer(raw, self.type.dtype.newbyteorder(byteorder), self.numel)
        if self.type.name == "BFloat16Storage":  # bfloat16 is the top half of a float32
            data = (data.astype(np.uint32) << 16).view(np.float32)
        self.data = data.astype(data.dtype.newbyteorder("="))


class _Tensor:
    """A tensor waiting for its storage's bytes (legacy files store them after the pickle)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def to_numpy(self):
        data = self.storage.data
        if 0 in self.size:
            return np.zeros(self.size, data.dtype)
        if len(self.stride) != len(self.size) or min(self.stride, default=0) < 0:
            raise ValueError(f"bad strides {self.stride} for size {self.size}")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= len(data):  # as_strided would read outside the buffer
            raise ValueError(f"tensor of size {self.size} reaches element {last} of a "
                             f"storage of {len(data)}")
        strides = tuple(s * data.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, strides)
        return view.copy()


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


# Every global a state dict may name; anything else is refused.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update({("torch", name): _StorageType(name) for name in _STORAGE_DTYPES})


class _RestrictedUnpickler(RestrictedUnpickler):
    """Unpickles tensors as `_Tensor` placeholders; refuses any other class or function."""

    allowed = _ALLOWED_GLOBALS

    def __init__(self, file, storage_for):
        super().__init__(file, encoding="utf-8")
        self._storage_for = storage_for

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            kind = pid[0] if isinstance(pid, tuple) and pid else pid
            raise pickle.UnpicklingError(
                f"unsupported saved object {kind!r} (a whole pickled model? save and "
                "convert model.state_dict() instead)")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        return self._storage_for(storage_type, str(key), *pid[4:])


def _unpickle(data, storage_for):
    return _RestrictedUnpickler(io.BytesIO(data), storage_for).load()


def _load_zip(data):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("truncated or corrupt zip archive") from None
    pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
        raise ValueError("zip archive without a top-level <folder>/data.pkl")
    folder = pickles[0][:-len("data.pkl")]
    byteorder_name = folder + "byteorder"
    byteorder = "little"
    if byteorder_name in archive.namelist():
        byteorder = archive.read(byteorder_name).decode().strip()
    storages = {}

    def storage_for(storage_type, key, numel):
        if key not in storages:
            storages[key] = _Storage(storage_type, numel)
            storages[key].fill(archive.read(f"{folder}data/{key}"), "<" if byteorder == "little" else ">")
        return storages[key]

    return _unpickle(archive.read(pickles[0]), storage_for)


def _load_legacy(data):
    """torch < 1.6: magic, protocol and system-info pickles, the object, then the storages."""
    stream = io.BytesIO(data)

    def read_plain_pickle():
        return _RestrictedUnpickler(stream, None).load()

    if read_plain_pickle() != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch file (no magic number)")
    protocol = read_plain_pickle()
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"unsupported legacy protocol version {protocol}")
    read_plain_pickle()  # system info: torch writes the storages little-endian regardless
    storages = {}

    def storage_for(storage_type, key, numel, view=None):
        if view is not None:
            raise ValueError("storage views (written by torch < 0.4) are not supported")
        return storages.setdefault(key, _Storage(storage_type, numel))

    result = _RestrictedUnpickler(stream, storage_for).load()
    for key in read_plain_pickle():
        storage = storages[str(key)]
        header = stream.read(8)
        if len(header) < 8:
            raise ValueError(f"the file ends before storage {key} (truncated file?)")
        numel = int(np.frombuffer(header, "<i8")[0])
        if numel != storage.numel:
            raise ValueError(f"storage {key} has {numel} elements, the pickle says {storage.numel}")
        nbytes = numel * storage.type.dtype.itemsize
        storage.fill(stream.read(nbytes), "<")
    return result


def _tensor_value(obj):
    """A `_Tensor` placeholder as its numpy array."""
    return obj.to_numpy() if isinstance(obj, _Tensor) else obj


def load_pth(path):
    """{name: np.ndarray or Python value} of a state dict saved with ``torch.save``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such PyTorch weights file: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        if data.startswith(b"PK\x03\x04"):
            result = _load_zip(data)
        elif data.startswith(b"\x80"):
            result = _load_legacy(data)
        else:
            raise ValueError("not a file written by torch.save")
        result = rebuild(result, _tensor_value)
    except (ValueError, KeyError, EOFError, IndexError, TypeError, AttributeError,
            pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read PyTorch weights {path}: {err}") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path} holds a {type(result).__name__}, not a state dict")
    return result


def load_h5(path):
    """{name: np.ndarray} of an HDF5 file holding one dataset per tensor (groups, if any,
    joined to the name with dots), as the published Paddle port stores torchvision weights.
    Every dataset must be finite numbers (utils.check_tensor); errors name the file and it."""
    import h5py  # only this format needs it

    state_dict = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            try:
                value = item[()]
            except (TypeError, ValueError, OSError) as err:  # types NumPy has no equivalent of
                raise ValueError(f"cannot read dataset '{name}' of the HDF5 weights {path}: {err}") from None
            state_dict[name.replace("/", ".")] = check_tensor(value, name, path)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as err:
        raise ValueError(f"cannot read HDF5 weights {path}: {err}") from None
    if not state_dict:
        raise ValueError(f"{path} holds no datasets")
    return state_dict


def load_torch_names(path):
    """{torchvision name: np.ndarray} of a torch.save file or of the port's HDF5 file."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return load_h5(path)
    return load_pth(path)


def to_paddle_state_dict(state_dict):
    """The Paddle state dict of a torch one (same module names; values as numpy arrays).

    Batch-norm running statistics are called ``_mean``/``_variance`` in Paddle, and Paddle
    has no ``num_batches_tracked``. Paddle's Linear stores its weight as [in, out], the
    transpose of torch's. The only Linear in these networks is torchvision's ResNet
    classifier ``fc`` (``encoder.fc`` in the reference encoder); it is recognised by name
    *and* by being 2-D, because shape alone cannot tell a square Linear weight's layout
    and name alone could catch a convolution someone called ``fc``. Non-array entries
    (the encoder's ``height``, ``width``, ``use_stereo``) pass through unchanged.
    """
    renames = {"running_mean": "_mean", "running_var": "_variance"}
    out = {}
    for name, value in state_dict.items():
        prefix, _, leaf = name.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if leaf in renames:
            name = f"{prefix}.{renames[leaf]}" if prefix else renames[leaf]
        if isinstance(value, np.ndarray) and value.ndim == 2 and name.endswith("fc.weight"):
            value = np.ascontiguousarray(value.T)
        out[name] = value
    return out


def resnet_depth(state_dict):
    """18, 34, 50, 101 or 152: the torchvision ResNet whose blocks `state_dict` holds."""
    pattern = re.compile(r"layer([1-4])\.(\d+)\.conv1\.weight")
    found = [m.group(1) for m in map(pattern.fullmatch, state_dict) if m]
    blocks = tuple(found.count(str(stage)) for stage in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in state_dict
    first = state_dict.get("layer1.0.conv1.weight")
    if first is not None and np.shape(first)[0] != 64:  # wide ResNets and ResNeXts
        raise ValueError(f"not a plain ResNet: its first block has {np.shape(first)[0]} "
                         "channels instead of 64 (a wide ResNet or ResNeXt?)")
    for depth, layout in RESNET_LAYOUTS.items():
        if layout == (blocks, bottleneck):
            return depth
    raise ValueError(f"not a torchvision ResNet-18/34/50/101/152: {blocks} blocks per stage, "
                     f"{'bottleneck' if bottleneck else 'basic'} blocks")


def pretrained_dir():
    """Where ImageNet weights are written and looked for: $MONODEPTH2_PRETRAINED_DIR, else weights/."""
    return os.environ.get(PRETRAINED_DIR_ENV) or WEIGHTS_DIR


def imagenet_files(num_layers):
    """The files --weights_init pretrained reads for ResNet-`num_layers`, first found first: in
    pretrained_dir() the converted resnet{N}.pdparams, torchvision's download itself and, for
    ResNet-18, the published port's .h5; then the converted file in pretrained/ (its old place)."""
    if num_layers not in TORCHVISION_FILES:
        raise ValueError(f"no ImageNet weights for a ResNet-{num_layers}; "
                         f"choose from {sorted(TORCHVISION_FILES)}")
    names = [f"resnet{num_layers}.pdparams", TORCHVISION_FILES[num_layers]]
    names += [PORT_RESNET18_H5] if num_layers == 18 else []
    files = [os.path.join(pretrained_dir(), name) for name in names]
    if not os.environ.get(PRETRAINED_DIR_ENV):
        files.append(os.path.join(OLD_PRETRAINED_DIR, names[0]))
    return files


def imagenet_weights_path(num_layers):
    """The first of `imagenet_files` that exists, else the converter's default output."""
    files = imagenet_files(num_layers)
    return next((path for path in files if os.path.isfile(path)), files[0])


def find_weight_file(path):
    """`path` if it is a file, else `path` with the first of WEIGHT_EXTENSIONS that is one."""
    candidates = [path] + [path + ext for ext in WEIGHT_EXTENSIONS]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        "--weights_init {}: neither pretrained, paddle_pretrained, scratch nor a weights file "
        "(tried {})".format(path, ", ".join(candidates)))


def read_weight_file(path):
    """{Paddle name: np.ndarray} of a .pdparams file, or of a torch .pth / port .h5 file with
    its torch names and layouts converted."""
    with open(path, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE or head.startswith(b"PK\x03\x04") or path.endswith((".pth", ".pt")):
        return to_paddle_state_dict(load_torch_names(path))
    return read_weights(path)


def paddle_imagenet_file(num_layers):
    """paddle.vision's ImageNet ResNet-`num_layers` file: from its cache, else downloaded
    there; offline, an error saying what to download and where to put it."""
    from paddle.utils import download
    from paddle.vision.models.resnet import model_urls

    url, md5 = model_urls["resnet{}".format(num_layers)]
    path = os.path.join(download.WEIGHTS_HOME, os.path.basename(url))
    if os.path.isfile(path):
        return path
    try:
        return download.get_weights_path_from_url(url, md5)
    except (RuntimeError, OSError) as err:  # paddle gives up with a RuntimeError
        raise FileNotFoundError(
            f"--weights_init paddle_pretrained: Paddle's ImageNet ResNet-{num_layers} weights "
            f"could not be downloaded ({err}). Download {url} (md5 {md5}) and put it at {path}, "
            "or use --weights_init scratch") from None


def imagenet_init(weights_init, num_layers):
    """(file, {Paddle name: np.ndarray}) of the ResNet-`num_layers` weights an encoder starts
    from under --weights_init `weights_init`, or None for scratch (also False; True is pretrained)."""
    if weights_init in (None, False, "scratch"):
        return None
    if weights_init in (True, "pretrained"):
        return imagenet_weights_path(num_layers), load_imagenet_weights(num_layers)
    if weights_init == "paddle_pretrained":
        path = paddle_imagenet_file(num_layers)
    else:
        path = find_weight_file(os.path.expanduser(weights_init))
    state_dict = read_weight_file(path)
    try:
        found = resnet_depth(state_dict)
    except ValueError as err:
        raise ValueError(f"--weights_init {path}: {err}") from None
    if found != num_layers:
        raise ValueError(f"--weights_init {path} holds ResNet-{found} weights: pass --num_layers {found}")
    return path, state_dict


def load_imagenet_weights(num_layers):
    """{Paddle name: np.ndarray} of the ImageNet ResNet-`num_layers` (torchvision's names)."""
    path = imagenet_weights_path(num_layers)
    if not os.path.isfile(path):
        folder, torch_file = pretrained_dir(), TORCHVISION_FILES[num_layers]
        names = [os.path.basename(f) for f in imagenet_files(num_layers) if os.path.dirname(f) == folder]
        raise FileNotFoundError(
            f"ImageNet weights for ResNet-{num_layers} not found: none of {', '.join(names)} is in "
            f"{folder}. Download {TORCHVISION_URL}{torch_file} into it (it is read as it is), or "
            f"convert it to {path} with\n    python tools/convert_weights.py {torch_file}\n"
            f"(set {PRETRAINED_DIR_ENV} to use another folder), "
            f"or choose another initialisation: --weights_init scratch, --weights_init "
            f"paddle_pretrained, or --weights_init PATH (.pth, .h5 or .pdparams).")
    state_dict = read_weight_file(path)
    found = resnet_depth(state_dict)
    if found != num_layers:
        raise ValueError(f"{path} holds ResNet-{found} weights, not ResNet-{num_layers}")
    return state_dict
