"""Turn videos or folders of frames into a folder dataset (datasets/folder_dataset.py).

    python tools/prepare_frames.py drive.mp4 [more.mp4 frames_dir/ ...] --out ROOT
        [--fps 10 | --every N] [--min_change 0.01] [--intrinsics FX FY CX CY [BASELINE] | --fov DEGREES]
        [--right RIGHT.mp4 ...] [--frame_ids 0 -1 1] [--val_fraction 0.1] [--test_fraction 0.1]

Each input becomes the sequence ROOT/<name>/ of frames 0000000000.jpg, ... in temporal
order. --every keeps every Nth frame, --fps the frames closest to that rate (Monodepth2 is
tuned for KITTI's ~10 fps). A frame is dropped when it differs from the last kept one by
less than --min_change: the mean absolute difference of the two frames in grey, scaled
to [0, 1], at 64 pixels wide (a parked camera gives the photometric loss nothing to learn).
--intrinsics (pixels at the frames' resolution, then optionally the stereo baseline in
metres) is written to ROOT/intrinsics.txt; --fov guesses them per sequence from a
horizontal field of view, with a warning. --right gives each input's right camera (a
rectified stereo pair): its frames with the same numbers as the left's kept ones go to
ROOT/<name>/right/, and the training lines use both cameras (--frame_ids defaults to 0
then: stereo training). Every sequence is cut in three: training frames, then about
--val_fraction of them for validation, then the last --test_fraction held out for testing,
with len(--frame_ids) frames left out between the parts, so that no frame a line reads is
read by another part. Writes ROOT/train_files.txt, val_files.txt (lines whose neighbours
for --frame_ids lie in their own part) and test_files.txt (the test frames, left camera).
Then: python train.py --dataset folder --data_path ROOT --split ROOT
"""
import argparse
import glob
import itertools
import math
import os
import sys
import warnings

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project, for datasets

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_frames(path):
    """(frames per second or None, iterator of (name, RGB PIL image)) of a video or a folder of
    images; the name is the image's file, or "frame N" of a video."""
    if os.path.isdir(path):
        files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError("{}: no {} images".format(path, "/".join(IMAGE_EXTENSIONS)))
        return None, ((f, Image.open(f).convert("RGB")) for f in files)
    if not os.path.isfile(path):
        raise FileNotFoundError("{}: no such video or folder".format(path))
    import cv2
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError("cannot read the video {}".format(path))

    def frames():
        try:
            for i in itertools.count():
                ok, frame = capture.read()
                if not ok:
                    return
                yield "{} frame {}".format(path, i), Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
    return capture.get(cv2.CAP_PROP_FPS) or None, frames()


def thumbnail(image):
    """Grey image 64 pixels wide in [0, 1], for the motion test."""
    width, height = image.size
    small = image.convert("L").resize((64, max(1, round(64 * height / width))), Image.BILINEAR)
    return np.asarray(small, dtype=np.float32) / 255


def extract(path, folder, step, min_change, keep=None):
    """Write the kept frames of `path` into `folder` (those numbered in `keep` if given);
    returns (count, (width, height), the numbers of the kept frames in `path`)."""
    _, frames = read_frames(path)
    os.makedirs(folder, exist_ok=True)
    count, last, size, kept = 0, None, None, []
    for i, (name, image) in enumerate(frames):
        if (i % step if keep is None else i not in keep):
            continue
        if size is not None and image.size != size[1]:  # one sequence, one camera: one size
            raise ValueError("{} is {}x{}, but {} is {}x{}: the frames of a sequence must have one size".format(
                name, *image.size, size[0], *size[1]))
        small = thumbnail(image)
        if keep is None and last is not None and np.abs(small - last).mean() < min_change:
            continue
        size = size or (name, image.size)
        image.save(os.path.join(folder, "{:010d}.jpg".format(count)), quality=95)
        last, count = small, count + 1
        kept.append(i)
    if count == 0:
        raise ValueError("{}: no frame could be read".format(path))
    return count, size[1], kept


def split_lines(name, count, frame_ids, val_fraction, test_fraction, sides="l"):
    """(train, val, test lines) of a sequence of `count` frames, cut into three consecutive
    ranges: training first, then validation (about val_fraction of the frames), then test (the
    last test_fraction, left camera only), with len(frame_ids) frames left out between the
    ranges. A line needs its neighbours for frame_ids within its own range (a test line reads its
    own frame only), so no frame is read by two parts and none borders another part's."""
    gap = len(frame_ids)
    num_test = max(1, round(test_fraction * count)) if test_fraction > 0 else 0
    num_val = max(max(frame_ids) - min(frame_ids) + 1, round(val_fraction * count))  # at least one line
    val_end = count - num_test - (gap if num_test else 0)
    val_start = val_end - num_val

    def lines(start, end, ids, sides):
        start = max(start, 0)
        return ["{} {} {}".format(name, i, side) for i in range(start, end)
                if all(start <= i + f < end for f in ids) for side in sides]
    return (lines(0, val_start - gap, frame_ids, sides), lines(val_start, val_end, frame_ids, sides),
            lines(count - num_test, count, [0], "l"))


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def prepare(inputs, out, fps=None, every=None, min_change=0.01, intrinsics=None, fov=None,
            frame_ids=None, val_fraction=0.1, right=None, test_fraction=0.1):
    """Build the folder dataset ROOT=`out` from the videos or folders `inputs` (and their
    right cameras `right`); returns the number of (train, val, test) lines. `frame_ids`
    defaults to 0 -1 1, with `right` to 0 (stereo training)."""
    if right is not None and len(right) != len(inputs):
        raise ValueError("--right gives {} right cameras for {} inputs: give one per input".format(
            len(right), len(inputs)))
    if frame_ids is None:
        frame_ids = [0, -1, 1] if right is None else [0]
        if right is not None:
            print("--right: lines for stereo training (--frame_ids 0); give --frame_ids 0 -1 1 for mono+stereo")
    os.makedirs(out, exist_ok=True)
    if intrinsics is not None:
        write_lines(os.path.join(out, "intrinsics.txt"), [" ".join("{:.6f}".format(v) for v in intrinsics)])
    train, val, test = [], [], []
    for number, path in enumerate(inputs):
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        source_fps = read_frames(path)[0]
        step = every or (max(1, round(source_fps / fps)) if fps and source_fps else 1)
        count, (width, height), kept = extract(path, os.path.join(out, name), step, min_change)
        if right is not None:
            right_count, right_size, _ = extract(right[number], os.path.join(out, name, "right"), step, 0, set(kept))
            if (right_count, right_size) != (count, (width, height)):
                raise ValueError("{}: {} frames of {}x{}, but the left camera {} has {} of {}x{}".format(
                    right[number], right_count, *right_size, path, count, width, height))
        if fov is not None:
            warnings.warn("{}: intrinsics guessed from --fov {} (a rough guess: give --intrinsics from a "
                          "calibration for metric results)".format(name, fov))
            f = width / 2 / math.tan(math.radians(fov) / 2)
            write_lines(os.path.join(out, name, "intrinsics.txt"), ["{:.6f} {:.6f} {:.6f} {:.6f}".format(
                f, f, width / 2, height / 2)])
        parts = split_lines(name, count, frame_ids, val_fraction, test_fraction, "l" if right is None else "lr")
        for lines, seq_lines in zip((train, val, test), parts):
            lines += seq_lines
        print("{}: kept {} frames ({}x{}), {} training, {} validation and {} test lines".format(
            path, count, width, height, *map(len, parts)))
    if not train or not val:
        raise ValueError("too few frames for --frame_ids {} with --val_fraction {} and --test_fraction {}: {} "
                         "training and {} validation lines".format(" ".join(map(str, frame_ids)), val_fraction,
                                                                    test_fraction, len(train), len(val)))
    for part, lines in (("train", train), ("val", val), ("test", test)):
        write_lines(os.path.join(out, part + "_files.txt"), lines)
    return len(train), len(val), len(test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="videos (read by OpenCV) or folders of frames")
    parser.add_argument("--out", required=True, help="root of the folder dataset")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=float, help="keep about this many frames per second of video")
    rate.add_argument("--every", type=int, help="keep every Nth frame")
    parser.add_argument("--min_change", type=float, default=0.01,
                        help="drop frames whose mean grey difference to the last kept one is below this")
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument("--intrinsics", type=float, nargs="+", metavar="FX FY CX CY [BASELINE]",
                        help="camera intrinsics in pixels at the frames' resolution, and the stereo "
                             "baseline in metres with --right")
    camera.add_argument("--fov", type=float, help="horizontal field of view in degrees (a rough guess)")
    parser.add_argument("--right", nargs="+", help="the right camera of each input (a rectified stereo pair)")
    parser.add_argument("--frame_ids", type=int, nargs="+",
                        help="frames each training line needs, as train.py's (default 0 -1 1; 0 with --right)")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="share of each sequence for validation")
    parser.add_argument("--test_fraction", type=float, default=0.1,
                        help="share at the end of each sequence held out for testing (0: no test frames)")
    args = parser.parse_args(argv)
    if (args.every is not None and args.every < 1) or (args.fps is not None and args.fps <= 0):
        parser.error("--every and --fps must be positive")
    for name in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(args, name) < 1:
            parser.error("--{} must be in [0, 1), got {}".format(name, getattr(args, name)))
    if args.intrinsics is not None and len(args.intrinsics) not in (4, 5):
        parser.error("--intrinsics takes FX FY CX CY and optionally BASELINE, got {} numbers".format(
            len(args.intrinsics)))
    if args.intrinsics is not None:  # refused as training would refuse the file written
        from datasets.folder_dataset import check_intrinsics
        try:
            check_intrinsics(args.intrinsics, "--intrinsics")
        except ValueError as e:
            parser.error(str(e))
    if args.fov is not None and not 0 < args.fov < 180:
        parser.error("--fov must be between 0 and 180 degrees, got {}".format(args.fov))
    try:
        prepare(args.inputs, args.out, args.fps, args.every, args.min_change, args.intrinsics, args.fov,
                args.frame_ids, args.val_fraction, args.right, args.test_fraction)
    except (OSError, ValueError) as e:
        parser.exit(1, "error: {}\n".format(e))


if __name__ == "__main__":
    sys.exit(main())
