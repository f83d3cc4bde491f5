"""CPU operators for Paddle's eager mode, compiled on first use: the convolutions on the oneDNN
library that Paddle's wheel already ships; the reflection padding, the bilinear warp, SSIM's
3x3 window means, the nearest upsampling and the photometric error (SSIM + L1) as plain loops.

Paddle's eager CPU convolution is im2col + GEMM: forward and backward it took 2.4-6x PyTorch's
time on the AMD EPYC VM, most of a training step (DEVELOPERS.md). PyTorch runs oneDNN's
kernels; Paddle uses them only in inference programs. kernels/onednn_conv.cc calls them
eagerly: 0.8-1.1x PyTorch's time on the same shapes, and the golden check passes. Paddle's
padding, grid_sample, average pooling and nearest upsampling took 2-44x PyTorch's time there;
the other kernels/*.cc take 0.3-2.3x. -O3 vectorizes their loops; -fno-trapping-math lets it
vectorize the ones with comparisons; -ffp-contract=off keeps products and sums apart (no FMA,
even with a CXX that adds -march=native), so the values are those of the written order.

They are compiled together on first use (about 30 s with g++; cached under
~/.cache/monodepth2-paddle, or $MONODEPTH2_CACHE) against oneDNN's C++ headers, which come from
the `onednn-devel` wheel of the oneDNN version Paddle links (downloaded by pip, its SHA-256
checked: 200 kB; installing the wheel would pull its runtime, several hundred MB). When
anything is missing (no compiler, no index, another oneDNN) everything stays on Paddle's own
kernels, said once; a failed compile is remembered in the cache folder (delete it to try
again). MONODEPTH2_CPU_OPS=paddle keeps them there. The convolution keeps its primitives per
input shape and reorder buffers that only grow (a few activations' size) for the life of the
process.
"""
import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = sorted(os.path.join(KERNELS, name) for name in os.listdir(KERNELS) if name.endswith(".cc"))
OWN_HEADERS = sorted(os.path.join(KERNELS, name) for name in os.listdir(KERNELS) if name.endswith(".h"))
ONEDNN_VERSION = (3, 6)  # what Paddle 3.0-3.3 link, and the headers below
HEADERS = "onednn-devel==2025.0.1"
HEADERS_SHA256 = "6daea2b679ccc59bf0c3a174b97ff99270d04bff1c5cacd7f1bc9b8eee99c86f"
CXX_FLAGS = ["-O3", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp"]
# The wheel's dnnl_config.h describes a SYCL + TBB build; Paddle's library uses OpenMP only.
CONFIG_HEADER = """#ifndef ONEAPI_DNNL_DNNL_CONFIG_H
#define ONEAPI_DNNL_DNNL_CONFIG_H
/* written by cpu_ops.py for the oneDNN inside Paddle's CPU wheel: OpenMP, no GPU */
#define DNNL_API __attribute__((visibility("default")))
#define DNNL_DEPRECATED __attribute__((deprecated))
#define DNNL_RUNTIME_NONE 0u
#define DNNL_RUNTIME_SEQ 1u
#define DNNL_RUNTIME_OMP 2u
#define DNNL_RUNTIME_TBB 4u
#define DNNL_RUNTIME_THREADPOOL 8u
#define DNNL_RUNTIME_OCL 256u
#define DNNL_RUNTIME_SYCL 512u
#define DNNL_VENDOR_NONE 0u
#define DNNL_CPU_THREADING_RUNTIME DNNL_RUNTIME_OMP
#define DNNL_CPU_RUNTIME DNNL_RUNTIME_OMP
#define DNNL_GPU_RUNTIME DNNL_RUNTIME_NONE
#define DNNL_GPU_VENDOR DNNL_VENDOR_NONE
#endif
"""

_state = {"ops": None, "tried": False}


class Unavailable(RuntimeError):
    """Why the operators cannot be built or loaded here."""


class CompileFailed(Unavailable):
    """The compiler or the loader refused: it would again, so it is remembered."""


def paddle_libs():
    return os.path.join(os.path.dirname(paddle.__file__), "libs")


def library_version():
    """(major, minor, patch) of the oneDNN in Paddle's wheel."""
    path = os.path.join(paddle_libs(), "libdnnl.so.3")
    if not os.path.isfile(path):
        raise Unavailable("Paddle's wheel has no {}".format(path))

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int)]

    library = ctypes.CDLL(path)
    library.dnnl_version.restype = ctypes.POINTER(Version)
    version = library.dnnl_version().contents
    return version.major, version.minor, version.patch


def cache_folder():
    """A build folder per checkout, source, Paddle and Python version (Paddle's builder rebuilds
    when the sources' paths change, so two checkouts must not share one)."""
    recipe = [CONFIG_HEADER, HEADERS, HEADERS_SHA256, KERNELS] + CXX_FLAGS
    for source in SOURCES + OWN_HEADERS:
        with open(source, "rb") as f:
            recipe += [os.path.basename(source), f.read().decode()]
    digest = hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:12]
    root = os.environ.get("MONODEPTH2_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "monodepth2-paddle")
    return os.path.join(root, "cpu_ops-paddle{}-py{}{}-{}".format(
        paddle.__version__, sys.version_info[0], sys.version_info[1], digest))


def fetch_headers(folder):
    """oneDNN's headers in folder/include (pip download of HEADERS, hash-checked)."""
    include = os.path.join(folder, "include")
    if os.path.isfile(os.path.join(include, "oneapi", "dnnl", "dnnl.hpp")):
        return include
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        pinned = os.path.join(scratch, "headers.txt")
        with open(pinned, "w") as f:
            f.write("{} --hash=sha256:{}\n".format(HEADERS, HEADERS_SHA256))
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                               "--only-binary", ":all:", "-d", scratch, "-r", pinned],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        wheels = [n for n in os.listdir(scratch) if n.endswith(".whl")]
        if "DO NOT MATCH THE HASHES" in done.stdout:
            raise Unavailable("the {} that pip found does not have the SHA-256 pinned in {} (a changed "
                              "index or mirror?)".format(HEADERS, __file__))
        if done.returncode or not wheels:
            last = (done.stdout.strip().splitlines() or ["no wheel"])[-1]
            raise Unavailable("pip could not download {} for oneDNN's headers ({}); offline, put the wheel "
                              "in a folder and set PIP_FIND_LINKS to it".format(HEADERS, last.strip()))
        unpacked = os.path.join(scratch, "include")
        with zipfile.ZipFile(os.path.join(scratch, wheels[0])) as wheel:
            for name in wheel.namelist():
                marker = "/data/include/oneapi/dnnl/"
                if marker in name and name.endswith((".h", ".hpp")):
                    target = os.path.join(unpacked, "oneapi", "dnnl", name.rsplit("/", 1)[1])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with wheel.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        with open(os.path.join(unpacked, "oneapi", "dnnl", "dnnl_config.h"), "w") as f:
            f.write(CONFIG_HEADER)
        os.replace(unpacked, include)
    return include


@contextlib.contextmanager
def output_to(path):
    """Everything written to stdout and stderr inside the block, by this process and the
    compiler's, goes to the file `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def build_and_load():
    """The compiled operators (built once per cache folder, under a lock: several training
    processes may start at once)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise Unavailable("built only on Linux x86_64")
    found = library_version()
    if found[:2] != ONEDNN_VERSION:
        raise Unavailable("Paddle links oneDNN {}, these headers are for {}".format(
            ".".join(map(str, found)), ".".join(map(str, ONEDNN_VERSION))))
    compiler = (shlex.split(os.environ.get("CXX", "")) or ["c++"])[-1]
    if not shutil.which(compiler):
        raise Unavailable("no C++ compiler {} (install g++)".format(compiler))
    import fcntl

    folder = cache_folder()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)  # it holds code this process loads: the user's only
        with open(os.path.join(folder, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            failed = os.path.join(folder, "FAILED")
            if os.path.isfile(failed):  # each try costs half a minute: once is enough
                with open(failed) as f:
                    raise Unavailable("{} (delete {} to try again)".format(f.read().strip(), folder))
            try:
                return compile_in(folder)
            except CompileFailed as err:
                with open(failed, "w") as f:
                    f.write(str(err))
                raise
    except OSError as err:
        raise Unavailable("cannot build in {} ({}); set MONODEPTH2_CACHE to a writable folder".format(folder, err))


def compile_in(folder):
    include = fetch_headers(folder)
    from paddle.utils.cpp_extension import load

    build = os.path.join(folder, "build")
    if not os.path.isdir(build):
        print("compiling the CPU operators for this Paddle (once, about 30 s) in " + folder, file=sys.stderr,
              flush=True)
        os.makedirs(build)
    log = os.path.join(folder, "build.log")
    try:
        with output_to(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No ccache found"
            return load(name="monodepth2_cpu_ops", sources=SOURCES, extra_include_paths=[include],
                        extra_cxx_cflags=CXX_FLAGS, build_directory=build,
                        extra_ldflags=["-L" + paddle_libs(), "-l:libdnnl.so.3", "-l:libiomp5.so",
                                       "-Wl,-rpath," + paddle_libs()])
    except Exception as err:  # compiler and loader errors come as anything
        raise CompileFailed("building {} failed ({}; see {})".format(KERNELS, err, log))


def operators():
    """The loaded operators, or None (said once) when they cannot be had."""
    if not _state["tried"]:
        _state["tried"] = True
        if os.environ.get("MONODEPTH2_CPU_OPS", "compiled") != "paddle":
            try:
                _state["ops"] = build_and_load()
            except Unavailable as err:
                print("convolutions, padding, warps, window means, upsampling and photometric errors run on "
                      "Paddle's own CPU kernels (slower; MONODEPTH2_CPU_OPS=paddle says so without trying): "
                      + str(err), file=sys.stderr)
    return _state["ops"]


def for_eager(*tensors):
    """The operators when this is an eager call on float32 CPU tensors (None tensors allowed),
    else None: programs being traced, the GPU and other dtypes keep Paddle's kernels. (to_static
    without full_graph runs eagerly where it falls back to Python: the operators run there, and
    the saved program holds Paddle's.)"""
    if paddle.in_dynamic_mode() and all(t is None or (t.place.is_cpu_place() and t.dtype == paddle.float32)
                                        for t in tensors):
        return operators()
    return None


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d with groups 1, dilation 1, NCHW and the same padding on both sides of an axis,
    on oneDNN when the call is eager, on the CPU and in float32 (else F.conv2d)."""
    stride = [int(stride)] * 2 if isinstance(stride, int) else [int(s) for s in stride]
    padding = [int(padding)] * 2 if isinstance(padding, int) else [int(p) for p in padding]
    ops = for_eager(x, weight, bias) if len(stride) == 2 and len(padding) == 2 else None
    if ops is not None:
        return ops.onednn_conv2d(x, weight, bias, stride, padding, not x.stop_gradient)
    return F.conv2d(x, weight, bias, stride, padding)


class Conv2D(nn.Conv2D):
    """nn.Conv2D (same parameters and weights files) whose eager float32 CPU convolution runs
    on oneDNN when it can (conv2d); exported programs and the GPU keep Paddle's."""

    def forward(self, x):
        if (self._groups == 1 and list(self._dilation) == [1, 1] and self._data_format == "NCHW"
                and self._padding_mode == "zeros" and self._padding_algorithm in ("EXPLICIT", "VALID")
                and len(self._updated_padding) == 2):
            return conv2d(x, self.weight, self.bias, self._stride, self._updated_padding)
        return super().forward(x)
