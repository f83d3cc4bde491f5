"""Post-training int8 quantization of an exported depth network (export_model.py --precision int8).

OpenVINO's NNCF measures the range of every convolution's input and weights on a few
calibration images and writes an OpenVINO model (PREFIX.int8.xml and .bin) whose
convolutions run in int8 (AVX-512 VNNI or AMX where the CPU has them). The calibration
images are the user's: a folder searched recursively for JPEG and PNG files (a KITTI raw
folder, the images a demo runs on), evenly spaced through it, resized as demo.py resizes.
"""
import glob
import os

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datasets.mono_dataset import RESAMPLING
from utils import to_rgb

INT8_SUFFIX = ".int8.xml"  # OpenVINO's IR: the weights beside it in PREFIX.int8.bin
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def calibration_paths(folder, count):
    """Up to `count` colour image paths under `folder`, evenly spaced through their sorted list.
    Single-channel images (a drive's 16-bit depth maps, grayscale cameras) are left out: the
    network sees colour frames."""
    if not os.path.isdir(folder):
        raise FileNotFoundError("--calibration {}: no such folder".format(folder))
    paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                   if p.lower().endswith(IMAGE_EXTENSIONS))
    colour = [p for p in tqdm(paths, desc="calibration candidates", leave=False) if is_colour(p)]
    if not colour:
        raise ValueError("--calibration {}: no colour {} images in it or its subfolders{}".format(
            folder, "/".join(IMAGE_EXTENSIONS),
            " ({} single-channel ones: depth maps or grayscale frames)".format(len(paths)) if paths else ""))
    picks = np.unique(np.linspace(0, len(colour) - 1, min(count, len(colour))).round().astype(int))
    return [colour[i] for i in picks]


def is_colour(path):
    """Whether the image's header gives more than one channel (unreadable files count as colour:
    calibration_images names them)."""
    try:
        with Image.open(path) as image:
            return len(image.getbands()) > 1
    except (UnidentifiedImageError, OSError):
        return True


def calibration_images(folder, height, width, count, resize="lanczos"):
    """The network inputs (1 x 3 x H x W float32 in [0, 1]) of up to `count` images of `folder`."""
    images = []
    for path in tqdm(calibration_paths(folder, count), desc="calibration images", leave=False):
        try:
            with Image.open(path) as image:
                rgb = to_rgb(image, path).resize((width, height), RESAMPLING[resize])
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError("--calibration: cannot read {} ({})".format(path, err)) from None
        images.append((np.asarray(rgb, dtype=np.float32) / 255).transpose(2, 0, 1)[None])
    return images


def quantize(onnx_path, output, images):
    """Write the int8 OpenVINO model of the ONNX network `onnx_path`, calibrated on `images`
    (a list of 1 x 3 x H x W batches), to `output` (.xml, weights in the .bin beside it)."""
    try:
        import nncf
    except ImportError:
        raise ValueError("--precision int8 needs OpenVINO's NNCF, which is optional: pip install nncf") from None
    import openvino

    model = openvino.Core().read_model(onnx_path)
    model.reshape(list(images[0].shape))
    # MIXED: activations asymmetric (the decoder's ELU outputs reach down to -1 and are mostly
    # small): the 64x192 network's disparities moved 1.1% on average instead of 5.3%.
    quantized = nncf.quantize(model, nncf.Dataset(images), subset_size=len(images),
                              preset=nncf.QuantizationPreset.MIXED)
    openvino.save_model(quantized, output, compress_to_fp16=False)
