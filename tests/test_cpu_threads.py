"""cpu_threads.py: OMP_NUM_THREADS is set before paddle loads, from the usable cores, shared
among the processes of a distributed launch; a value the user set is kept; Paddle's warnings
about it and about ccache are not shown; on AMD processors MKL is told to use its AVX2 path."""
import os
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


@pytest.mark.parametrize("user_value", [None, "4"])
def test_mkl_is_told_to_use_its_avx2_path_on_amd_only(user_value):
    clean = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    if user_value is not None:
        clean["MKL_DEBUG_CPU_TYPE"] = user_value
    code = "import cpu_threads, os, paddle; print(os.environ.get('MKL_DEBUG_CPU_TYPE', '-'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=clean,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    amd = cpu_threads.processor_vendor() == "AuthenticAMD"
    expected = user_value or ("5" if amd else "-")
    assert proc.stdout.split() == [expected]
