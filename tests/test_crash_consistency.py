"""Crash consistency of training: a tiny run killed (SIGKILL) at random moments, during steps
and during checkpoint writes, always resumes from a complete checkpoint and ends with
bit-identical weights to an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT
from utils import read_weights


NETWORKS = ("encoder", "depth", "adam")  # stereo only: no pose network


def train_command(tiny_drive, log_dir, name, *extra):
    """2 epochs of 3 batches, a checkpoint (models/last) after every batch."""
    return [sys.executable, os.path.join(ROOT, "train.py"), "--data_path", tiny_drive,
            "--split", os.path.join(tiny_drive, "splits"), "--height", "64", "--width", "192", "--batch_size", "2",
            "--num_epochs", "2", "--weights_init", "scratch", "--frame_ids", "0", "--use_stereo",
            "--num_workers", "0", "--seed", "5", "--checkpoint_minutes", "0", "--log_frequency", "1000",
            "--save_frequency", "2", "--log_dir", log_dir, "--model_name", name] + list(extra)


def wait_for(condition, process, timeout=120):
    start = time.time()
    while not condition():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.005)


def test_killed_runs_resume_to_the_weights_of_an_uninterrupted_run(tiny_drive, tmp_path):
    log_dir = str(tmp_path / "logs")
    whole = subprocess.run(train_command(tiny_drive, log_dir, "whole"), capture_output=True, text=True, timeout=180)
    assert whole.returncode == 0, whole.stderr[-2000:]

    models = os.path.join(log_dir, "cut", "models")
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # what a killed run printed is kept
    rng = random.Random(12)
    # after the start of a checkpoint write of this process: a random time later (during the
    # steps, validation, or the write's renames), or at once (while its files are written)
    delays = [rng.uniform(0, 1.0), 0, rng.uniform(0, 0.3), 0.02, rng.uniform(0, 1.0)]
    cut_writes = 0
    for number, delay in enumerate(delays):
        stale = set(os.listdir(models)) if os.path.isdir(models) else set()  # deleted when it resumes

        def writing():
            names = os.listdir(models) if os.path.isdir(models) else []
            return (number or "last" in names) and any(n.startswith(".tmp_last") and n not in stale for n in names)

        process = subprocess.Popen(train_command(tiny_drive, log_dir, "cut", *(["--resume"] if number else [])),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            wait_for(writing, process)
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            out = process.communicate()[0]
        if number:  # the kill before left a complete checkpoint
            assert "Resuming from {}".format(os.path.join(models, "last")) in out, out[-2000:]
        cut_writes += writing()  # killed in the middle of a checkpoint save
    assert cut_writes >= 1, "no kill hit a checkpoint write"
    resumed = subprocess.run(train_command(tiny_drive, log_dir, "cut", "--resume"), capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Resuming from" in resumed.stdout
    assert not [n for n in os.listdir(models) if n.startswith((".tmp_", ".old_"))]

    for folder in ("weights_1", "last", "best"):
        for name in NETWORKS:
            expected = read_weights(os.path.join(log_dir, "whole", "models", folder, name + ".pdparams"))
            got = read_weights(os.path.join(models, folder, name + ".pdparams"))
            assert sorted(got) == sorted(expected)
            for key, value in expected.items():
                if isinstance(value, np.ndarray):
                    assert np.array_equal(got[key], value), (folder, name, key)
                else:
                    assert got[key] == value, (folder, name, key)
