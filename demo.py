"""Predict disparity (or metric depth) for an image, a folder of images or a video.

    python demo.py --image_path assets/test_image.jpg --model_name mono+stereo_640x192
    python demo.py --image_path FOLDER --ext png --load_weights_folder log/mdp/models/weights_19
    python demo.py --image_path drive.mp4 --exported log/mdp/models/weights_19/inference/depth
    python demo.py --image_path drive.mp4 --load_weights_folder WEIGHTS --exported [--precision bf16]

For each image NAME it writes NAME_disp.jpeg (the disparity at the image's size, colour-
mapped with magma from its minimum to its 95th percentile) and NAME_disp.npy (the scaled
disparity at the network's input size) or, with --pred_metric_depth, NAME_depth.npy
(metric depth, for stereo-trained weights). Video frames are named <video>_<frame>.
Disparities are scaled to the depth range the weights were trained with (--min_depth,
--max_depth override it; 0.1..100 m for weights that do not record it).
Outputs go beside the input unless --output_dir is given.

--model_name takes one of the reference's released models: it is downloaded once into
models/<name>, checked against its md5 sum and converted to Paddle weights there.

--exported PREFIX runs a model written by export_model.py through inference.py (the fastest
backend installed, or --backend); --exported without PREFIX exports the network of the
weights folder into WEIGHTS/inference/depth on first use and runs that. When the network
leaves cores free (a GPU, or OMP_NUM_THREADS below the cores), images and video frames are
read and resized by a second thread while it runs; the frames/s are printed at the end.
"""
import argparse
import glob
import hashlib
import os
import queue
import threading
import time
import urllib.request
import zipfile

import cpu_threads  # before paddle: sets its CPU thread count

import matplotlib.cm
import matplotlib.colors
import numpy as np
import paddle
import paddle.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datasets import stereo_scale
from datasets.mono_dataset import RESAMPLING
from export_model import load_net_and_info
from layers import disp_to_depth
from utils import pick_device, progress, to_rgb

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
# The depth range of weights that do not record theirs (the training's defaults).
DEFAULT_DEPTH_RANGE = (0.1, 100)
PREFETCH = 4  # images read and resized ahead of the network


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
            return to_rgb(image, path)
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


def prefetched(items, depth=PREFETCH):
    """The items of the iterator `items`, produced by a second thread up to `depth` ahead
    (decoding and resizing release the GIL, so they overlap the network); its errors are
    raised here."""
    ready = queue.Queue(depth)
    done = object()

    def produce():
        try:
            for item in items:
                ready.put((item, None))
        except Exception as err:  # handed to the consumer
            ready.put((done, err))
        else:
            ready.put((done, None))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item, err = ready.get()
        if err is not None:
            raise err
        if item is done:
            return
        yield item


def load_model(args, device):
    """(callable float32 1 x 3 x H x W -> 1 x 1 x H x W disparity, info with height, width
    and use_stereo) from --exported, --load_weights_folder or --model_name."""
    folder = None
    if not args.exported:  # the weights, to run or to export
        folder = args.load_weights_folder or fetch_released_model(args.model_name)
    if args.exported is not None:
        from export_model import export_if_stale
        from inference import predictor  # the backends are only loaded when asked for
        prefix = args.exported or export_if_stale(folder)
        net = predictor(prefix, args.backend or "auto", device, args.precision or "fp32")
        print("-> Loaded the exported model {} ({})".format(prefix, net))
        return net, net.info
    net, info = load_net_and_info(folder)
    if info["use_stereo"] is None and args.model_name:
        info["use_stereo"] = "stereo" in args.model_name
    print("-> Loaded the weights in", folder)

    def predict(images):
        with paddle.no_grad():
            return net(paddle.to_tensor(images)).numpy()
    return predict, info


def depth_range(args, info):
    """(min_depth, max_depth): the flags, else the weights', else DEFAULT_DEPTH_RANGE."""
    low, high = DEFAULT_DEPTH_RANGE
    if info.get("min_depth") is not None and info.get("max_depth") is not None:
        low, high = info["min_depth"], info["max_depth"]
    low = low if args.min_depth is None else args.min_depth
    high = high if args.max_depth is None else args.max_depth
    if not 0 < low < high:
        raise ValueError("need 0 < --min_depth < --max_depth, got {} and {}".format(low, high))
    return low, high


def check_metric(args, info):
    """Metric depth only for weights known to be stereo-trained, unless forced: mono
    weights predict depth up to an unknown scale."""
    if not args.pred_metric_depth or args.force_metric_depth or info["use_stereo"]:
        return
    why = ("were trained without stereo (use_stereo is False)" if info["use_stereo"] is False
           else "do not record whether they were trained with stereo")
    raise ValueError("--pred_metric_depth: the weights {}, and only stereo-trained weights have "
                     "a metric scale; add --force_metric_depth to write the depth anyway".format(why))


def network_input(image, info, resize="lanczos"):
    """The 1 x 3 x H x W float32 batch of `image` resized to the network's size; `resize`
    is how (--resize)."""
    resized = image.resize((info["width"], info["height"]), RESAMPLING[resize])
    return (np.asarray(resized, dtype=np.float32) / 255).transpose(2, 0, 1)[None]


def at_image_size(disp, image):
    """The 1 x 1 x h x w disparity resized (bilinear) to the image's H x W."""
    width, height = image.size
    full = F.interpolate(paddle.to_tensor(disp), size=[height, width], mode="bilinear",
                         align_corners=False)
    return full.numpy()[0, 0]


def run(args):
    default_dir, items, total = find_inputs(args.image_path, args.ext)
    device = pick_device(argparse.Namespace(no_cuda=args.no_cuda, device="auto"))
    paddle.set_device(device)
    predict, info = load_model(args, device)
    check_metric(args, info)
    min_depth, max_depth = depth_range(args, info)
    scale = stereo_scale(info.get("dataset") or "kitti", "--pred_metric_depth",
                         "drop it for relative depth") if args.pred_metric_depth else None
    output_dir = args.output_dir or default_dir or "."
    os.makedirs(output_dir, exist_ok=True)
    resize = args.resize or info.get("resize") or "lanczos"
    inputs = ((n, im, network_input(im, info, resize)) for n, im in items)
    # a reader thread beside a network using every core slows both (DEVELOPERS.md)
    if device == "gpu" or cpu_threads.available_cores() > cpu_threads.num_threads():
        inputs = prefetched(inputs)
    count, video = 0, None
    start = time.perf_counter()
    for name, image, batch in progress(inputs, total=total, desc="demo"):
        disp = predict(batch)
        disp_full = at_image_size(disp, image)
        if args.depth_video:
            video = video or open_video_writer(args.depth_video, image.size)
            frame = np.concatenate([np.asarray(image), colorize(disp_full)], axis=1)
            video.write(frame[:, :, ::-1].copy())  # OpenCV takes BGR
        scaled_disp, depth = disp_to_depth(disp, min_depth, max_depth)
        if args.pred_metric_depth:
            npy = os.path.join(output_dir, name + "_depth.npy")
            np.save(npy, scale * depth)
        else:
            npy = os.path.join(output_dir, name + "_disp.npy")
            np.save(npy, scaled_disp)
        jpeg = os.path.join(output_dir, name + "_disp.jpeg")
        Image.fromarray(colorize(disp_full)).save(jpeg)
        count += 1
        tqdm.write("   {}: {} and {}".format(count, jpeg, npy))
    seconds = time.perf_counter() - start
    if video is not None:
        video.release()
        print("-> Depth video (input | colour-mapped disparity): {}".format(args.depth_video))
    is_video = os.path.splitext(args.image_path)[1].lower() in VIDEO_EXTENSIONS
    print("-> Done: {} {}{} in {:.1f} s ({:.2f} {}/s)".format(
        count, "frame" if is_video else "image", "" if count == 1 else "s", seconds, count / seconds,
        "frames" if is_video else "images"))
    return count


def open_video_writer(path, size, fps=10):
    """An OpenCV writer of `path` (.mp4) for frames twice as wide as `size`."""
    import cv2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (2 * size[0], size[1]))
    if not writer.isOpened():
        raise ValueError("--depth_video {}: OpenCV cannot write this video".format(path))
    return writer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_path", required=True, help="an image, a folder of images or a video")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--load_weights_folder", "--model_path", dest="load_weights_folder",
                       help="folder with encoder.pdparams and depth.pdparams")
    model.add_argument("--model_name", choices=list(RELEASED_MODELS),
                       help="a released model of the reference, fetched into models/<name>")
    parser.add_argument("--exported", nargs="?", const="", metavar="PREFIX",
                        help="run a model written by export_model.py through inference.py; without "
                        "PREFIX, the weights' network exported into WEIGHTS/inference/depth on first use")
    parser.add_argument("--backend", choices=["auto", "openvino", "onnxruntime", "paddle"],
                        help="with --exported: the backend (default auto: the fastest installed)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"],
                        help="with --exported: fp32 (default), bf16 (CPUs with bfloat16 instructions) or "
                        "int8 (OpenVINO, a model exported with export_model.py --precision int8)")
    parser.add_argument("--ext", default="jpg", help="extension of the images in a folder")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even if there is a GPU")
    parser.add_argument("--pred_metric_depth", action="store_true",
                        help="write metric depth (stereo-trained weights only) instead of disparity")
    parser.add_argument("--force_metric_depth", action="store_true",
                        help="with --pred_metric_depth, accept weights not trained with stereo")
    parser.add_argument("--output_dir", help="where to write the outputs (default: beside the input)")
    parser.add_argument("--depth_video", help="also write this .mp4: each frame beside its colour-mapped "
                        "disparity (frames of one size: a video or a sequence)")
    parser.add_argument("--min_depth", type=float, help="minimum depth (default: the weights' training value)")
    parser.add_argument("--max_depth", type=float, help="maximum depth (default: the weights' training value)")
    parser.add_argument("--resize", choices=list(RESAMPLING),
                        help="how images are resized to the network's input (default: the weights' training "
                             "value, else lanczos): lanczos (the reference's weights and this project's) or "
                             "nearest (the published Paddle port's weights)")
    args = parser.parse_args(argv)
    weights = args.load_weights_folder or args.model_name
    if args.exported and weights:
        parser.error("--exported PREFIX is a model of its own: drop --load_weights_folder/--model_name, "
                     "or give --exported without a prefix to export theirs")
    if not args.exported and not weights:
        parser.error("give the model with --load_weights_folder, --model_name or --exported PREFIX")
    if args.exported is None and (args.backend or args.precision):
        parser.error("--backend and --precision choose how an exported model runs: add --exported")
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        run(args)
    except (OSError, ValueError) as err:
        parser.exit(1, "error: {}\n".format(err))


if __name__ == "__main__":
    main()
