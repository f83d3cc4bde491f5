"""Shared fixtures: paths to ../shared, skipped with a message where it is absent."""
import os
import sys

import pytest

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
GOLDEN = os.path.join(SHARED, "golden", "ms_r18_64x192.npz")


def need(path):
    if not os.path.exists(path):
        pytest.skip("{} is absent (../shared is only beside the project in development and CI)".format(path))
    return path


@pytest.fixture
def golden_path():
    return need(GOLDEN)


@pytest.fixture
def kitti_sample():
    return need(os.path.join(SHARED, "kitti_sample"))


@pytest.fixture(scope="module")
def tiny_drive(tmp_path_factory):
    """A 6-frame 192x64 synthetic drive with its splits (train: frames 1-3, val: 4, test: drive
    0002's frames 0-1), made per test module: tests may break its files."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from make_synthetic_kitti import main as make_drive
    root = str(tmp_path_factory.mktemp("drive"))
    make_drive(["--out", root, "--frames", "6", "--test_frames", "2", "--width", "192", "--height", "64",
                "--workers", "1"])
    return root
