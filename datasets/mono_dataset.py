"""Monocular / stereo training samples: image pyramids, augmentation, intrinsics.

Reproducibility: every random choice of sample ``index`` comes from a generator
seeded by ``(seed, epoch, index)``, so a sample is augmented the same way
whichever worker process loads it, and differently in each epoch.  With
``num_workers > 0`` the DataLoader copies the dataset into its workers when an
iterator is created, so call ``set_epoch`` *before* iterating each epoch (and
do not use ``persistent_workers``, whose copies would keep the old epoch).
"""
import os
import warnings

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

from utils import to_rgb

from .color_jitter import apply_jitter, draw_jitter
from .loader import DataError


# How images are resized to the network's sizes (--resize): the reference uses Lanczos; the
# published Paddle port trained and evaluated its weights on nearest-neighbour resizes.
RESAMPLING = {"lanczos": Image.LANCZOS, "nearest": Image.NEAREST}
# The length of the stereo transform in the network's units: the reference's 0.1 for KITTI's
# 0.54 m rig. Every stereo dataset uses it, so --min_depth/--max_depth mean the same on any rig.
STEREO_BASELINE = 0.1


def pil_loader(path):
    """RGB PIL image from ``path``, with errors that name the file."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"cannot decode image {path}: not an image (empty, or an unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None
    return to_rgb(img, path)


def to_float_chw(img):
    """uint8 HWC PIL image -> float32 CHW array in [0, 1] (same values as ToTensor)."""
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)


def sample_rng(seed, epoch, index):
    """Generator of the random choices of one sample in one epoch."""
    return np.random.default_rng(np.random.SeedSequence((seed, epoch), spawn_key=(0, index)))


class MissingFilesError(FileNotFoundError):
    """Split lines whose files are missing; ``summary`` names the first line and file."""

    def __init__(self, summary, advice):
        super().__init__(summary + advice)
        self.summary = summary


class _FileIndex:
    """Answers "does this file exist?" with one directory listing per folder."""

    def __init__(self):
        self._listings = {}

    def exists(self, path):
        folder, name = os.path.split(path)
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(folder or "."))
            except OSError:
                self._listings[folder] = frozenset()
        return name in self._listings[folder]


class MonoDataset(paddle.io.Dataset):
    """Base class of the KITTI loaders.

    Each item is a dict of float32 numpy arrays:
      ("color", f, s), ("color_aug", f, s)  3 x H/2^s x W/2^s in [0, 1], for f in
                                            frame_idxs (ints relative to the line's
                                            frame, or "s" for the other camera)
      ("K", s), ("inv_K", s)                4x4 intrinsics of scale s
      "stereo_T"                            4x4 camera-to-other-camera transform, if "s" is used
      "depth_gt"                            1 x 375 x 1242 ground truth, if the data has it

    Subclasses define how a split line reads (``parse_line``), each sample's
    intrinsics (``get_intrinsics``), the stereo sides (``other_side``, ``is_left``,
    ``stereo_baseline``), the constructor arguments their own flags give (``option_kwargs``)
    and the path/depth methods.  Split lines whose files are missing raise an error at
    construction (naming the line and the path) unless ``skip_missing`` is set,
    in which case they are dropped with a warning. ``resize`` is a key of RESAMPLING.
    """

    other_side = {}  # side code of a split line -> the other camera's (stereo datasets)
    stereo_scale = None  # metres per network unit of stereo-trained depth (rig baseline / STEREO_BASELINE)
    for_training = True  # False for test images without neighbouring frames

    def __init__(self, data_path, filenames, height, width, frame_idxs, num_scales,
                 is_train=False, img_ext=".jpg", seed=None, skip_missing=False, with_depth=True,
                 resize="lanczos"):
        super().__init__()
        if resize not in RESAMPLING:
            raise ValueError(f"resize must be one of {', '.join(RESAMPLING)}, got {resize!r}")
        self.resampling = RESAMPLING[resize]
        self.data_path = data_path
        self.height = height
        self.width = width
        self.frame_idxs = list(frame_idxs)
        self.num_scales = num_scales
        self.is_train = is_train
        self.img_ext = img_ext
        if seed is None:
            seed = np.random.SeedSequence().entropy
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.epoch = 0

        self.sizes = [(width // 2 ** s, height // 2 ** s) for s in range(num_scales)]

        self.filenames = list(filenames)
        if not self.filenames:
            raise ValueError("the split has no lines")
        self.lines = [self.parse_line(number, line) for number, line in enumerate(self.filenames, 1)]
        self.load_depth = with_depth and self.check_depth()
        self._check_files(skip_missing)

    def set_epoch(self, epoch):
        """Select the augmentations of ``epoch``; call before creating the epoch's iterator."""
        self.epoch = int(epoch)

    def parse_line(self, number, line):
        """(folder, frame_index, side) of split line `number`; ValueError naming it if malformed."""
        raise NotImplementedError

    def required_files(self, folder, frame_index, side):
        """Every file that loading this line needs, as (what, path) pairs."""
        files = []
        for f in self.frame_idxs:
            if f == "s":
                files.append(("frame s", self.get_image_path(folder, frame_index, self.other_side[side])))
            else:
                files.append((f"frame {f}", self.get_image_path(folder, frame_index + f, side)))
        if self.load_depth:
            files.extend(self.depth_files(folder, frame_index, side))
        return files

    def _check_files(self, skip_missing):
        index = _FileIndex()
        keep, missing = [], []
        for number, (raw, line) in enumerate(zip(self.filenames, self.lines), 1):
            try:
                files = self.required_files(*line)
            except ValueError as e:
                raise ValueError(f"split line {number} {raw!r}: {e}") from None
            gone = [(what, path) for what, path in files if not index.exists(path)]
            if gone:
                missing.append((number, raw, gone[0]))
            else:
                keep.append(number - 1)
        if not missing:
            return
        number, raw, (what, path) = missing[0]
        summary = (f"split line {number} {raw!r}: {what} is missing: {path} "
                   f"({len(missing)} of {len(self.lines)} lines have missing files)")
        if not skip_missing:
            raise MissingFilesError(summary, "; pass skip_missing=True to drop such lines")
        if not keep:
            raise FileNotFoundError(summary + "; no line is left")
        warnings.warn("dropping lines with missing files, first: " + summary)
        self.filenames = [self.filenames[i] for i in keep]
        self.lines = [self.lines[i] for i in keep]

    def __len__(self):
        return len(self.lines)

    def draw_augmentation(self, index):
        """(do_flip, jitter params or None) of sample ``index`` in the current epoch.

        Colour augmentation and flipping each happen with probability 0.5 when training.
        """
        if not self.is_train:
            return False, None
        rng = sample_rng(self.seed, self.epoch, index)
        do_color_aug = rng.random() > 0.5
        do_flip = rng.random() > 0.5
        return do_flip, draw_jitter(rng) if do_color_aug else None

    def __getitem__(self, index):
        folder, frame_index, side = self.lines[index]
        do_flip, jitter = self.draw_augmentation(index)
        inputs = {}
        for f in self.frame_idxs:
            if f == "s":
                img = self.get_color(folder, frame_index, self.other_side[side], do_flip)
            else:
                img = self.get_color(folder, frame_index + f, side, do_flip)
            # Each scale is resized from the previous one, as the reference does.
            for s, size in enumerate(self.sizes):
                img = img.resize(size, self.resampling)
                color = to_float_chw(img)
                inputs[("color", f, s)] = color
                inputs[("color_aug", f, s)] = to_float_chw(apply_jitter(img, jitter)) if jitter else color

        inputs.update(self.scaled_intrinsics(self.get_intrinsics(folder, frame_index, side, do_flip)))

        if self.load_depth:
            depth = self.get_depth(folder, frame_index, side, do_flip)
            inputs["depth_gt"] = np.ascontiguousarray(depth[None], dtype=np.float32)

        if "s" in self.frame_idxs:
            stereo_T = np.eye(4, dtype=np.float32)
            baseline_sign = -1 if do_flip else 1
            side_sign = -1 if self.is_left(side) else 1
            stereo_T[0, 3] = side_sign * baseline_sign * self.stereo_baseline(folder)
            inputs["stereo_T"] = stereo_T
        return inputs

    def scaled_intrinsics(self, K):
        """("K", s) and ("inv_K", s) of every scale from intrinsics normalised by the image size."""
        intrinsics = {}
        for s, (w, h) in enumerate(self.sizes):
            K_s = K.copy()
            K_s[0, :] *= w
            K_s[1, :] *= h
            intrinsics[("K", s)] = K_s
            intrinsics[("inv_K", s)] = np.linalg.pinv(K_s)
        return intrinsics

    def get_intrinsics(self, folder, frame_index, side, do_flip):
        """4x4 float32 intrinsics of a sample's camera, normalised by the image size (first
        row / width, second row / height), for the image mirrored if `do_flip`."""
        raise NotImplementedError

    @classmethod
    def option_kwargs(cls, opt):
        """Keyword arguments of the constructor taken from the options (a dataset's own flags)."""
        return {"resize": opt.resize}

    def stereo_baseline(self, folder):
        """Distance between the cameras of `folder` in the network's units (STEREO_BASELINE
        for the rig stereo_scale describes; stereo_scale converts the units to metres)."""
        raise NotImplementedError

    def is_left(self, side):
        """Whether `side` is the left camera of a stereo pair (its partner is to the right)."""
        raise NotImplementedError

    def get_color(self, folder, frame_index, side, do_flip):
        img = pil_loader(self.get_image_path(folder, frame_index, side))
        return img.transpose(Image.FLIP_LEFT_RIGHT) if do_flip else img

    def get_image_path(self, folder, frame_index, side):
        raise NotImplementedError

    def check_depth(self):
        """Whether ground truth exists (judged, as in the reference, from the first line)."""
        return False

    def depth_files(self, folder, frame_index, side):
        """(what, path) pairs of the ground-truth files of a line."""
        return []

    def get_depth(self, folder, frame_index, side, do_flip):
        raise NotImplementedError
