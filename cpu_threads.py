"""Give Paddle's CPU kernels every core: import this before anything imports paddle.

Paddle sets OMP_NUM_THREADS to 1 when it is imported without it, and its CPU
convolutions (MKL GEMM) and Paddle Inference's oneDNN kernels then use one core:
a 640x192 ResNet-18 depth network runs about 2x slower on two cores than with the
variable set. OpenMP reads it once, so it has to be set before paddle loads. This
sets it to the cores this process may use, shared among the processes of a
paddle.distributed.launch run, and keeps a value the user set. Paddle's warning
about a value above 1 (written for its data-parallel training on GPUs) is dropped.

The MKL in Paddle's CPU wheel takes a slow generic code path on AMD processors: on
an AMD EPYC (Zen 4) its float32 GEMM runs at 80 GFLOP/s instead of 210, and a
training step takes 2.4x as long. MKL_DEBUG_CPU_TYPE=5 makes it use its AVX2
kernels there; like OMP_NUM_THREADS it is read when MKL loads, so it is set here,
on Linux with an AMD processor only, unless the user set it.
"""
import contextlib
import io
import os
import sys

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


def is_amd_cpu(cpuinfo="/proc/cpuinfo"):
    """True if the processor is AMD's, as Linux names its vendor in /proc/cpuinfo."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip() == "AuthenticAMD"
    except OSError:  # not Linux
        pass
    return False


def import_paddle():
    """Import paddle with OMP_NUM_THREADS set, without Paddle's warning about it."""
    if "paddle" in sys.modules:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process()))
    if is_amd_cpu():
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    with contextlib.redirect_stderr(io.StringIO()) as captured:
        import paddle  # noqa: F401
    kept = [line for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith(PADDLE_WARNING)]
    sys.stderr.write("".join(kept))


import_paddle()
