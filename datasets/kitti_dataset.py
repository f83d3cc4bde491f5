"""Loaders for the KITTI raw, odometry and depth-benchmark folder layouts."""
import os

import numpy as np
import skimage.transform
from PIL import Image

from kitti_utils import load_velodyne_points, project_depth_map, velo_to_image
from .loader import DataError
from .mono_dataset import MonoDataset


class KITTIDataset(MonoDataset):
    """Common KITTI settings: split lines 'folder frame side' (side l, r, 2 or 3).

    The intrinsics are normalised by the image size (first row / width, second
    row / height) with the principal point at the centre, which is what makes
    horizontal flipping valid.
    """

    K = np.array([[0.58, 0, 0.5, 0],
                  [0, 1.92, 0.5, 0],
                  [0, 0, 1, 0],
                  [0, 0, 0, 1]], dtype=np.float32)
    full_res_shape = (1242, 375)
    side_map = {"2": 2, "3": 3, "l": 2, "r": 3}
    other_side = {"l": "r", "r": "l", "2": "3", "3": "2"}
    # metres per unit of stereo-trained depth: the rig's 0.54 m baseline over the 0.1 units
    # of the stereo transform training uses (stereo_baseline)
    stereo_scale = 5.4

    def parse_line(self, number, line):
        """(folder, frame_index, side) of a split line 'folder frame side'."""
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"split line {number} {line!r}: expected 'folder frame side'")
        try:
            frame_index = int(parts[1])
        except ValueError:
            raise ValueError(f"split line {number} {line!r}: frame index {parts[1]!r} is not an integer") from None
        if parts[2] not in self.other_side:
            raise ValueError(f"split line {number} {line!r}: side {parts[2]!r} is not one of l, r, 2, 3")
        return parts[0], frame_index, parts[2]

    def get_intrinsics(self, folder, frame_index, side, do_flip):
        return self.K.copy()  # centred principal point: the same when mirrored

    def is_left(self, side):
        return side in ("l", "2")

    def stereo_baseline(self, folder):
        return 0.1  # the reference's unit: the rig's 0.54 m

    def check_depth(self):
        """Whether the first line's ground truth (its first depth file) exists, as in the reference."""
        files = self.depth_files(*self.lines[0])
        return bool(files) and os.path.isfile(files[0][1])


class KITTIRAWDataset(KITTIDataset):
    """KITTI raw: date/drive_sync/image_0X/data/0000000123.ext; depth from velodyne scans."""

    def __init__(self, *args, **kwargs):
        self._projections = {}
        super().__init__(*args, **kwargs)
        if self.load_depth:
            # Parse every calibration now, so a bad file fails here and not mid-epoch.
            for folder, _, side in self.lines:
                self._projection(folder, side)

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, f"image_0{self.side_map[side]}", "data",
                            f"{frame_index:010d}{self.img_ext}")

    def velodyne_path(self, folder, frame_index):
        return os.path.join(self.data_path, folder, "velodyne_points", "data", f"{frame_index:010d}.bin")

    def depth_files(self, folder, frame_index, side):
        calib_dir = os.path.join(self.data_path, folder.split("/")[0])
        return [("velodyne scan", self.velodyne_path(folder, frame_index)),
                ("calibration", os.path.join(calib_dir, "calib_cam_to_cam.txt")),
                ("calibration", os.path.join(calib_dir, "calib_velo_to_cam.txt"))]

    def _projection(self, folder, side):
        """Velodyne-to-image matrix and image shape, parsed once per date and camera."""
        key = (folder.split("/")[0], self.side_map[side])
        if key not in self._projections:
            self._projections[key] = velo_to_image(os.path.join(self.data_path, key[0]), key[1])
        return self._projections[key]

    def get_depth(self, folder, frame_index, side, do_flip):
        velo2im, im_shape = self._projection(folder, side)
        depth = project_depth_map(load_velodyne_points(self.velodyne_path(folder, frame_index)),
                                  velo2im, im_shape)
        target = self.full_res_shape[::-1]
        if depth.shape != target:  # other recording days' images: the reference's resize
            depth = skimage.transform.resize(depth, target, order=0, preserve_range=True, mode="constant")
        return np.fliplr(depth) if do_flip else depth


class KITTIOdomDataset(KITTIDataset):
    """KITTI odometry: sequences/NN/image_2|3/000123.ext; no ground truth depth."""

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, "sequences", f"{int(folder):02d}",
                            f"image_{self.side_map[side]}", f"{frame_index:06d}{self.img_ext}")


class KITTIDepthDataset(KITTIDataset):
    """KITTI depth benchmark: raw images plus proj_depth/groundtruth 16-bit PNGs (depth * 256)."""

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, f"image_0{self.side_map[side]}", "data",
                            f"{frame_index:010d}{self.img_ext}")

    def depth_files(self, folder, frame_index, side):
        return [("ground truth", os.path.join(self.data_path, folder, "proj_depth", "groundtruth",
                                              f"image_0{self.side_map[side]}", f"{frame_index:010d}.png"))]

    def get_depth(self, folder, frame_index, side, do_flip):
        path = self.depth_files(folder, frame_index, side)[0][1]
        try:
            with Image.open(path) as img:
                depth = img.resize(self.full_res_shape, Image.NEAREST)
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"cannot read ground-truth depth {path}: {e}") from None
        depth = np.array(depth).astype(np.float32) / 256
        return np.fliplr(depth) if do_flip else depth


class KITTITestImages(KITTIRAWDataset):
    """The depth benchmark's test images, <data_path>/image/0000000123.png, whose split
    lines are 'image 123' (KITTI's test_depth_prediction_anonymous folder); no ground truth."""

    for_training = False

    def parse_line(self, number, line):
        return super().parse_line(number, line if len(line.split()) == 3 else line + " l")

    def get_image_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, "{:010d}{}".format(frame_index, self.img_ext))

    def check_depth(self):
        return False
