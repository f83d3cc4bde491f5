"""Your own footage: sequences of frames in temporal order (tools/prepare_frames.py makes them).

    <root>/<sequence>/0000000000.jpg, 0000000001.jpg, ...   the frames (or .png with --png)
    <root>/<sequence>/intrinsics.txt or <root>/intrinsics.txt  "fx fy cx cy [baseline]"
    <root>/<sequence>/depth/0000000000.png                   optional ground truth: uint16, metres * 256
    <root>/<sequence>/right/0000000000.jpg, right/depth/...  optional right camera of a stereo pair

The intrinsics are in pixels at the frames' own resolution, normalised by the sequence's
image size, so frames of any size and aspect are resized to --height/--width with the
intrinsics following; --intrinsics gives them for every sequence instead. The optional
fifth number is the stereo baseline in metres (the right camera's offset to the right of
the left one, the pair rectified: the right frames share the intrinsics). Stereo training
uses the network's units, as on KITTI: the rig's baseline is STEREO_BASELINE (0.1) units,
so --min_depth/--max_depth mean the same depth range on any rig, and stereo_scale (the
baseline / 0.1, recorded with the weights) turns the units into metres. With several rigs
the largest baseline is the 0.1, and the others are in proportion.

Split lines are 'sequence frame' or 'sequence frame l|r' (r: the right camera's frame).
"""
import math
import os

import numpy as np
from PIL import Image

from utils import read_text

from .loader import DataError
from .mono_dataset import STEREO_BASELINE, MonoDataset

INTRINSICS_FILE = "intrinsics.txt"


def check_intrinsics(values, source):
    """(fx, fy, cx, cy, baseline or None) of 'fx fy cx cy [baseline]' from `source`; ValueError
    naming `source` otherwise (an infinite or NaN value would hang the loader or break the SVD)."""
    if (len(values) not in (4, 5) or not all(math.isfinite(v) for v in values) or min(values[:2]) <= 0
            or (len(values) == 5 and values[4] <= 0)):
        raise ValueError("{}: expected 'fx fy cx cy' in pixels (finite numbers, fx and fy positive) and "
                         "optionally the stereo baseline in metres (positive), got {}".format(
                             source, " ".join(map(str, values)) or "nothing"))
    return tuple(values[:4]) + (values[4] if len(values) == 5 else None,)


def read_intrinsics(path):
    """(fx, fy, cx, cy, baseline or None) from an intrinsics file."""
    text = read_text(path).split()
    try:
        values = [float(v) for v in text]
    except ValueError:
        raise ValueError("{}: expected numbers 'fx fy cx cy [baseline]', got {!r}".format(path, " ".join(text))) from None
    return check_intrinsics(values, path)


def depth_path(data_path, folder, frame_index, side):
    """The ground-truth depth map of a frame: depth/ beside the camera's frames."""
    camera = os.path.join(data_path, folder, "right" if side == "r" else "")
    return os.path.join(camera, "depth", f"{frame_index:010d}.png")


class FolderDataset(MonoDataset):
    """Sequences of frames in folders, mono or stereo (see the module docstring).

    `intrinsics`, when given, is 'fx fy cx cy [baseline]' for every sequence (--intrinsics)
    and replaces the intrinsics files."""

    other_side = {"l": "r", "r": "l"}
    stereo_scale = None  # known once the split's baselines are read (stereo only)

    def __init__(self, *args, intrinsics=None, **kwargs):
        self._given = None if intrinsics is None else check_intrinsics(list(intrinsics), "--intrinsics")
        self._cameras = {}
        super().__init__(*args, **kwargs)
        for folder, frame_index, side in self.lines:  # missing or bad intrinsics fail here
            self.get_intrinsics(folder, frame_index, side, False)
        if "s" in self.frame_idxs:
            self.stereo_scale = max(self.baseline_metres(folder) for folder, _, _ in self.lines) / STEREO_BASELINE
        self.check_frame_sizes()

    def check_frame_sizes(self):
        """ValueError naming two frames of one sequence whose sizes differ: the intrinsics are
        in pixels of one size (normalised by the first frame's), wrong for frames of another."""
        first, checked = {}, set()
        for line in self.lines:
            for what, path in self.required_files(*line):
                if what.startswith("frame") and path not in checked:
                    checked.add(path)
                    try:
                        with Image.open(path) as img:  # reads the header only
                            size = img.size
                    except (OSError, SyntaxError, ValueError) as e:
                        raise DataError(f"cannot decode image {path}: {e}") from None
                    known = first.setdefault(line[0], (path, size))
                    if size != known[1]:
                        raise ValueError("sequence {} has frames of different sizes: {} is {}x{}, {} is {}x{} (its "
                                         "intrinsics fit one size: resize the frames to one size, e.g. with "
                                         "tools/prepare_frames.py)".format(line[0], known[0], *known[1], path, *size))

    @classmethod
    def option_kwargs(cls, opt):
        return dict(super().option_kwargs(opt), intrinsics=opt.intrinsics)

    def parse_line(self, number, line):
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[1].lstrip("-").isdigit() or parts[2:] not in ([], ["l"], ["r"]):
            raise ValueError(f"split line {number} {line!r}: expected 'sequence frame' or 'sequence frame l|r'")
        return parts[0], int(parts[1]), parts[2] if parts[2:] else "l"

    def is_left(self, side):
        return side == "l"

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, "right" if side == "r" else "", f"{frame_index:010d}{self.img_ext}")

    def camera(self, folder, frame_index, side):
        """(normalised 4x4 K, baseline or None, where they come from) of a sequence."""
        if folder not in self._cameras:
            if self._given is not None:
                source, values = "--intrinsics", self._given
            else:
                own = os.path.join(self.data_path, folder, INTRINSICS_FILE)
                source = own if os.path.isfile(own) else os.path.join(self.data_path, INTRINSICS_FILE)
                if not os.path.isfile(source):
                    raise FileNotFoundError(
                        f"no intrinsics for sequence {folder}: neither {own} nor {source} exists (write 'fx fy cx cy' "
                        "in pixels there, give --intrinsics, or use tools/prepare_frames.py --intrinsics)")
                values = read_intrinsics(source)
            fx, fy, cx, cy, baseline = values
            with Image.open(self.get_image_path(folder, frame_index, side)) as img:
                width, height = img.size
            K = np.eye(4, dtype=np.float32)
            K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx / width, fy / height, cx / width, cy / height
            self._cameras[folder] = K, baseline, source
        return self._cameras[folder]

    def get_intrinsics(self, folder, frame_index, side, do_flip):
        K = self.camera(folder, frame_index, side)[0].copy()
        if do_flip:  # the principal point mirrors with the image
            K[0, 2] = 1 - K[0, 2]
        return K

    def stereo_baseline(self, folder):
        return self.baseline_metres(folder) / self.stereo_scale

    def baseline_metres(self, folder):
        _, baseline, source = self._cameras[folder]
        if baseline is None:
            raise ValueError(f"stereo needs the baseline of sequence {folder}: add it in metres as a fifth "
                             f"number to {source} ('fx fy cx cy baseline')")
        return baseline

    def check_depth(self):
        return os.path.isfile(depth_path(self.data_path, *self.lines[0]))

    def depth_files(self, folder, frame_index, side):
        return [("depth map", depth_path(self.data_path, folder, frame_index, side))]

    def get_depth(self, folder, frame_index, side, do_flip):
        path = depth_path(self.data_path, folder, frame_index, side)
        try:
            with Image.open(path) as img:
                depth = np.array(img).astype(np.float32) / 256
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read ground-truth depth {path}: {e}") from None
        return np.fliplr(depth) if do_flip else depth
