"""Predict disparity (or metric depth) for an image, a folder of images or a video.

    python demo.py --image_path assets/test_image.jpg --model_name mono+stereo_640x192
    python demo.py --image_path FOLDER --ext png --load_weights_folder log/mdp/models/weights_19
    python demo.py --image_path drive.mp4 --exported log/mdp/models/weights_19/inference/depth

For each image NAME it writes NAME_disp.jpeg (the disparity at the image's size, colour-
mapped with magma from its minimum to its 95th percentile) and NAME_disp.npy (the scaled
disparity at the network's input size) or, with --pred_metric_depth, NAME_depth.npy
(metric depth, for stereo-trained weights). Video frames are named <video>_<frame>.
Outputs go beside the input unless --output_dir is given.

--model_name takes one of the reference's released models: it is downloaded once into
models/<name>, checked against its md5 sum and converted to Paddle weights there.
"""
import argparse
import glob
import hashlib
import os
import urllib.request
import zipfile

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import matplotlib.cm
import matplotlib.colors
import numpy as np
import paddle
import paddle.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datasets.mono_dataset import RESAMPLING
from evaluate_depth import STEREO_SCALE_FACTOR
from export_model import load_depth_net
from layers import disp_to_depth
from trainer import pick_device
from utils import progress

ROOT = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(ROOT, "models")
RELEASE_URL = "https://storage.googleapis.com/niantic-lon-static/research/monodepth2/"
# name: (file under RELEASE_URL, md5 of the zip), as the reference's download table
RELEASED_MODELS = {
    "mono_640x192": ("mono_640x192.zip", "a964b8356e08a02d009609d9e3928f7c"),
    "stereo_640x192": ("stereo_640x192.zip", "3dfb76bcff0786e4ec07ac00f658dd07"),
    "mono+stereo_640x192": ("mono%2Bstereo_640x192.zip", "c024d69012485ed05d7eaa9617a96b81"),
    "mono_no_pt_640x192": ("mono_no_pt_640x192.zip", "9c2f071e35027c895a4728358ffc913a"),
    "stereo_no_pt_640x192": ("stereo_no_pt_640x192.zip", "41ec2de112905f85541ac33a854742d1"),
    "mono+stereo_no_pt_640x192": ("mono%2Bstereo_no_pt_640x192.zip", "46c3b824f541d143a45c37df65fbab0a"),
    "mono_1024x320": ("mono_1024x320.zip", "0ab0766efdfeea89a0d9ea8ba90e1e63"),
    "stereo_1024x320": ("stereo_1024x320.zip", "afc2f2126d70cf3fdf26b550898b501a"),
    "mono+stereo_1024x320": ("mono%2Bstereo_1024x320.zip", "cdc5fc9b23513c07d5b19235d9ef08f7"),
}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# The depth range the disparity is scaled to, as the reference's demo (not the training's).
MIN_DEPTH, MAX_DEPTH = 0.1, 100


def md5sum(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_released_model(name, models_dir=MODELS_DIR, download=urllib.request.urlretrieve):
    """The folder of Paddle weights of the released model `name`: models_dir/name, filled on
    first use by downloading name.zip (`download(url, path)`), checking its md5 sum,
    unzipping it and converting its .pth files next to them."""
    from tools.convert_weights import convert_folder  # only needed here

    if name not in RELEASED_MODELS:
        raise ValueError("--model_name {}: not a released model (choose from {})".format(
            name, ", ".join(RELEASED_MODELS)))
    folder = os.path.join(models_dir, name)
    if all(os.path.isfile(os.path.join(folder, n + ".pdparams")) for n in ("encoder", "depth")):
        return folder
    if not os.path.isfile(os.path.join(folder, "encoder.pth")):
        file_name, md5 = RELEASED_MODELS[name]
        archive = folder + ".zip"
        if not (os.path.isfile(archive) and md5sum(archive) == md5):
            os.makedirs(models_dir, exist_ok=True)
            print("-> Downloading {} to {}".format(RELEASE_URL + file_name, archive))
            try:
                download(RELEASE_URL + file_name, archive + ".part")
            except OSError as err:  # urllib's URLError offline
                raise FileNotFoundError(
                    "cannot download {} ({}): download it on another machine and put it at {} (it is "
                    "checked, unzipped and converted there on the next run)".format(
                        RELEASE_URL + file_name, getattr(err, "reason", err), archive)) from None
            os.replace(archive + ".part", archive)
            if md5sum(archive) != md5:
                raise ValueError("{} has md5 {}, expected {}: the download is damaged; delete it "
                                 "and try again".format(archive, md5sum(archive), md5))
        print("   Unzipping {}".format(archive))
        with zipfile.ZipFile(archive) as f:
            f.extractall(folder)
    convert_folder(folder, folder)
    return folder


def colorize(disp):
    """H x W disparity to H x W x 3 uint8 magma colours over [min, 95th percentile]: the
    nearest few per cent saturate instead of squeezing the rest into dark colours."""
    norm = matplotlib.colors.Normalize(vmin=disp.min(), vmax=np.percentile(disp, 95))
    mapper = matplotlib.cm.ScalarMappable(norm=norm, cmap="magma")
    return (mapper.to_rgba(disp)[:, :, :3] * 255).astype(np.uint8)


def read_video(path):
    """(index, RGB PIL image) of each frame of the video `path`."""
    try:
        import cv2
    except ImportError:
        raise ValueError("reading the video {} needs OpenCV: pip install opencv-python-headless".format(
            path)) from None
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError("cannot read the video {}".format(path))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise ValueError("no frame could be read from the video {}".format(path))


def video_length(path):
    """The number of frames the video's header announces, None when it does not say."""
    try:
        import cv2
    except ImportError:
        return None
    capture = cv2.VideoCapture(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count if count > 0 else None


def open_image(path):
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError):
        raise ValueError("cannot read {}: not an image Pillow can open, nor a video ({})".format(
            path, " ".join(VIDEO_EXTENSIONS))) from None


def find_inputs(image_path, ext):
    """(default output folder, iterator of (name, RGB image), their number or None) for an
    image, a folder of images with extension `ext` (this demo's own outputs excepted) or a
    video."""
    if os.path.isdir(image_path):
        paths = sorted(p for p in glob.glob(os.path.join(image_path, "*." + ext.lstrip(".")))
                       if not os.path.splitext(p)[0].endswith("_disp"))
        if not paths:
            raise ValueError("no *.{} images in {} (see --ext)".format(ext.lstrip("."), image_path))
        items = ((os.path.splitext(os.path.basename(p))[0], open_image(p)) for p in paths)
        return image_path, items, len(paths)
    if not os.path.isfile(image_path):
        raise FileNotFoundError("--image_path {}: no such file or folder".format(image_path))
    stem, suffix = os.path.splitext(os.path.basename(image_path))
    folder = os.path.dirname(image_path)
    if suffix.lower() in VIDEO_EXTENSIONS:
        return folder, (("{}_{:06d}".format(stem, i), frame) for i, frame in read_video(image_path)), \
            video_length(image_path)
    return folder, iter([(stem, open_image(image_path))]), 1


def load_model(args, device):
    """(callable float32 1 x 3 x H x W -> 1 x 1 x H x W disparity, info with height, width
    and use_stereo) from --exported, --load_weights_folder or --model_name."""
    if args.exported:
        from inference import predictor  # Paddle Inference is only loaded when asked for
        net = predictor(args.exported, device)
        print("-> Loaded the exported model", args.exported)
        return net, net.info
    folder = args.load_weights_folder or fetch_released_model(args.model_name)
    net, info = load_depth_net(folder)
    if info["use_stereo"] is None and args.model_name:
        info["use_stereo"] = "stereo" in args.model_name
    print("-> Loaded the weights in", folder)

    def predict(images):
        with paddle.no_grad():
            return net(paddle.to_tensor(images)).numpy()
    return predict, info


def check_metric(args, info):
    """Metric depth only for weights known to be stereo-trained, unless forced: mono
    weights predict depth up to an unknown scale."""
    if not args.pred_metric_depth or args.force_metric_depth or info["use_stereo"]:
        return
    why = ("were trained without stereo (use_stereo is False)" if info["use_stereo"] is False
           else "do not record whether they were trained with stereo")
    raise ValueError("--pred_metric_depth: the weights {}, and only stereo-trained weights have "
                     "a metric scale; add --force_metric_depth to write the depth anyway".format(why))


def predict_image(predict, info, image, resize="lanczos"):
    """(scale-0 disparity at the network's size, disparity resized to the image's size);
    `resize` is how the image is brought to the network's size (--resize)."""
    width, height = image.size
    resized = image.resize((info["width"], info["height"]), RESAMPLING[resize])
    batch = (np.asarray(resized, dtype=np.float32) / 255).transpose(2, 0, 1)[None]
    disp = predict(batch)
    full = F.interpolate(paddle.to_tensor(disp), size=[height, width], mode="bilinear",
                         align_corners=False)
    return disp, full.numpy()[0, 0]


def run(args):
    default_dir, items, total = find_inputs(args.image_path, args.ext)
    device = pick_device(argparse.Namespace(no_cuda=args.no_cuda, device="auto"))
    paddle.set_device(device)
    predict, info = load_model(args, device)
    check_metric(args, info)
    output_dir = args.output_dir or default_dir or "."
    os.makedirs(output_dir, exist_ok=True)
    count = 0
    for name, image in progress(items, total=total, desc="demo"):
        disp, disp_full = predict_image(predict, info, image, args.resize)
        scaled_disp, depth = disp_to_depth(disp, MIN_DEPTH, MAX_DEPTH)
        if args.pred_metric_depth:
            npy = os.path.join(output_dir, name + "_depth.npy")
            np.save(npy, STEREO_SCALE_FACTOR * depth)
        else:
            npy = os.path.join(output_dir, name + "_disp.npy")
            np.save(npy, scaled_disp)
        jpeg = os.path.join(output_dir, name + "_disp.jpeg")
        Image.fromarray(colorize(disp_full)).save(jpeg)
        count += 1
        tqdm.write("   {}: {} and {}".format(count, jpeg, npy))
    print("-> Done: {} image{}".format(count, "" if count == 1 else "s"))
    return count


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_path", required=True, help="an image, a folder of images or a video")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--load_weights_folder", "--model_path", dest="load_weights_folder",
                       help="folder with encoder.pdparams and depth.pdparams")
    model.add_argument("--model_name", choices=list(RELEASED_MODELS),
                       help="a released model of the reference, fetched into models/<name>")
    model.add_argument("--exported", help="prefix of a model written by export_model.py, run with "
                       "Paddle Inference")
    parser.add_argument("--ext", default="jpg", help="extension of the images in a folder")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even if there is a GPU")
    parser.add_argument("--pred_metric_depth", action="store_true",
                        help="write metric depth (stereo-trained weights only) instead of disparity")
    parser.add_argument("--force_metric_depth", action="store_true",
                        help="with --pred_metric_depth, accept weights not trained with stereo")
    parser.add_argument("--output_dir", help="where to write the outputs (default: beside the input)")
    parser.add_argument("--resize", default="lanczos", choices=list(RESAMPLING),
                        help="how images are resized to the network's input: lanczos (the reference's "
                             "weights and this project's) or nearest (the published Paddle port's weights)")
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        run(args)
    except (OSError, ValueError) as err:
        parser.exit(1, "error: {}\n".format(err))


if __name__ == "__main__":
    main()
