"""KITTI loaders: sample contents, faithfulness to the reference's rules, reproducibility, bad input."""
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from datasets import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset, SeededBatchSampler
from datasets.color_jitter import JitterParams, adjust_hue, apply_jitter, draw_jitter
from kitti_utils import generate_depth_map

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
SAMPLE = os.path.join(SHARED, "kitti_sample")
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
needs_sample = pytest.mark.skipif(not os.path.isdir(os.path.join(SAMPLE, DRIVE)),
                                  reason="../shared/kitti_sample is absent (real KITTI frames)")
FRAMES = [0, -1, 1, "s"]
H, W = 32, 64   # sample size for the synthetic drive (scales 64x32 ... 8x4)


def make_drive(root, frames=(0, 1, 2), ext=".png", size=(96, 40), same_image=False, seed=0):
    """A small KITTI-raw-like drive of textured images: root/DRIVE/image_0X/data/NNNNNNNNNN.ext."""
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for cam in (2, 3):
        folder = os.path.join(root, DRIVE, f"image_0{cam}", "data")
        os.makedirs(folder, exist_ok=True)
        for frame in frames:
            pixels = shared if same_image else rng.integers(0, 256, shared.shape, dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{frame:010d}{ext}"))
    return str(root)


def lines_for(sides="lr", frame=1, repeat=1):
    return [f"{DRIVE} {frame} {side}" for side in sides] * repeat


def raw(root, lines, frames=FRAMES, height=H, width=W, **kwargs):
    kwargs.setdefault("img_ext", ".png")
    return KITTIRAWDataset(root, lines, height, width, frames, 4, **kwargs)


def augmentation_cases(dataset, wanted):
    """First index whose drawn augmentation (flip, jittered) equals each wanted pair."""
    found = {}
    for index in range(len(dataset)):
        flip, jitter = dataset.draw_augmentation(index)
        found.setdefault((flip, jitter is not None), index)
    missing = set(wanted) - set(found)
    assert not missing, f"no sample with augmentation {missing}; use more lines"
    return found


# --- contents ---------------------------------------------------------------------------------

@needs_sample
def test_real_sample_keys_shapes_and_values():
    item = raw(SAMPLE, lines_for("l"), height=192, width=640)[0]
    expected = {(kind, f, s) for kind in ("color", "color_aug") for f in FRAMES for s in range(4)}
    expected |= {(k, s) for k in ("K", "inv_K") for s in range(4)} | {"stereo_T"}
    assert set(item) == expected   # no depth_gt: the sample has no velodyne scans
    for s in range(4):
        for f in FRAMES:
            color = item[("color", f, s)]
            assert color.shape == (3, 192 // 2 ** s, 640 // 2 ** s) and color.dtype == np.float32
            assert 0 <= color.min() and color.max() <= 1 and color.std() > 0.05
            np.testing.assert_array_equal(item[("color_aug", f, s)], color)   # no augmentation at test time
        assert item[("K", s)].dtype == item[("inv_K", s)].dtype == np.float32
    assert not np.array_equal(item[("color", 0, 0)], item[("color", "s", 0)])


@needs_sample
def test_resized_images_equal_the_pil_lanczos_chain_from_the_full_image():
    item = raw(SAMPLE, lines_for("r"), height=192, width=640)[0]
    for f, (cam, frame) in {0: (3, 1), -1: (3, 0), 1: (3, 2), "s": (2, 1)}.items():
        img = Image.open(os.path.join(SAMPLE, DRIVE, f"image_0{cam}", "data", f"{frame:010d}.png")).convert("RGB")
        for s in range(4):
            img = img.resize((640 // 2 ** s, 192 // 2 ** s), Image.LANCZOS)
            expected = np.asarray(img).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
            np.testing.assert_array_equal(item[("color", f, s)], expected)


def test_intrinsics_are_scaled_per_scale(tmp_path):
    item = raw(make_drive(tmp_path), lines_for("l"), height=192, width=640)[0]
    for s in range(4):
        w, h = 640 // 2 ** s, 192 // 2 ** s
        K = item[("K", s)]
        np.testing.assert_allclose(K[:2, :3], [[0.58 * w, 0, 0.5 * w], [0, 1.92 * h, 0.5 * h]], rtol=1e-6)
        np.testing.assert_allclose(item[("inv_K", s)] @ K, np.eye(4), atol=1e-5)


def test_stereo_T_sign_follows_side_and_flip(tmp_path):
    ds = raw(make_drive(tmp_path), lines_for("lr", repeat=12), is_train=True, seed=1)
    plain = raw(str(tmp_path), lines_for("lr"))
    cases = augmentation_cases(ds, [(flip, aug) for flip in (False, True) for aug in (False, True)])
    for (flip, _), index in cases.items():
        side = ds.lines[index][2]
        item = ds[index]
        expected = np.eye(4, dtype=np.float32)
        expected[0, 3] = (-0.1 if side == "l" else 0.1) * (-1 if flip else 1)
        np.testing.assert_array_equal(item["stereo_T"], expected)
        unflipped = plain[0 if side == "l" else 1]
        same = np.array_equal(item[("color", 0, 0)], unflipped[("color", 0, 0)])
        assert same != flip
    # the flip happens on the full image, before resizing
    index = cases[(True, False)]
    side_cam = 2 if ds.lines[index][2] == "l" else 3
    full = Image.open(os.path.join(str(tmp_path), DRIVE, f"image_0{side_cam}", "data", "0000000001.png"))
    expected = np.asarray(full.transpose(Image.FLIP_LEFT_RIGHT).resize((W, H), Image.LANCZOS))
    np.testing.assert_array_equal(ds[index][("color", 0, 0)], expected.transpose(2, 0, 1) / np.float32(255))


def test_colour_jitter_is_shared_by_all_frames_and_scales(tmp_path):
    root = make_drive(tmp_path, same_image=True)   # every frame of both cameras is the same picture
    ds = raw(root, lines_for("l", repeat=16), is_train=True, seed=3)
    index = augmentation_cases(ds, [(False, True)])[(False, True)]
    item = ds[index]
    _, params = ds.draw_augmentation(index)
    img = Image.open(os.path.join(root, DRIVE, "image_02", "data", "0000000001.png")).convert("RGB")
    for s in range(4):
        img = img.resize((W // 2 ** s, H // 2 ** s), Image.LANCZOS)
        expected = np.asarray(apply_jitter(img, params)).transpose(2, 0, 1) / np.float32(255)
        for f in FRAMES:
            np.testing.assert_array_equal(item[("color_aug", f, s)], expected)
            assert not np.array_equal(item[("color_aug", f, s)], item[("color", f, s)])


def test_draw_jitter_ranges_and_order():
    rng = np.random.default_rng(0)
    draws = [draw_jitter(rng) for _ in range(200)]
    for p in draws:
        assert sorted(p.order) == [0, 1, 2, 3]
        assert all(0.8 <= v <= 1.2 for v in (p.brightness, p.contrast, p.saturation)) and -0.1 <= p.hue <= 0.1
    assert len({p.order for p in draws}) == 24


def test_jitter_operations_match_hand_computed_values():
    img = Image.fromarray(np.array([[[100, 200, 250], [10, 20, 30]]], dtype=np.uint8))
    identity = dict(brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0)

    def run(op, **factors):
        return np.asarray(apply_jitter(img, JitterParams(order=(op,), **{**identity, **factors}))).tolist()

    # blend with black: value * factor, truncated, clipped at 255
    assert run(0, brightness=1.1) == [[[110, 220, 255], [11, 22, 33]]]
    assert run(0, brightness=0.9) == [[[90, 180, 225], [9, 18, 27]]]
    # blend with the image's mean grey level, (176 + 18) / 2 = 97: 97 + 1.2 * (v - 97), truncated, clipped
    assert np.asarray(img.convert("L")).tolist() == [[176, 18]]
    assert run(1, contrast=1.2) == [[[100, 220, 255], [0, 4, 16]]]
    # blend with the pixel's own grey level
    grey = np.asarray(img.convert("L")).tolist()[0]
    assert run(2, saturation=0.0) == [[[g] * 3 for g in grey]]
    # a third of a turn (85 hue steps) moves pure red to pure green
    red = Image.new("RGB", (1, 1), (255, 0, 0))
    assert np.asarray(adjust_hue(red, 1 / 3)).tolist() == [[[0, 255, 0]]]
    # the shift is truncated toward zero and wraps: -0.1 turn = -25 steps = +231
    h, s, v = img.convert("HSV").split()
    for steps, same in ((231, True), (230, False)):
        shifted = Image.merge("HSV", (h.point(lambda x: (x + steps) % 256), s, v)).convert("RGB")
        assert np.array_equal(np.asarray(adjust_hue(img, -0.1)), np.asarray(shifted)) == same
    # the order matters
    a = apply_jitter(img, JitterParams((0, 1), 1.2, 0.8, 1.0, 0.0))
    b = apply_jitter(img, JitterParams((1, 0), 1.2, 0.8, 1.0, 0.0))
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_odometry_layout(tmp_path):
    for cam in (2, 3):
        folder = tmp_path / "sequences" / "08" / f"image_{cam}"
        folder.mkdir(parents=True)
        for frame in (4055, 4056, 4057):
            Image.new("RGB", (40, 20), (cam * 50, frame % 256, 7)).save(folder / f"{frame:06d}.jpg")
    ds = KITTIOdomDataset(str(tmp_path), ["8 4056 r"], 16, 32, [0, -1, 1, "s"], 2)
    item = ds[0]
    assert "depth_gt" not in item
    assert item[("color", -1, 0)][1].mean() == pytest.approx(4055 % 256 / 255, abs=0.01)
    assert item[("color", "s", 1)][0].mean() == pytest.approx(100 / 255, abs=0.01)


def test_depth_benchmark_layout_reads_16_bit_ground_truth(tmp_path):
    root = make_drive(tmp_path, ext=".jpg")
    gt_dir = tmp_path / DRIVE / "proj_depth" / "groundtruth" / "image_02"
    gt_dir.mkdir(parents=True)
    gt = np.zeros((375, 1242), np.uint16)
    gt[100, 10], gt[200, 1000] = 256 * 10 + 128, 65535
    Image.fromarray(gt).save(gt_dir / "0000000001.png")
    ds = KITTIDepthDataset(root, lines_for("l", repeat=16), H, W, [0], 4, is_train=True, seed=0)
    cases = augmentation_cases(ds, [(False, False), (True, False)])
    depth = ds[cases[(False, False)]]["depth_gt"]
    assert depth.shape == (1, 375, 1242) and depth.dtype == np.float32
    assert depth[0, 100, 10] == 10.5 and depth[0, 200, 1000] == pytest.approx(65535 / 256)
    assert np.count_nonzero(depth) == 2
    flipped = ds[cases[(True, False)]]["depth_gt"]
    np.testing.assert_array_equal(flipped, depth[:, :, ::-1])


@needs_sample
def test_raw_depth_from_velodyne_with_real_calibration(tmp_path):
    root = make_drive(tmp_path)
    shutil.copy(os.path.join(SAMPLE, "2011_09_26", "calib_cam_to_cam.txt"), tmp_path / "2011_09_26")
    shutil.copy(os.path.join(SAMPLE, "2011_09_26", "calib_velo_to_cam.txt"), tmp_path / "2011_09_26")
    velo_dir = tmp_path / DRIVE / "velodyne_points" / "data"
    velo_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    scan = np.column_stack([rng.uniform(2, 60, 5000), rng.uniform(-15, 15, 5000),
                            rng.uniform(-2, 1, 5000), np.zeros(5000)]).astype(np.float32)
    scan.tofile(velo_dir / "0000000001.bin")
    ds = raw(root, lines_for("lr", repeat=8), is_train=True, seed=0)
    assert ds.load_depth
    cases = augmentation_cases(ds, [(False, False), (True, False)])
    for (flip, _), index in cases.items():
        cam = 2 if ds.lines[index][2] == "l" else 3
        expected = generate_depth_map(str(tmp_path / "2011_09_26"), str(velo_dir / "0000000001.bin"), cam)
        expected = expected[:, ::-1] if flip else expected
        depth = ds[index]["depth_gt"]
        assert depth.shape == (1, 375, 1242) and depth.dtype == np.float32
        assert np.count_nonzero(expected) > 500
        np.testing.assert_array_equal(depth[0], expected.astype(np.float32))

    # other recording days have other image sizes: the map is resized to 375 x 1242
    calib = tmp_path / "2011_09_26" / "calib_cam_to_cam.txt"
    text = calib.read_text().replace("S_rect_02: 1.242000e+03 3.750000e+02", "S_rect_02: 1.241000e+03 3.760000e+02")
    calib.write_text(text)
    ds = raw(root, lines_for("l"))
    expected = generate_depth_map(str(tmp_path / "2011_09_26"), str(velo_dir / "0000000001.bin"), 2)
    assert expected.shape == (376, 1241)
    # as the reference's skimage resize (order 0): output pixel o takes the input pixel nearest to
    # its centre, (o + 0.5) * n_in / n_out - 0.5, rounded half up
    rows, cols = (np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), n_in - 1)
                  for n_out, n_in in ((375, 376), (1242, 1241)))
    assert rows[-3:].tolist() == [373, 374, 375] and cols[-3:].tolist() == [1238, 1239, 1240]
    np.testing.assert_array_equal(ds[0]["depth_gt"][0], expected[np.ix_(rows, cols)].astype(np.float32))


# --- reproducibility --------------------------------------------------------------------------

def load_epochs(dataset, num_workers, epochs=(0, 1), batch_size=3):
    sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=True, seed=dataset.seed)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    result = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        result.append([{k: v.numpy() for k, v in batch.items()} for batch in loader])
    return result


def test_same_seed_gives_identical_batches_for_0_and_2_workers_and_epochs_differ(tmp_path):
    root = make_drive(tmp_path)
    ds = raw(root, lines_for("lr", repeat=4), is_train=True, seed=7)
    serial = load_epochs(ds, 0)
    parallel = load_epochs(raw(root, lines_for("lr", repeat=4), is_train=True, seed=7), 2)
    for epoch_a, epoch_b in zip(serial, parallel):
        assert len(epoch_a) == len(epoch_b) == 3
        for a, b in zip(epoch_a, epoch_b):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
    first, second = ([b[("color_aug", 0, 0)] for b in epoch] for epoch in serial)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    # the per-sample augmentation itself changes with the epoch, not just the order
    ds.set_epoch(0)
    draws0 = [ds.draw_augmentation(i) for i in range(len(ds))]
    ds.set_epoch(1)
    assert draws0 != [ds.draw_augmentation(i) for i in range(len(ds))]


def test_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    root = make_drive(tmp_path)
    a = raw(root, lines_for("lr", repeat=4), is_train=True, seed=5)
    b = raw(root, lines_for("lr", repeat=4), is_train=True, seed=5)
    b.set_epoch(3)
    b[2]   # loading other samples or epochs first must not matter
    b.set_epoch(0)
    expected = b[6]
    for key, value in a[6].items():
        np.testing.assert_array_equal(value, expected[key])
    c = raw(root, lines_for("lr", repeat=4), is_train=True, seed=6)
    assert [a.draw_augmentation(i) for i in range(8)] != [c.draw_augmentation(i) for i in range(8)]


def test_sampler_orders_epochs_and_splits_replicas():
    s = SeededBatchSampler(10, 3, shuffle=True, seed=0)
    epoch0 = list(s)
    assert len(epoch0) == len(s) == 4 and sorted(sum(epoch0, [])) == list(range(10))
    assert list(SeededBatchSampler(10, 3, shuffle=True, seed=0)) == epoch0
    s.set_epoch(1)
    assert list(s) != epoch0
    assert list(SeededBatchSampler(10, 3, shuffle=False)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert len(SeededBatchSampler(10, 3, drop_last=True)) == len(list(SeededBatchSampler(10, 3, drop_last=True))) == 3

    replicas = [SeededBatchSampler(10, 2, seed=4, num_replicas=3, rank=r) for r in range(3)]
    parts = [r.indices() for r in replicas]
    assert [len(p) for p in parts] == [4, 4, 4] and set(sum(parts, [])) == set(range(10))
    assert all(len(r) == 2 for r in replicas)
    with pytest.raises(ValueError, match="rank 3"):
        SeededBatchSampler(10, 2, num_replicas=3, rank=3)


# --- bad input --------------------------------------------------------------------------------

def test_missing_files_fail_at_construction_naming_line_and_path(tmp_path):
    root = make_drive(tmp_path, frames=(0, 1, 2, 3))
    os.remove(os.path.join(root, DRIVE, "image_03", "data", "0000000002.png"))
    lines = [f"{DRIVE} 1 l", f"{DRIVE} 2 l", f"{DRIVE} 1 r"]
    expected = r"split line 3 .*1 r'.*frame 1 is missing: .*image_03/data/0000000002.png.*1 of 3 lines.*skip_missing"
    with pytest.raises(FileNotFoundError, match=expected):
        raw(root, lines, frames=[0, -1, 1])
    with pytest.warns(UserWarning, match="dropping lines with missing files"):
        ds = raw(root, lines, frames=[0, -1, 1], skip_missing=True)
    assert ds.filenames == lines[:2] and len(ds) == 2


def test_frame_without_neighbour_is_reported(tmp_path):
    root = make_drive(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split line 1 .*frame -1 is missing: .*image_02/data/-000000001.png"):
        raw(root, [f"{DRIVE} 0 l"])
    with pytest.raises(FileNotFoundError, match=r"frame 1 is missing: .*0000000003.png.*no line is left"):
        raw(root, [f"{DRIVE} 2 l"], skip_missing=True)


@pytest.mark.parametrize("line,message", [
    (f"{DRIVE} 1", "expected 'folder frame side'"),
    (f"{DRIVE} one l", "frame index 'one' is not an integer"),
    (f"{DRIVE} 1 x", "side 'x' is not one of"),
])
def test_malformed_split_lines(tmp_path, line, message):
    with pytest.raises(ValueError, match=f"split line 1 .*{message}"):
        raw(make_drive(tmp_path), [line])


def test_undecodable_image_names_the_file(tmp_path):
    root = make_drive(tmp_path)
    bad = os.path.join(root, DRIVE, "image_02", "data", "0000000002.png")
    with open(bad, "wb") as f:
        f.write(b"not an image at all")
    ds = raw(root, [f"{DRIVE} 1 l"])
    with pytest.raises(ValueError, match=f"cannot decode image {bad}"):
        ds[0]
    truncated = os.path.join(root, DRIVE, "image_03", "data", "0000000001.png")
    data = open(truncated, "rb").read()
    with open(truncated, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match=f"cannot decode image {truncated}"):
        raw(root, [f"{DRIVE} 1 l"], frames=[0, "s"])[0]


def test_bad_calibration_fails_at_construction_naming_the_file(tmp_path):
    root = make_drive(tmp_path)
    velo_dir = tmp_path / DRIVE / "velodyne_points" / "data"
    velo_dir.mkdir(parents=True)
    np.zeros((3, 4), np.float32).tofile(velo_dir / "0000000001.bin")
    with pytest.raises(FileNotFoundError, match=r"calibration is missing: .*2011_09_26/calib_cam_to_cam.txt"):
        raw(root, lines_for("l"))
    (tmp_path / "2011_09_26" / "calib_cam_to_cam.txt").write_text("calib_time: today\nS_rect_02: 1242 375\n")
    (tmp_path / "2011_09_26" / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n")
    with pytest.raises(ValueError, match=r"calib_cam_to_cam.txt has no 'R_rect_00' entry"):
        raw(root, lines_for("l"))
    calib = tmp_path / "2011_09_26" / "calib_velo_to_cam.txt"
    calib.write_bytes(np.random.RandomState(0).bytes(400))  # random bytes: no UTF-8 text
    (tmp_path / "2011_09_26" / "calib_cam_to_cam.txt").write_text(
        "S_rect_02: 1242 375\nR_rect_00: 1 0 0 0 1 0 0 0 1\nP_rect_02: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(ValueError, match=r"^{} is not a text file \(byte \d+ is not UTF-8\)".format(calib)):
        raw(root, lines_for("l"))


def test_validation_lists_each_folder_once_for_a_large_split(tmp_path, monkeypatch):
    # 40,000 lines over 20 drives: one directory listing per folder, not one stat per file
    for d in range(20):
        for cam in (2, 3):
            folder = tmp_path / "2011_09_26" / f"d{d}" / f"image_0{cam}" / "data"
            folder.mkdir(parents=True)
            for frame in range(102):
                (folder / f"{frame:010d}.jpg").touch()
    lines = [f"2011_09_26/d{i % 20} {1 + i % 100} {'lr'[i % 3 % 2]}" for i in range(40000)]
    calls = {"listdir": 0, "stat": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call
    monkeypatch.setattr(os, "listdir", counted("listdir", os.listdir))
    monkeypatch.setattr(os, "stat", counted("stat", os.stat))
    ds = KITTIRAWDataset(str(tmp_path), lines, H, W, FRAMES, 4, is_train=True)
    assert len(ds) == 40000
    assert calls["listdir"] <= 40 and calls["stat"] < 100, calls


# --- split files ------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "splits")), reason="../shared/splits is absent")
def test_get_splits_copies_and_verifies_from_a_local_folder(tmp_path):
    tool = os.path.join(ROOT, "tools", "get_splits.py")
    out = tmp_path / "splits"
    done = subprocess.run([sys.executable, tool, "--from", os.path.join(SHARED, "splits"), "--out", str(out),
                           "--splits", "eigen", "odom"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == ["eigen/test_files.txt", "kitti_archives_to_download.txt", "odom/test_files_09.txt",
                      "odom/test_files_10.txt", "odom/train_files.txt", "odom/val_files.txt"]
    assert (out / "eigen" / "test_files.txt").read_bytes() == \
        open(os.path.join(SHARED, "splits", "eigen", "test_files.txt"), "rb").read()

    altered = tmp_path / "altered"
    shutil.copytree(os.path.join(SHARED, "splits"), altered)
    os.chmod(altered / "eigen", 0o755)
    os.chmod(altered / "eigen" / "test_files.txt", 0o644)
    with open(altered / "eigen" / "test_files.txt", "a") as f:
        f.write("extra line\n")
    done = subprocess.run([sys.executable, tool, "--from", str(altered), "--out", str(tmp_path / "o2"),
                           "--splits", "eigen"], capture_output=True, text=True)
    assert done.returncode != 0 and "eigen/test_files.txt: SHA-256" in done.stderr


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "splits")), reason="../shared/splits is absent")
def test_get_splits_from_a_checkout_without_eigen_says_what_is_missing(tmp_path):
    """The published Paddle port's checkout: the reference's splits but splits/eigen."""
    tool = os.path.join(ROOT, "tools", "get_splits.py")
    checkout = tmp_path / "monodepth2-paddle"
    shutil.copytree(os.path.join(SHARED, "splits"), checkout / "splits", ignore=shutil.ignore_patterns("eigen"))
    assert not (checkout / "splits" / "eigen").exists() and (checkout / "splits" / "eigen_zhou").is_dir()
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, tool, "--from", str(checkout), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    for part in ("--from {} lacks 1 of the 15 split files needed: eigen/test_files.txt.".format(checkout / "splits"),
                 "nianticlabs/monodepth2", "run without --from to download them",
                 "--splits benchmark eigen_benchmark eigen_full eigen_zhou odom"):
        assert part in done.stderr
    assert not out.exists()
    done = subprocess.run([sys.executable, tool, "--from", str(checkout), "--out", str(out), "--splits",
                           "benchmark", "eigen_benchmark", "eigen_full", "eigen_zhou", "odom"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "wrote 14 split files" in done.stdout


def test_registry_names_its_datasets():
    from datasets import DATASETS, dataset_class
    assert dataset_class("kitti") is KITTIRAWDataset and dataset_class("kitti_odom") is KITTIOdomDataset
    with pytest.raises(ValueError, match="unknown dataset 'kitty': choose from " + ", ".join(sorted(DATASETS))):
        dataset_class("kitty")


def test_images_of_other_modes_are_read_as_rgb_or_refused(tmp_path):
    from datasets.mono_dataset import pil_loader
    gray = np.random.default_rng(3).integers(0, 256, (8, 12)).astype(np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    np.testing.assert_array_equal(np.asarray(pil_loader(str(tmp_path / "deep.png"))),
                                  np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2))
    rgba = np.random.default_rng(4).integers(0, 256, (8, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(pil_loader(str(tmp_path / "rgba.png"))), rgba[:, :, :3])
    Image.fromarray(gray.astype(np.int32), "I").save(tmp_path / "int.tif")
    with pytest.raises(ValueError, match="int.tif is a 32-bit integer image of unknown range"):
        pil_loader(str(tmp_path / "int.tif"))


def test_nearest_resize_is_pils_and_the_published_ports(tmp_path):
    """--resize nearest: every scale is PIL's nearest resize of the previous one, which is
    what paddle.vision's Resize(interpolation='nearest') does in the published port."""
    from paddle.vision.transforms import Resize
    root = make_drive(tmp_path, size=(97, 41))
    sample = raw(root, lines_for("l"), frames=[0], resize="nearest")[0]
    lanczos = raw(root, lines_for("l"), frames=[0])[0]
    pil = port = Image.open(os.path.join(root, DRIVE, "image_02", "data", "0000000001.png")).convert("RGB")
    for s in range(4):
        size = (W // 2 ** s, H // 2 ** s)
        pil = pil.resize(size, Image.NEAREST)
        port = Resize((size[1], size[0]), interpolation="nearest")(port)
        np.testing.assert_array_equal(sample[("color", 0, s)], np.asarray(pil).transpose(2, 0, 1) / np.float32(255))
        np.testing.assert_array_equal(np.asarray(port), np.asarray(pil))
        assert not np.array_equal(sample[("color", 0, s)], lanczos[("color", 0, s)])
    with pytest.raises(ValueError, match="resize must be one of lanczos, nearest, got 'cubic'"):
        raw(root, lines_for("l"), frames=[0], resize="cubic")


def test_stereo_scale_is_the_rigs_and_unknown_rigs_are_named(monkeypatch):
    from datasets import DATASETS, MonoDataset, stereo_scale

    assert stereo_scale({"dataset": "kitti"}, "--eval_stereo", "") == 5.4
    assert stereo_scale({}, "--eval_stereo", "") == 5.4  # the reference's weights record nothing
    assert stereo_scale({"dataset": "folder", "stereo_scale": 3.0}, "--eval_stereo", "") == 3.0
    monkeypatch.setitem(DATASETS, "rigless", MonoDataset)
    for record in ({"dataset": "rigless"}, {"dataset": "folder"}):
        with pytest.raises(ValueError, match="--pred_metric_depth: depth stereo-trained on --dataset {} has no "
                                             "known metric scale .*; drop it".format(record["dataset"])):
            stereo_scale(record, "--pred_metric_depth", "drop it")
