"""cpu_threads.py: OMP_NUM_THREADS is set before paddle loads, from the usable cores, shared
among the processes of a distributed launch; a value the user set is kept; Paddle's warning
about it is not shown."""
import os
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("vendor, amd", [("AuthenticAMD", True), ("GenuineIntel", False), ("HygonGenuine", False)])
def test_is_amd_cpu_reads_the_vendor(tmp_path, vendor, amd):
    import cpu_threads
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: {}\ncpu family\t: 25\n".format(vendor))
    assert cpu_threads.is_amd_cpu(str(cpuinfo)) is amd


def test_is_amd_cpu_without_cpuinfo(tmp_path):
    import cpu_threads
    assert cpu_threads.is_amd_cpu(str(tmp_path / "missing")) is False
    (tmp_path / "empty").write_text("")
    assert cpu_threads.is_amd_cpu(str(tmp_path / "empty")) is False


def mkl_cpu_type_seen(**env):
    """MKL_DEBUG_CPU_TYPE after importing cpu_threads then paddle in a fresh process ('-' if unset)."""
    clean = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    code = "import cpu_threads, os, paddle; print(os.environ.get('MKL_DEBUG_CPU_TYPE', '-'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(clean, **env), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_mkl_cpu_type_set_on_amd_only_and_user_value_kept():
    import cpu_threads
    assert mkl_cpu_type_seen() == ("5" if cpu_threads.is_amd_cpu() else "-")
    assert mkl_cpu_type_seen(MKL_DEBUG_CPU_TYPE="2") == "2"
