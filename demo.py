"""Predict disparity (or metric depth) for an image, a folder of images or a video.

    python demo.py --image_path assets/test_image.jpg --model_name mono+stereo_640x192
    python demo.py --image_path FOLDER --ext png --load_weights_folder log/mdp/models/weights_19
    python demo.py --image_path drive.mp4 --exported log/mdp/models/weights_19/inference/depth
    python demo.py --image_path drive.mp4 --load_weights_folder WEIGHTS --exported [--precision bf16]

For each image NAME it writes NAME_disp.jpeg (the disparity at the image's size, colour-
mapped with magma from its minimum to its 95th percentile) and NAME_disp.npy (the scaled
disparity at the network's input size) or, with --pred_metric_depth, NAME_depth.npy
(metric depth, for stereo-trained weights), beside the input unless --output_dir is given.
A video gives a depth video at its own frame rate (<video>_depth.mp4, or --depth_video),
and the files of each frame (<video>_<frame>_disp.jpeg, ...) only with --save_frames, in
--output_dir or <video>_frames/. Disparities are scaled to the depth range the weights were
trained with (--min_depth, --max_depth override it; 0.1..100 for weights that do not
record it); metric depth multiplies by the metres per unit the weights record (5.4 for
KITTI's rig and weights that do not record it).

--model_name takes one of the reference's released models: it is downloaded once into
models/<name>, checked against its md5 sum and converted to Paddle weights there.

--exported PREFIX runs a model written by export_model.py through inference.py (the fastest
backend installed, or --backend); --exported without PREFIX exports the network of the
weights folder into WEIGHTS/inference/depth on first use and runs that. When the network
leaves cores free (a GPU, or OMP_NUM_THREADS below the cores), images and video frames are
read and resized by a second thread while it runs; the frames/s are printed at the end.

Metric depth and 3D (metric_depth.py, scene_files.py):
    python demo.py --image_path IMAGE --load_weights_folder MONO --camera_height 1.65 --point_cloud
    python demo.py --image_path drive.mp4 --load_weights_folder MONO --camera_height 1.2 --trajectory
--camera_height METRES scales each image's depth so that the road plane found in its lower part
lies that far below the camera (stereo-trained weights are metric without it); the images then
get a colour bar in metres, and --pred_metric_depth writes metric depth for any weights.
--point_cloud writes NAME.ply (coloured points at the network's resolution, camera frame: x
right, y down, z forward; metres when the scale is known, else the network's units) up to
--cloud_max_depth. --trajectory (a video or a folder of frames, weights with a pose network)
writes <input>_trajectory.txt (KITTI odometry poses), <input>_trajectory.png (seen from
above) and with --point_cloud <input>_drive.ply, every frame's points placed along the path;
they use one scale for the sequence, the median of the frames'. --intrinsics FX FY CX CY are the
camera's in pixels of the input images; by default those of the weights' dataset (KITTI's).
"""
import argparse
import collections
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

from datasets import dataset_class, known_stereo_scale, stereo_scale
from datasets.mono_dataset import RESAMPLING
from export_model import load_net_and_info
from layers import disp_to_depth, transformation_from_parameters
from metric_depth import (NoGroundError, backproject, camera_matrix, camera_path, check_camera_height,
                          ground_scale, sequence_scale)
from network import load_pose_net
from scene_files import plot_trajectory, write_ply, write_trajectory
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
# The depth video's frame rate when the input does not tell (images, a video header without
# one): KITTI's, the rate the networks are trained at.
DEFAULT_FPS = 10
# The depth range of weights that do not record theirs (the training's defaults).
DEFAULT_DEPTH_RANGE = (0.1, 100)
PREFETCH = 4  # images read and resized ahead of the network
WAIT = object()  # Scene3D.frame: no scale yet for this frame
# a frame's PLY comment: its pixel intrinsics and the sizes they are for (tools/road_heights.py reads it)
CLOUD_INTRINSICS = ("intrinsics fx fy cx cy: {:.9g} {:.9g} {:.9g} {:.9g} (pixels of the {}x{} depth map, resized "
                    "from a {}x{} image)")
# one input and the network's outputs for it: disparity, and disp_to_depth's scaled disparity and depth
Frame = collections.namedtuple("Frame", "name image batch disp scaled_disp depth")


def md5sum(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path, expected, advice):
    """ValueError saying what `path`'s md5 is, what it should be and what to do about it."""
    found = md5sum(path)
    if found != expected:
        raise ValueError("{} has md5 {}, expected {} (the released zip's): {}".format(path, found, expected, advice))


def fetch_released_model(name, models_dir=None, download=None):
    """The folder of Paddle weights of the released model `name`: models_dir/name (MODELS_DIR by
    default), filled on first use by downloading name.zip (`download(url, path)`, urllib's by
    default) unless it is there, checking its md5 sum, unzipping it and converting its .pth
    files next to them."""
    from tools.convert_weights import convert_folder  # only needed here

    if name not in RELEASED_MODELS:
        raise ValueError("--model_name {}: not a released model (choose from {})".format(
            name, ", ".join(RELEASED_MODELS)))
    models_dir = models_dir or MODELS_DIR
    folder = os.path.join(models_dir, name)
    if all(os.path.isfile(os.path.join(folder, n + ".pdparams")) for n in ("encoder", "depth")):
        return folder
    if not os.path.isfile(os.path.join(folder, "encoder.pth")):
        file_name, md5 = RELEASED_MODELS[name]
        url, archive = RELEASE_URL + file_name, folder + ".zip"
        if not os.path.isfile(archive):
            os.makedirs(models_dir, exist_ok=True)
            print("-> Downloading {} to {}".format(url, archive))
            try:
                (download or urllib.request.urlretrieve)(url, archive + ".part")
            except OSError as err:  # urllib's URLError offline
                raise FileNotFoundError(
                    "cannot download {} ({}): download it on another machine and put it at {} (it is "
                    "checked, unzipped and converted there on the next run)".format(
                        url, getattr(err, "reason", err), archive)) from None
            check_md5(archive + ".part", md5, "the download is damaged or incomplete; run again")
            os.replace(archive + ".part", archive)
        else:
            check_md5(archive, md5, "it is damaged, incomplete or another file. Delete it and run again "
                      "to download it, or put the zip from {} there".format(url))
        print("   Unzipping {}".format(archive))
        with zipfile.ZipFile(archive) as f:
            f.extractall(folder)
    convert_folder(folder, folder)
    return folder


def colour_range(disp):
    """The disparities colorize maps to the ends of the colour map."""
    return float(disp.min()), float(np.percentile(disp, 95))


def colorize(disp):
    """H x W disparity to H x W x 3 uint8 magma colours over [min, 95th percentile]: the
    nearest few per cent saturate instead of squeezing the rest into dark colours."""
    norm = matplotlib.colors.Normalize(*colour_range(disp))
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


def video_header(path):
    """(number of frames, frames per second) that the video's header announces, each None
    when it does not say."""
    try:
        import cv2
    except ImportError:
        return None, None
    capture = cv2.VideoCapture(path)
    count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return (count if count > 0 else None), (fps if 0 < fps < 1000 else None)


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
            video_header(image_path)[0]
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
    """Metric depth only for weights known to be stereo-trained or with --camera_height, unless
    forced: mono weights predict depth up to an unknown scale."""
    if not args.pred_metric_depth or args.force_metric_depth or info["use_stereo"] or args.camera_height:
        return
    why = ("were trained without stereo (use_stereo is False)" if info["use_stereo"] is False
           else "do not record whether they were trained with stereo")
    raise ValueError("--pred_metric_depth: the weights {}, and only stereo-trained weights have "
                     "a metric scale; give the camera's height above the road with --camera_height "
                     "METRES, or add --force_metric_depth to write the depth anyway".format(why))


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


def demo_intrinsics(args, info, image_size):
    """Normalised 3 x 3 intrinsics of the input image of `image_size`: --intrinsics (its pixels),
    else those of the dataset the weights record, else KITTI's."""
    if args.intrinsics:
        fx, fy, cx, cy = args.intrinsics
        width, height = image_size
        return np.array([[fx / width, 0, cx / width], [0, fy / height, cy / height], [0, 0, 1]])
    dataset = info.get("dataset") or "kitti"
    fixed = getattr(dataset_class(dataset), "K", None)
    if fixed is None:
        print("-> The weights were trained on --dataset {}, whose intrinsics are not recorded: using "
              "KITTI's; give --intrinsics FX FY CX CY for your camera".format(dataset))
        fixed = dataset_class("kitti").K
    return np.array(fixed, dtype=np.float64)[:3, :3]


def colours_of(batch):
    """H x W x 3 uint8 colours of a 1 x 3 x H x W network input."""
    return (batch[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)


class Scene3D:
    """The metric scale of each frame and the 3D outputs (point clouds, camera path) of a run:
    frame() for each image in order, finish() at the end."""

    DRIVE_STRIDE = 4  # every 4th pixel of every 4th row of each frame goes into the drive's cloud
    MAX_HELD = 100  # frames the caller holds while no frame shows a road (each its image, depth and input)

    def __init__(self, args, info, output_dir, summary_dir):
        """Per-frame clouds go to `output_dir`, the camera path and the drive's cloud to `summary_dir`."""
        self.args, self.info, self.output_dir, self.summary_dir = args, info, output_dir, summary_dir
        self.size = self.K = self.from_training = None  # the input size K and from_training are for
        self.fixed_scale = None  # metres per unit of stereo-trained depth
        if args.camera_height is None and info["use_stereo"]:
            self.fixed_scale = known_stereo_scale(info)
        self.scales, self.motions, self.frames = [], [], []  # scales of the frames with a road
        self.waiting, self.first_without_road = 0, None  # frames without a road before the first with one
        self.pose_net = self.previous = None
        if args.trajectory:
            folder = args.load_weights_folder or (args.model_name and fetch_released_model(args.model_name))
            if not folder or not os.path.isfile(os.path.join(folder, "pose_encoder.pdparams")):
                raise ValueError("--trajectory needs a weights folder with a pose network (pose_encoder.pdparams "
                                 "and pose.pdparams): give it with --load_weights_folder")
            self.pose_net = load_pose_net(folder)
        if args.point_cloud or args.trajectory:
            print("-> 3D outputs in {}".format(
                "metres, scaled by the road {} m below the camera".format(args.camera_height) if args.camera_height
                else "metres (stereo-trained weights)" if self.fixed_scale
                else "the network's units: depth up to an unknown scale (give --camera_height METRES)"))

    def frame(self, name, image, batch, depth):
        """Metres per unit of this frame's depth (H x W, the network's size; None when unknown,
        WAIT while no frame so far shows a road: the caller holds the frame until one does), after
        adding the frame to the camera path as asked."""
        if self.args.camera_height is None and not self.args.point_cloud and self.pose_net is None:
            return self.fixed_scale  # nothing 3D asked for: no intrinsics, no back-projection
        if image.size != self.size:
            self.use_intrinsics(image.size)
        scale = self.fixed_scale
        if self.args.camera_height is not None:
            scale = self.road_scale(name, depth)
        if self.pose_net is not None:
            if self.previous is not None:
                self.motions.append(self.motion(self.previous, batch))
            self.previous = batch
            if self.args.point_cloud:
                step = self.DRIVE_STRIDE
                self.frames.append((backproject(depth, self.K)[::step, ::step], colours_of(batch)[::step, ::step]))
        return scale

    def use_intrinsics(self, image_size):
        """K: pixel intrinsics of the network's input resized from an image of `image_size`, the
        resize's half-pixel shift included (metric_depth.camera_matrix); from_training: 4 x 4 map
        from the frame training learns in (K without the shift, as the reference) to K's, which
        the pose network's motions are carried into, to match the clouds."""
        normalised = demo_intrinsics(self.args, self.info, image_size)
        width, height = self.info["width"], self.info["height"]
        self.size, self.K = image_size, camera_matrix(normalised, width, height, image_size)
        self.from_training = np.eye(4)
        self.from_training[:3, :3] = np.linalg.inv(self.K) @ camera_matrix(normalised, width, height)

    def road_scale(self, name, depth):
        """The frame's scale from the road; without a road the median of the frames so far that
        have one, or WAIT when none has."""
        try:
            scale = ground_scale(depth, self.K, self.args.camera_height)
        except NoGroundError as err:
            if not self.scales:
                self.first_without_road = self.first_without_road or "{}: {}".format(name, err)
                self.waiting += 1
                if self.waiting > self.MAX_HELD:
                    raise NoGroundError("no road plane in the first {} frames ({}); --camera_height needs a flat "
                                        "road in the lower part of the image".format(
                                            self.waiting, self.first_without_road)) from None
                return WAIT
            tqdm.write("   {}: no road plane, using the median scale of the frames so far".format(name))
            return sequence_scale(self.scales)
        if self.waiting:
            tqdm.write("   the {} frame(s) before {} show no road plane: they take its scale".format(
                self.waiting, name))
            self.waiting = 0
        self.scales.append(scale)
        return scale

    def write_cloud_of(self, name, image, batch, depth, scale):
        """The frame's own point cloud, when asked for (scale None: the network's units), with the
        intrinsics of its image's size (a frame held for a road may differ from the one after)."""
        if self.args.point_cloud:
            if image.size != self.size:
                self.use_intrinsics(image.size)
            self.write_cloud(os.path.join(self.output_dir, name + ".ply"), backproject(depth, self.K) * (scale or 1),
                             colours_of(batch), scale is not None)

    def motion(self, previous, batch):
        """4 x 4 transform of camera points from the previous frame's camera to this one's."""
        encoder, decoder = self.pose_net
        with paddle.no_grad():
            axisangle, translation = decoder([encoder(paddle.to_tensor(np.concatenate([previous, batch], 1)))])
            motion = transformation_from_parameters(axisangle[:, 0], translation[:, 0]).numpy()[0]
        motion = self.from_training @ motion @ np.linalg.inv(self.from_training)
        u, _, vt = np.linalg.svd(motion[:3, :3])
        motion[:3, :3] = u @ vt  # the nearest rotation: poses stay rigid (KITTI odometry files, evo)
        return motion

    def write_cloud(self, path, points, colours, metric, poses=None):
        """A PLY of the points (one frame's H x W x 3, or a list of them placed by `poses`)
        closer than --cloud_max_depth."""
        frames = [(points, colours)] if poses is None else list(zip(points, colours))
        kept_points, kept_colours = [], []
        for i, (frame_points, frame_colours) in enumerate(frames):
            frame_points, frame_colours = frame_points.reshape(-1, 3), frame_colours.reshape(-1, 3)
            keep = np.isfinite(frame_points).all(1)
            if self.args.cloud_max_depth:
                keep &= frame_points[:, 2] <= self.args.cloud_max_depth
            frame_points = frame_points[keep]
            if poses is not None:
                frame_points = frame_points @ poses[i][:3, :3].T + poses[i][:3, 3]
            kept_points.append(frame_points)
            kept_colours.append(frame_colours[keep])
        unit = "metres" if metric else "units of the network's depth (up to scale)"
        comment = "monodepth2-paddle point cloud in {}; camera frame x right, y down, z forward".format(unit)
        if poses is None:
            comment += "\n" + CLOUD_INTRINSICS.format(*self.K[[0, 1, 0, 1], [0, 1, 2, 2]], self.info["width"],
                                                       self.info["height"], *self.size)
        write_ply(path, np.concatenate(kept_points), np.concatenate(kept_colours), comment=comment)

    def finish(self, stem):
        """Print the sequence's scale; write the camera path, its plot and the drive's cloud."""
        scale = self.fixed_scale
        if self.args.camera_height is not None:
            if not self.scales:
                raise NoGroundError("{}; --camera_height needs a flat road in the lower part of the image".format(
                    self.first_without_road if self.waiting == 1
                    else "no road plane in any of the {} frames ({})".format(self.waiting, self.first_without_road)))
            scale = sequence_scale(self.scales)
            if len(self.scales) > 1:
                print("-> Scale of the sequence: {:.4g} m per unit (median of {} frames, 10-90%: {:.4g}-{:.4g})".format(
                    scale, len(self.scales), *np.percentile(self.scales, [10, 90])))
        if self.pose_net is None:
            return
        if not self.motions:
            raise ValueError("--trajectory needs at least two frames: a video or a folder of frames in order")
        poses = camera_path(self.motions, scale or 1)
        unit = "m" if scale else "units (up to scale)"
        os.makedirs(self.summary_dir, exist_ok=True)
        path = os.path.join(self.summary_dir, stem + "_trajectory.txt")
        write_trajectory(path, poses)
        plot_trajectory(os.path.join(self.summary_dir, stem + "_trajectory.png"), poses, unit,
                        "{}: {} frames, {:.3g} {} travelled".format(
                            stem, len(poses), np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum(), unit))
        print("-> Camera path ({}): {} and {}".format(unit, path, path[:-4] + ".png"))
        if self.frames:
            points, colours = zip(*self.frames)
            drive = os.path.join(self.summary_dir, stem + "_drive.ply")
            self.write_cloud(drive, [p * (scale or 1) for p in points], colours, scale is not None, poses)
            print("-> Point cloud of the drive: {}".format(drive))


def depth_bar(coloured, disp, to_depth, unit="m"):
    """The colour-mapped disparity with a colour bar drawn over its right edge, labelled with
    the depths (to_depth of the disparity) of its colours."""
    from PIL import ImageDraw, ImageFont

    image = Image.fromarray(coloured)
    height, width = coloured.shape[:2]
    top, bottom, left = int(0.08 * height), int(0.92 * height), width - 14
    low, high = colour_range(disp)
    ramp = np.linspace(high, low, bottom - top)[:, None].repeat(8, 1)  # near (bright) at the top
    bar = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(low, high), "magma").to_rgba(ramp)
    image.paste(Image.fromarray((bar[:, :, :3] * 255).astype(np.uint8)), (left, top))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(9, height // 18))
    for t in np.linspace(0, 1, 5):
        y = top + t * (bottom - top - 1)
        label = "{:.3g} {}".format(float(to_depth(high + t * (low - high))), unit)
        draw.text((left - 3, y), label, fill="white", font=font, anchor="rm", stroke_width=2, stroke_fill="black")
    return np.asarray(image)


def run(args):
    default_dir, items, total = find_inputs(args.image_path, args.ext)
    device = pick_device(argparse.Namespace(no_cuda=args.no_cuda, device="auto"))
    paddle.set_device(device)
    predict, info = load_model(args, device)
    check_metric(args, info)
    min_depth, max_depth = depth_range(args, info)
    scale = stereo_scale(info, "--pred_metric_depth", "drop it for relative depth or give --camera_height") \
        if args.pred_metric_depth and not args.camera_height else None
    is_video = os.path.splitext(args.image_path)[1].lower() in VIDEO_EXTENSIONS
    output_dir, depth_video, per_image = outputs(args, default_dir, is_video)
    fps = (video_header(args.image_path)[1] if is_video else None) or DEFAULT_FPS
    if per_image or args.point_cloud:
        os.makedirs(output_dir, exist_ok=True)
    scene = Scene3D(args, info, output_dir, args.output_dir or default_dir or ".")
    resize = args.resize or info.get("resize") or "lanczos"
    inputs = ((n, im, network_input(im, info, resize)) for n, im in items)
    # a reader thread beside a network using every core slows both (DEVELOPERS.md)
    if device == "gpu" or cpu_threads.available_cores() > cpu_threads.num_threads():
        inputs = prefetched(inputs)
    written = FrameWriter(args, output_dir, depth_video, per_image, fps, scale, (min_depth, max_depth))
    held = []
    start = time.perf_counter()
    try:
        for name, image, batch in progress(inputs, total=total, desc="demo"):
            disp = predict(batch)
            held.append(Frame(name, image, batch, disp, *disp_to_depth(disp, min_depth, max_depth)))
            metres = scene.frame(name, image, batch, held[-1].depth[0, 0])
            if metres is not WAIT:
                for frame in held:
                    scene.write_cloud_of(frame.name, frame.image, frame.batch, frame.depth[0, 0], metres)
                    written.frame(frame, metres)
                held = []
        seconds = time.perf_counter() - start
        scene.finish(os.path.splitext(os.path.basename(os.path.normpath(args.image_path)))[0])
    finally:
        written.release()
    written.announce()
    count = written.count
    print("-> Done: {} {}{} in {:.1f} s ({:.2f} {}/s)".format(
        count, "frame" if is_video else "image", "" if count == 1 else "s", seconds, count / seconds,
        "frames" if is_video else "images"))
    return count


class FrameWriter:
    """The 2D outputs of each frame: the colour-mapped disparity (with a colour bar in metres when
    metric depth is asked for), the depth video, and the per-image .npy files."""

    def __init__(self, args, output_dir, depth_video, per_image, fps, stereo_scale, depth_range):
        self.args, self.output_dir, self.depth_video, self.per_image = args, output_dir, depth_video, per_image
        self.fps, self.stereo_scale, self.depth_range = fps, stereo_scale, depth_range
        self.count, self.video = 0, None

    def frame(self, frame, metres):
        """The outputs of a Frame with `metres` per unit of its depth (None when unknown)."""
        args, name, image = self.args, frame.name, frame.image
        disp_full = at_image_size(frame.disp, image)
        coloured = colorize(disp_full)
        if metres and (args.camera_height or args.pred_metric_depth):  # metric output asked for
            coloured = depth_bar(coloured, disp_full, lambda d: metres * disp_to_depth(d, *self.depth_range)[1])
        if self.depth_video:
            self.video = self.video or open_video_writer(self.depth_video, image.size, self.fps)
            side_by_side = np.concatenate([np.asarray(image), coloured], axis=1)
            self.video.write(side_by_side[:, :, ::-1].copy())  # OpenCV takes BGR
        self.count += 1
        if not self.per_image:
            return
        if args.pred_metric_depth:
            npy = os.path.join(self.output_dir, name + "_depth.npy")
            np.save(npy, (metres if args.camera_height else self.stereo_scale) * frame.depth)
        else:
            npy = os.path.join(self.output_dir, name + "_disp.npy")
            np.save(npy, frame.scaled_disp)
        jpeg = os.path.join(self.output_dir, name + "_disp.jpeg")
        Image.fromarray(coloured).save(jpeg)
        tqdm.write("   {}: {} and {}".format(self.count, jpeg, npy))

    def release(self):
        if self.video is not None:
            self.video.release()

    def announce(self):
        if self.video is not None:
            print("-> Depth video (input | colour-mapped disparity, {:g} frames/s): {}".format(
                self.fps, self.depth_video))


def outputs(args, default_dir, is_video):
    """(folder of the per-image files, depth video or None, whether to write per-image files).
    Images get their files beside them or in --output_dir. A video gets a depth video
    (--depth_video, else <video>_depth.mp4 in --output_dir or beside the video) and per-frame
    files only with --save_frames (into --output_dir, else <video>_frames/ beside it)."""
    if not is_video:
        return args.output_dir or default_dir or ".", args.depth_video, True
    stem = os.path.splitext(os.path.basename(args.image_path))[0]
    output_dir = args.output_dir or os.path.join(default_dir, stem + "_frames")
    depth_video = args.depth_video
    if depth_video is None and not args.save_frames:
        depth_video = os.path.join(args.output_dir or default_dir, stem + "_depth.mp4")
    return output_dir, depth_video, args.save_frames


def open_video_writer(path, size, fps):
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
    parser.add_argument("--depth_video", help="write this .mp4: each frame beside its colour-mapped disparity, at "
                        "the input video's frame rate (frames of one size: a video or a sequence of images; a "
                        "video's default: <video>_depth.mp4 unless --save_frames)")
    parser.add_argument("--save_frames", action="store_true",
                        help="video input: write each frame's files (as for images) into --output_dir, "
                             "else <video>_frames/ beside the video")
    parser.add_argument("--min_depth", type=float, help="minimum depth (default: the weights' training value)")
    parser.add_argument("--max_depth", type=float, help="maximum depth (default: the weights' training value)")
    parser.add_argument("--resize", choices=list(RESAMPLING),
                        help="how images are resized to the network's input (default: the weights' training "
                             "value, else lanczos): lanczos (the reference's weights and this project's) or "
                             "nearest (the published Paddle port's weights)")
    parser.add_argument("--camera_height", type=float, metavar="METRES",
                        help="the camera's height above the road: scales each image's depth to metres by the road "
                             "plane in its lower part (see above)")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="the camera's intrinsics in pixels of the input images, pixel centres at whole "
                             "numbers as OpenCV's calibration gives them (default: the weights' dataset's, KITTI's)")
    parser.add_argument("--point_cloud", action="store_true", help="also write NAME.ply, a coloured point cloud")
    parser.add_argument("--cloud_max_depth", type=float, metavar="DEPTH",
                        help="leave points farther than this out of the point clouds (metres when metric)")
    parser.add_argument("--trajectory", action="store_true",
                        help="for a video or a folder of frames: write the camera path from the pose network")
    args = parser.parse_args(argv)
    if args.camera_height is not None:
        try:
            check_camera_height(args.camera_height)
        except ValueError as err:
            parser.error(str(err))
    if args.cloud_max_depth is not None and not args.cloud_max_depth > 0:
        parser.error("--cloud_max_depth must be positive, got {}".format(args.cloud_max_depth))
    if args.intrinsics is not None and not min(args.intrinsics[:2]) > 0:
        parser.error("--intrinsics FX FY CX CY: the focal lengths must be positive, got {}".format(args.intrinsics))
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
