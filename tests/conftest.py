"""Shared fixtures: paths to ../shared, skipped with a message where it is absent."""
import os

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
