"""datasets.Loader: a sample that cannot be loaded ends training, validation and evaluation
with exit code 1 and one message naming the file, for any number of workers, instead of a
hang (num_workers 0) or "Blocking queue is killed"; its workers end with the process that
started them. Run in subprocesses with a timeout, as a regression would hang."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT


IMAGES = os.path.join("2000_01_01", "2000_01_01_drive_0001_sync", "image_02", "data")


def run_python(code, timeout=90):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_sample_raises_data_error_in_the_main_process(workers):
    run = run_python("""
import numpy as np, paddle
from datasets import Loader
class Samples(paddle.io.Dataset):
    def __len__(self): return 8
    def __getitem__(self, i):
        if i == 5: raise ValueError("cannot decode image /data/5.jpg")
        if i == 6: return {{"x": np.zeros(2, np.float32)}}["y"]  # a bug, not a bad file
        return {{"x": np.full(2, i, np.float32)}}
seen = []
try:
    for batch in Loader(Samples(), batch_size=2, num_workers={}):
        seen.append(batch["x"].numpy()[:, 0].tolist())
except Exception as e:
    print(seen, type(e).__name__, e)
""".format(workers))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "[[0.0, 1.0], [2.0, 3.0]] DataError cannot decode image /data/5.jpg" in run.stdout
    assert "Blocking queue" not in run.stdout + run.stderr


def train(drive, tmp_path, *extra):
    args = ["--data_path", drive, "--split", os.path.join(drive, "splits"), "--height", "64", "--width", "192",
            "--batch_size", "2", "--num_epochs", "1", "--weights_init", "scratch", "--frame_ids", "0",
            "--use_stereo", "--seed", "1", "--log_frequency", "100", "--log_dir", str(tmp_path / "logs"),
            "--model_name", "m"] + list(extra)
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def break_image(drive, frame, content):
    path = os.path.join(drive, IMAGES, "{:010d}.jpg".format(frame))
    with open(path, "rb") as f:
        original = f.read()
    with open(path, "wb") as f:
        f.write(content(original))
    return path, original


@pytest.mark.parametrize("frame, workers, content", [
    (3, 0, lambda data: b""),                      # a training image, no workers
    (3, 2, lambda data: data[:len(data) // 2]),    # truncated, two workers
    (4, 2, lambda data: os.urandom(500)),          # a validation image (its loader has no workers)
])
def test_a_corrupt_image_ends_training_with_one_message(tiny_drive, tmp_path, frame, workers, content):
    path, original = break_image(tiny_drive, frame, content)
    try:
        run = train(tiny_drive, tmp_path, "--num_workers", str(workers))
    finally:
        with open(path, "wb") as f:
            f.write(original)
    assert run.returncode == 1, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot decode image {}".format(path)), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Blocking queue" not in run.stderr


def test_a_corrupt_test_image_ends_evaluation_with_one_message(tiny_drive, tmp_path):
    test_images = IMAGES.replace("0001", "0002")
    path = os.path.join(tiny_drive, test_images, "0000000001.jpg")
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff")  # the start of a JPEG, nothing more
    (tmp_path / "splits" / "synthetic").mkdir(parents=True)
    with open(os.path.join(tiny_drive, "splits", "test_files.txt")) as f:
        (tmp_path / "splits" / "synthetic" / "test_files.txt").write_text(f.read())
    run = run_python("""
import sys, numpy as np, paddle
import evaluate_depth, network
from export_gt_depth import export_gt_depths
export_gt_depths({tiny_drive!r}, "synthetic", {splits!r})
evaluate_depth.SPLITS_DIR = {splits!r}
encoder = network.ResnetEncoder(18, False)
paddle.save(dict(encoder.state_dict(), height=64, width=192), {weights!r} + "/encoder.pdparams")
paddle.save(network.DepthDecoder(encoder.num_ch_enc).state_dict(), {weights!r} + "/depth.pdparams")
evaluate_depth.main(["--data_path", {tiny_drive!r}, "--eval_split", "synthetic", "--eval_mono",
                     "--load_weights_folder", {weights!r}, "--num_workers", "0"])
""".format(tiny_drive=tiny_drive, splits=str(tmp_path / "splits"), weights=str(tmp_path)), timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("error: cannot decode image " + path)


def children(pid):
    """The living processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(entry))
    return found


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_training_stops_its_workers(tiny_drive, tmp_path, sig):
    args = ["--data_path", tiny_drive, "--split", os.path.join(tiny_drive, "splits"), "--height", "64", "--width",
            "192", "--batch_size", "2", "--num_epochs", "1000", "--weights_init", "scratch", "--frame_ids", "0",
            "--use_stereo", "--num_workers", "2", "--log_dir", str(tmp_path / "logs"), "--model_name", "m"]
    with open(tmp_path / "out.txt", "w") as out:  # not a pipe: workers left running would hold it open
        run = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT, stdout=out,
                               stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        start = time.time()
        while len(children(run.pid)) < 2 and time.time() - start < 180:
            assert run.poll() is None, (tmp_path / "out.txt").read_text()[-2000:]
            time.sleep(0.1)
        workers = children(run.pid)
        assert len(workers) == 2
        while "Training" not in (tmp_path / "out.txt").read_text() and time.time() - start < 360:
            assert run.poll() is None, (tmp_path / "out.txt").read_text()[-2000:]  # workers load batches
            time.sleep(0.1)
        time.sleep(1)
    finally:
        run.send_signal(sig)
        run.wait(timeout=120)
    if sig != signal.SIGKILL:
        last = tmp_path / "logs" / "m" / "models" / "last"
        assert re.search(r"\nstopped; (the last checkpoint is {} \(epoch \d+, batch 0\), its weights are finite: "
                         r"--resume continues from it|no checkpoint has been written yet .*)\n$".format(
                             re.escape(str(last))), (tmp_path / "out.txt").read_text())
    start = time.time()
    while any(alive(pid) for pid in workers) and time.time() - start < 60:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers left running"
    assert not [n for n in os.listdir("/dev/shm") if n.split("_")[1:2] in ([str(p)] for p in workers + [run.pid])]
