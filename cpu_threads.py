"""Give Paddle's CPU kernels every core: import this before anything imports paddle.

Paddle sets OMP_NUM_THREADS to 1 when it is imported without it, and its CPU
convolutions (MKL GEMM) and Paddle Inference's oneDNN kernels then use one core:
a 640x192 ResNet-18 depth network runs about 2x slower on two cores than with the
variable set. OpenMP reads it once, so it has to be set before paddle loads. This
sets it to the cores this process may use, shared among the processes of a
paddle.distributed.launch run, and keeps a value the user set. Paddle's warning
about a value above 1 (written for its data-parallel training on GPUs) is dropped,
and so is its "No ccache found" warning (cpu_ops.py compiles its kernels, once).

Paddle's CPU allocator gives every tensor back to malloc when it dies, and glibc returns large
blocks to the kernel at once: the next step's tensors of the same size fault their pages in again
(a 32-channel 640x192 reflection padding took 28 ms instead of 5, AMD EPYC VM). Freed memory is
therefore kept for reuse in this process (glibc's mallopt; the peak memory of a training step
did not change), unless the user set glibc's MALLOC_* variables or tunables, or
MONODEPTH2_MALLOC=glibc. It holds for the whole process, also an application importing this.

On AMD processors the MKL in Paddle's CPU wheel takes a generic code path (float32 matrix
products 2.6x slower on an AMD EPYC) unless MKL_DEBUG_CPU_TYPE=5 is set before it loads: it
is set here too, unless the user set it or keeps Paddle's convolutions (MONODEPTH2_CPU_OPS=paddle,
DEVELOPERS.md has why).
"""
import contextlib
import ctypes
import io
import os
import platform
import sys
import warnings

PADDLE_WARNING = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")


def available_cores():
    """Cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_process():
    """The cores divided among the processes paddle.distributed.launch started on this machine."""
    local_processes = int(os.environ.get("PADDLE_LOCAL_SIZE", "1") or 1)
    return max(1, available_cores() // max(1, local_processes))


def num_threads():
    """The threads Paddle's CPU kernels use: OMP_NUM_THREADS (as set here or by the user)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"].split(",")[0]))
    except (KeyError, ValueError):
        return threads_per_process()


def processor_vendor(cpuinfo="/proc/cpuinfo"):
    """The processor's vendor_id ("AuthenticAMD", "GenuineIntel"), "" where cpuinfo is missing."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h


def user_malloc_settings():
    """The environment's settings of glibc's malloc, and MONODEPTH2_MALLOC=glibc (leave it alone)."""
    return sorted(name for name in os.environ if name.startswith("MALLOC_") or name == "GLIBC_TUNABLES"
                  or (name == "MONODEPTH2_MALLOC" and os.environ[name] == "glibc"))


def keep_freed_memory():
    """Have glibc keep freed blocks for reuse (no mmap for large ones, no trimming); True if set."""
    if platform.libc_ver()[0] != "glibc" or user_malloc_settings():
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30))
    except (OSError, AttributeError):
        return False


def import_paddle():
    """Import paddle with OMP_NUM_THREADS (and on AMD MKL_DEBUG_CPU_TYPE) set, without
    Paddle's warning about it."""
    if "paddle" in sys.modules:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process()))
    if processor_vendor() == "AuthenticAMD" and os.environ.get("MONODEPTH2_CPU_OPS") != "paddle":
        # with Paddle's own convolutions on MKL it moves float32 gradients past the golden check
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    keep_freed_memory()
    with contextlib.redirect_stderr(io.StringIO()) as captured, warnings.catch_warnings():
        # about compiling C++ extensions (cpu_ops.py), which needs no ccache
        warnings.filterwarnings("ignore", message="No ccache found")
        import paddle  # noqa: F401
    kept = [line for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith(PADDLE_WARNING)]
    sys.stderr.write("".join(kept))


import_paddle()
