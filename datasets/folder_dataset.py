"""Your own footage: sequences of frames in temporal order (tools/prepare_frames.py makes them).

    <root>/<sequence>/0000000000.jpg, 0000000001.jpg, ...   the frames (or .png with --png)
    <root>/<sequence>/intrinsics.txt or <root>/intrinsics.txt  "fx fy cx cy" in pixels
    <root>/<sequence>/depth/0000000000.png                   optional ground truth: uint16, metres * 256

Split lines are 'sequence frame' (or 'sequence frame l'). The intrinsics are normalised by
the sequence's own image size, so frames of any size and aspect are resized to
--height/--width with the intrinsics following.
"""
import os

import numpy as np
from PIL import Image

from .mono_dataset import MonoDataset

INTRINSICS_FILE = "intrinsics.txt"


def read_intrinsics(path):
    """(fx, fy, cx, cy) in pixels from a text file holding those four numbers."""
    try:
        with open(path) as f:
            values = [float(v) for v in f.read().split()]
    except ValueError:
        values = []
    if len(values) != 4 or min(values[:2]) <= 0:
        raise ValueError("{}: expected 'fx fy cx cy' (four numbers in pixels, fx and fy positive)".format(path))
    return values


class FolderDataset(MonoDataset):
    """Monocular sequences of frames in folders (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        self._intrinsics = {}
        super().__init__(*args, **kwargs)
        for folder, frame_index, _ in self.lines:  # a missing or bad intrinsics file fails here
            self.get_intrinsics(folder, frame_index, "l", False)

    def parse_line(self, number, line):
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[1].lstrip("-").isdigit() or parts[2:] not in ([], ["l"]):
            raise ValueError(f"split line {number} {line!r}: expected 'sequence frame'")
        return parts[0], int(parts[1]), "l"

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, f"{frame_index:010d}{self.img_ext}")

    def get_intrinsics(self, folder, frame_index, side, do_flip):
        if folder not in self._intrinsics:
            own = os.path.join(self.data_path, folder, INTRINSICS_FILE)
            path = own if os.path.isfile(own) else os.path.join(self.data_path, INTRINSICS_FILE)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no intrinsics for sequence {folder}: neither {own} nor {path} exists "
                                        "(write 'fx fy cx cy' in pixels, or use tools/prepare_frames.py --intrinsics)")
            fx, fy, cx, cy = read_intrinsics(path)
            with Image.open(self.get_image_path(folder, frame_index, side)) as img:
                width, height = img.size
            K = np.eye(4, dtype=np.float32)
            K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx / width, fy / height, cx / width, cy / height
            self._intrinsics[folder] = K
        K = self._intrinsics[folder].copy()
        if do_flip:  # the principal point mirrors with the image
            K[0, 2] = 1 - K[0, 2]
        return K

    def depth_path(self, folder, frame_index):
        return os.path.join(self.data_path, folder, "depth", f"{frame_index:010d}.png")

    def check_depth(self):
        return os.path.isfile(self.depth_path(*self.lines[0][:2]))

    def depth_files(self, folder, frame_index, side):
        return [("depth map", self.depth_path(folder, frame_index))]

    def get_depth(self, folder, frame_index, side, do_flip):
        path = self.depth_path(folder, frame_index)
        try:
            with Image.open(path) as img:
                depth = np.array(img).astype(np.float32) / 256
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read ground-truth depth {path}: {e}") from None
        return np.fliplr(depth) if do_flip else depth
