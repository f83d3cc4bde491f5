"""cpu_threads.py: OMP_NUM_THREADS is set before paddle loads, from the usable cores, shared
among the processes of a distributed launch; a value the user set is kept; Paddle's warnings
about it and about ccache are not shown; on AMD processors MKL is told to use its AVX2 path;
freed memory is kept for reuse."""
import os
import platform
import subprocess
import sys

import pytest

import cpu_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = len(os.sched_getaffinity(0))


def threads_seen_by_paddle(**env):
    """OMP_NUM_THREADS after importing cpu_threads then paddle in a fresh process, and its stderr."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PADDLE_LOCAL_SIZE")}
    code = "import cpu_threads, os, paddle; print(os.environ['OMP_NUM_THREADS'], cpu_threads.num_threads())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(clean, **env), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split(), proc.stderr


@pytest.mark.parametrize("env, expected", [
    ({}, CORES),
    ({"PADDLE_LOCAL_SIZE": "2"}, max(1, CORES // 2)),
    ({"PADDLE_LOCAL_SIZE": str(4 * CORES)}, 1),
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"OMP_NUM_THREADS": "3"}, 3),
])
def test_thread_count(env, expected):
    (value, parsed), stderr = threads_seen_by_paddle(**env)
    assert value == str(expected) and parsed == str(expected)
    assert "OMP_NUM_THREADS set to" not in stderr
    assert "No ccache found" not in stderr  # Paddle's note about compiling C++ extensions


def test_processor_vendor_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_threads.processor_vendor(str(cpuinfo)) == "AuthenticAMD"
    assert cpu_threads.processor_vendor(str(tmp_path / "missing")) == ""


@pytest.mark.parametrize("user_value, paddles_kernels", [(None, False), ("4", False), (None, True)])
def test_mkl_is_told_to_use_its_avx2_path_on_amd_only(user_value, paddles_kernels):
    """Not with MONODEPTH2_CPU_OPS=paddle: the convolutions on MKL would then fail the golden check."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MKL_DEBUG_CPU_TYPE", "MONODEPTH2_CPU_OPS")}
    if user_value is not None:
        clean["MKL_DEBUG_CPU_TYPE"] = user_value
    if paddles_kernels:
        clean["MONODEPTH2_CPU_OPS"] = "paddle"
    code = "import cpu_threads, os, paddle; print(os.environ.get('MKL_DEBUG_CPU_TYPE', '-'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=clean,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    amd = cpu_threads.processor_vendor() == "AuthenticAMD"
    expected = user_value or ("5" if amd and not paddles_kernels else "-")
    assert proc.stdout.split() == [expected]


REFAULTS = """import ctypes, resource
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def write_and_free(size=64 << 20):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
write_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
write_and_free()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_freed_memory_is_reused_without_faulting_its_pages_in_again():
    """glibc alone gives a 64 MB block back to the kernel when it is freed: writing the next
    one faults every page in again; after cpu_threads it reuses it."""
    clean = {k: v for k, v in os.environ.items()
             if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "MONODEPTH2_MALLOC", "LD_PRELOAD"))}

    def refaults(setup):
        proc = subprocess.run([sys.executable, "-c", REFAULTS.format(setup=setup)], capture_output=True,
                              text=True, cwd=ROOT, env=clean, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout)

    alone = refaults("")  # 16384, or 32 where transparent huge pages are always on
    kept = refaults("import cpu_threads; assert cpu_threads.keep_freed_memory()")
    assert alone >= 32 and kept <= alone // 16


@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "1000000"), ("MALLOC_ARENA_MAX", "2"),
                                         ("MONODEPTH2_MALLOC", "glibc")])
def test_malloc_settings_of_the_user_are_kept(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert cpu_threads.user_malloc_settings() == [name]
    assert cpu_threads.keep_freed_memory() is False
