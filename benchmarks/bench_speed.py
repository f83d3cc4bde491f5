"""Training, inference and evaluation speed on this machine, ours vs the PyTorch reference.

    python3 benchmarks/bench_speed.py [--only train inference eval video] [--quick] [--threads N]
                                      [--rounds N] [--json benchmarks/bench_speed.json] [--no_ref]

- train: seconds per step (forward, backward, Adam) at 640x192, frames 0 -1 1 and stereo,
  from scratch, batch --train_batch: on one batch kept in memory, and with every step
  fetching its batch from the loader (KITTIRAWDataset over the drive, --num_workers).
- inference: latency per image of the depth network (ResNet-18 encoder and decoder) at
  640x192 and 1024x320, batch 1 and 16: eager, and exported by export_model.export() and
  run by inference.predictor() with every installed backend (OpenVINO, ONNX Runtime, Paddle
  Inference with oneDNN) in fp32, in bf16 where the backend and the CPU have it, and in int8
  (OpenVINO, quantized by NNCF on 8 of the drive's images, when nncf is installed); the
  predictors' creation times are reported. The reference's decoder outputs all four scales,
  as its test_simple.py and evaluate_depth.py build it; ours outputs scale 0, as ours do.
- eval: images/s of evaluate_depth.evaluate() end to end (weights loading, images,
  network, metrics) on the test split of the drive, --eval_mono: eager, and through the
  exported model (--exported, the fastest backend) in fp32, bf16 and int8; each row keeps
  its seven metrics.
- video: frames/s of demo.py on a video of the drive's test frames (MJPG), through the
  exported model (fastest backend, fp32), outputs written. The reference has no video demo.

The data is a synthetic drive rendered into a temporary folder by
tools/make_synthetic_kitti.py (or --data_path: a drive it wrote, with its splits/). The
networks are untrained (timing does not depend on the weights). Each measure is the median
of --repeats runs (--train_repeats for training steps) after --warmup runs, pooled over
--rounds runs of the section. Each run of a section is a process of its own, and in it the
eager network goes before any exported runtime is loaded: those runtimes' thread pools stay
in the process and can slow what runs after them. With --ref and --ref_python (defaults
../ref and ../refvenv/bin/python, if present) the reference does the same in a separate
process with the same thread count, on the same files, after our training steps and eager
network and before any exported model (first in the eval section); it is patched at run time
for current libraries, never on disk. Ratios are our time over the reference's (< 1: ours is
faster). --quick runs tiny sizes, for a smoke test. The default run takes 8 (Intel Xeon with AMX) to 26 (AMD EPYC)
minutes a round on two cores, which must otherwise be idle: a busy core stalls every
multi-threaded kernel of both sides at its barriers (the JSON records the load average).

Neither side loads depth ground truth while training (the reference would need skimage
and NumPy < 1.24 for it, and the step does not use it).
"""
import argparse
import datetime
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("train", "inference", "eval", "video")


def int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError("must be an integer >= {}, got {!r}".format(low, text))
        return value
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (64x192, batch 1, 1 warm-up, 2 repeats, 4-frame drives)")
    parser.add_argument("--threads", type=int_at_least(1),
                        help="CPU threads for Paddle and torch (default: every core, see cpu_threads.py)")
    parser.add_argument("--warmup", type=int_at_least(0), help="untimed runs before each measure (default 1)")
    parser.add_argument("--repeats", type=int_at_least(1),
                        help="timed runs of each inference and evaluation measure (default 5, --quick 2)")
    parser.add_argument("--train_repeats", type=int_at_least(1),
                        help="timed training steps of each training measure (default 3, --quick 2)")
    parser.add_argument("--train_batch", type=int_at_least(1), help="training batch size (default 2, --quick 1)")
    parser.add_argument("--num_workers", type=int_at_least(0), default=0,
                        help="loader processes when training with data loading")
    parser.add_argument("--data_path", help="a drive written by tools/make_synthetic_kitti.py "
                        "(default: render one into a temporary folder)")
    parser.add_argument("--ref", default=os.path.join(ROOT, "..", "ref"), help="reference checkout")
    parser.add_argument("--ref_python", default=os.path.join(ROOT, "..", "refvenv", "bin", "python"),
                        help="a Python with torch and torchvision")
    parser.add_argument("--infer_batches", type=int_at_least(1), nargs="+",
                        help="inference batch sizes (default 1 16, --quick 1 2; 1 alone on a busy machine)")
    parser.add_argument("--rounds", type=int_at_least(1), default=1,
                        help="run every section this many times, ours and the reference's in turn, and "
                        "pool the repeats: both sides then share the machine's slow and fast spells")
    parser.add_argument("--no_ref", action="store_true", help="time ours only")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "bench_speed.json"),
                        help="where to write all timings")
    parser.add_argument("--section_in", nargs=2, metavar=("WORKDIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what each section's process is given
    size = {True: dict(warmup=1, repeats=2, train_repeats=2, train_batch=1),
            False: dict(warmup=1, repeats=5, train_repeats=3, train_batch=2)}[args.quick]
    for name, value in size.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.data_path and not os.path.isdir(os.path.join(args.data_path, "splits")):
        parser.error("--data_path {}: no splits/ folder (give a folder written by "
                     "tools/make_synthetic_kitti.py --out)".format(args.data_path))
    return args


if __name__ == "__main__":
    ARGS = parse_args()  # before paddle is imported: --threads must be in the environment first
    if ARGS.threads:
        os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

sys.path.insert(0, ROOT)
import cpu_threads  # noqa: E402,F401  (before paddle: sets its CPU thread count)

import contextlib  # noqa: E402
import glob  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import demo  # noqa: E402
import evaluate_depth  # noqa: E402
import inference  # noqa: E402
from datasets import KITTIRAWDataset, SeededBatchSampler  # noqa: E402
from export_gt_depth import GroundTruth, export_gt_depths  # noqa: E402
from export_model import export, load_net_and_info  # noqa: E402
from model import MonodepthModel, frame_ids_of  # noqa: E402
from network import DepthNet  # noqa: E402
from options import MonodepthOptions  # noqa: E402
from utils import readlines, save_folder_atomic  # noqa: E402

FULL = dict(train_size=(192, 640), infer_sizes=[(192, 640), (320, 1024)], infer_batches=[1, 16],
            drive=["--frames", "24", "--test_frames", "24"])
QUICK = dict(train_size=(64, 192), infer_sizes=[(64, 192)], infer_batches=[1, 2],
             drive=["--frames", "4", "--test_frames", "4", "--width", "320", "--height", "96"])
FRAME_IDS = ["0", "-1", "1"]  # and the other camera: --use_stereo
SEED = 0
BUSY_LOAD = 0.5  # 1-minute load average above which other work skews the timings

# Stub modules for what the reference imports but no measure uses: tensorboardX and
# IPython (its trainer) and skimage (its depth ground-truth loading).
REF_SHIM_MODULES = {
    "tensorboardX/__init__.py": "class SummaryWriter:\n    def __init__(self, *args, **kwargs):\n        pass\n",
    "IPython/__init__.py": "def embed(*args, **kwargs):\n    pass\n",
    "skimage/__init__.py": "",
    "skimage/transform.py": "def resize(*args, **kwargs):\n    raise NotImplementedError('stub')\n",
}

# Runs under the reference's Python, with the reference checkout first on the path. The
# patches, in memory only: PIL's removed ANTIALIAS name; torchvision's ColorJitter.get_params,
# which now returns the drawn factors, made the callable the reference applies again; .cuda()
# as a no-op (its evaluation calls it unconditionally); no depth ground truth in the loader
# (the drives have velodyne scans, whose loading needs skimage and np.int). Our timed() is
# prepended, so both sides time alike.
REF_RUNNER = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    cfg = json.load(open(sys.argv[1]))
    sys.path[:0] = [cfg["shim"], cfg["ref"]]
    import PIL.Image
    PIL.Image.ANTIALIAS = PIL.Image.LANCZOS
    import torch
    import torchvision
    from torchvision import transforms
    from torchvision.transforms import functional as TF
    torch.set_num_threads(cfg["threads"])

    draw_jitter = transforms.ColorJitter.get_params
    def jitter_function(*ranges):
        order, *factors = draw_jitter(*ranges)
        adjust = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
        def jitter(img):
            for i in order.tolist():
                img = adjust[i](img, factors[i])
            return img
        return jitter
    transforms.ColorJitter.get_params = staticmethod(jitter_function)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    import datasets
    import networks
    datasets.KITTIRAWDataset.check_depth = lambda self: False

    def train():
        import trainer
        from options import MonodepthOptions
        sys.argv = ["train.py"] + cfg["train_args"]
        opt = MonodepthOptions().parse()
        opt.split = cfg["split_dir"]  # a folder path: the option's choices only name built-in splits
        torch.manual_seed(cfg["seed"])
        t = trainer.Trainer(opt)
        t.set_train()
        stored = np.load(cfg["batch"])
        fixed = {}
        for name in stored.files:
            key = tuple(int(p) if p.lstrip("-").isdigit() else p for p in name.split("/"))
            fixed[key if len(key) > 1 else key[0]] = torch.from_numpy(stored[name])

        def step(inputs):
            outputs, losses = t.process_batch(inputs)
            t.model_optimizer.zero_grad()
            losses["loss"].backward()
            t.model_optimizer.step()
            return float(losses["loss"])

        def batches():
            while True:
                yield from t.train_loader
        stream = batches()
        w, n = cfg["warmup"], cfg["repeats"]
        return {"in_memory": timed(lambda: step(dict(fixed)), w, n),
                "with_loading": timed(lambda: step(next(stream)), w, n)}

    def inference():
        torch.manual_seed(cfg["seed"])
        encoder = networks.ResnetEncoder(18, False).eval()
        decoder = networks.DepthDecoder(encoder.num_ch_enc).eval()  # all scales, as its scripts do
        rng = np.random.default_rng(cfg["seed"])
        out = {}
        with torch.no_grad():
            for h, w in cfg["sizes"]:
                for b in cfg["batches"]:
                    x = torch.from_numpy(rng.random((b, 3, h, w), dtype=np.float32))
                    out["%dx%d/%d" % (w, h, b)] = timed(
                        lambda: decoder(encoder(x))[("disp", 0)].numpy(), cfg["warmup"], cfg["repeats"])
        return out

    def evaluation():
        import evaluate_depth
        from options import MonodepthOptions
        torch.manual_seed(cfg["seed"])
        encoder = networks.ResnetEncoder(18, False)
        decoder = networks.DepthDecoder(encoder.num_ch_enc)
        os.makedirs(cfg["weights"], exist_ok=True)
        torch.save(dict(encoder.state_dict(), height=cfg["height"], width=cfg["width"]),
                   os.path.join(cfg["weights"], "encoder.pth"))
        torch.save(decoder.state_dict(), os.path.join(cfg["weights"], "depth.pth"))
        evaluate_depth.splits_dir = cfg["splits_dir"]
        def run():
            sys.argv = ["evaluate_depth.py"] + cfg["eval_args"]
            evaluate_depth.evaluate(MonodepthOptions().parse())
        return {"end_to_end": timed(run, cfg["warmup"], cfg["repeats"])}

    result = {"train": train, "inference": inference, "eval": evaluation}[cfg["section"]]()
    result["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                          "numpy": np.__version__, "python": sys.version.split()[0]}
    with open(cfg["out"], "w") as f:
        json.dump(result, f)
''')


class ColorOnlyDataset(KITTIRAWDataset):
    """Training samples without depth ground truth, like the patched reference's."""

    def check_depth(self):
        return False


def threads():
    return int(os.environ["OMP_NUM_THREADS"])


def timed(run, warmup, repeats):
    """Wall-clock seconds of `repeats` calls of `run` after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


class Reference:
    """Runs sections of REF_RUNNER under the reference's Python."""

    def __init__(self, args, workdir):
        self.python, self.checkout, self.workdir = args.ref_python, os.path.abspath(args.ref), workdir
        self.versions = {}
        self.shim = os.path.join(workdir, "ref_shim")
        for name, text in REF_SHIM_MODULES.items():
            os.makedirs(os.path.dirname(os.path.join(self.shim, name)), exist_ok=True)
            with open(os.path.join(self.shim, name), "w") as f:
                f.write(text)
        self.runner = os.path.join(workdir, "ref_runner.py")
        with open(self.runner, "w") as f:
            f.write("import time\n\n\n" + inspect.getsource(timed) + REF_RUNNER)

    @staticmethod
    def create(args, workdir):
        """A Reference, or None (said why) with --no_ref or without the checkout and Python."""
        if args.no_ref:
            print("--no_ref: timing ours only")
            return None
        if not (os.path.isdir(args.ref) and os.path.isfile(args.ref_python)):
            print("reference not found ({}, {}): timing ours only".format(args.ref, args.ref_python))
            return None
        return Reference(args, workdir)

    def run(self, section, **cfg):
        cfg.update(section=section, shim=self.shim, ref=self.checkout, threads=threads(), seed=SEED,
                   out=os.path.join(self.workdir, "ref_{}.json".format(section)))
        cfg_path = os.path.join(self.workdir, "ref_{}_cfg.json".format(section))
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        proc = subprocess.run([self.python, self.runner, cfg_path], capture_output=True, text=True,
                              cwd=self.workdir)
        if proc.returncode:
            raise RuntimeError("the reference's {} section failed:\n{}".format(section, proc.stderr[-3000:]))
        with open(cfg["out"]) as f:
            result = json.load(f)
        self.versions = result.pop("versions")
        return result


def make_drive(args, workdir, preset):
    """The drive's folder: --data_path, or a synthetic drive rendered into workdir."""
    if args.data_path:
        return os.path.abspath(args.data_path)
    data = os.path.join(workdir, "drive")
    print("rendering the synthetic drive ({})".format(" ".join(preset["drive"])), flush=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_synthetic_kitti.py"), "--out", data,
                    "--workers", str(threads())] + preset["drive"], check=True, stdout=subprocess.DEVNULL)
    return data


def save_untrained_depth_net(folder, height, width):
    """A weights folder as training writes it (input size in the encoder file), seeded: the
    sections' processes load it."""
    paddle.seed(SEED)
    net = DepthNet(18)
    save_folder_atomic({"encoder.pdparams": dict(net.encoder.state_dict(), height=height, width=width,
                                                 use_stereo=True),
                        "depth.pdparams": net.decoder.state_dict()}, folder)


def key_name(key):
    return key if isinstance(key, str) else "/".join(str(p) for p in key)


def train_section(args, preset, data, ref, workdir):
    """Seconds per training step: one batch kept in memory, and batches from the loader."""
    height, width = preset["train_size"]
    argv = ["--height", str(height), "--width", str(width), "--frame_ids"] + FRAME_IDS + [
        "--use_stereo", "--weights_init", "scratch", "--batch_size", str(args.train_batch),
        "--num_workers", str(args.num_workers), "--data_path", data]
    opt = MonodepthOptions().parse(argv + ["--device", "cpu", "--seed", str(SEED)])
    paddle.seed(SEED)
    model = MonodepthModel(opt)
    model.train()
    optimizer = paddle.optimizer.Adam(opt.learning_rate,
                                      parameters=[p for p in model.parameters() if not p.stop_gradient])
    lines = readlines(os.path.join(data, "splits", "train_files.txt"))
    dataset = ColorOnlyDataset(data, lines, height, width, frame_ids_of(opt), 4, is_train=True, seed=SEED)
    sampler = SeededBatchSampler(len(dataset), args.train_batch, shuffle=True, drop_last=True, seed=SEED)
    if len(sampler) == 0:
        raise SystemExit("--train_batch {} is larger than the {} training samples of {}".format(
            args.train_batch, len(dataset), data))
    fixed = next(iter(paddle.io.DataLoader(dataset, batch_sampler=sampler)))

    def step(inputs):
        _, losses = model(inputs)
        losses["loss"].backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(losses["loss"])

    def batches():
        loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers)
        epoch = 0
        while True:
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    ours = {"in_memory": timed(lambda: step(fixed), args.warmup, args.train_repeats),
            "with_loading": timed(lambda: step(next(stream)), args.warmup, args.train_repeats)}
    reference = {}
    if ref:
        batch_file = os.path.join(workdir, "train_batch.npz")
        np.savez(batch_file, **{key_name(k): v.numpy() for k, v in fixed.items()})
        reference = ref.run("train", train_args=argv + ["--no_cuda", "--log_dir", os.path.join(workdir, "ref_logs")],
                            split_dir=os.path.join(data, "splits"), batch=batch_file,
                            warmup=args.warmup, repeats=args.train_repeats)
    label = "{}x{} batch {}".format(width, height, args.train_batch)
    measures = {}
    for kind, text in (("in_memory", "batch in memory"), ("with_loading", "with loading, {} workers".format(
            args.num_workers))):
        measures["train/" + kind] = measure(
            "train", "training step, {}, {}".format(label, text), "s/step", ours[kind], reference.get(kind),
            goal=1.0, samples=args.train_batch)
    return measures


def exported_predictors(prefix):
    """Yields ("backend-precision", predictor, seconds to create it) for every installed backend
    in every precision it runs here (said why when not), one at a time: a user's process holds
    one, and the idle thread pools of others would share the cores (the caller lets go of each
    before asking for the next)."""
    for backend in inference.available_backends(prefix):
        for precision in inference.PRECISIONS:
            start = time.perf_counter()
            try:
                net = inference.predictor(prefix, backend, precision=precision, threads=threads())
            except inference.BackendUnavailable as err:
                print("   skipped {} {}: {}".format(backend, precision, err))
                continue
            yield backend + "-" + precision, net, time.perf_counter() - start
            del net


EAGER_GOAL = 1.5  # ratio to the reference's eager network
DEPLOY_GOALS = {"fp32": 0.8, "bf16": 0.35, "int8": 0.25}  # the same, for exported networks
CALIBRATION_IMAGES = 8


def export_every_precision(weights, prefix, data, height=None, width=None):
    """The untrained network exported at `prefix`, and quantized to int8 on the drive's images
    when NNCF is installed."""
    cameras = sorted(glob.glob(os.path.join(data, "*", "*", "image_02", "data")))  # colour frames, no depth maps
    calibration = cameras[0] if cameras and importlib.util.find_spec("nncf") else None
    with contextlib.redirect_stdout(io.StringIO()):
        export(weights, prefix, height, width, calibration=calibration, calibration_size=CALIBRATION_IMAGES)


def inference_section(args, preset, data, weights, ref, workdir):
    """Latency per image of the eager network and of the exported one with every backend and
    precision, per size and batch. The eager network and the reference go first: the runtimes
    that the exported ones load stay in the process (thread pools, memory) and took the eager
    1024x320 image from 0.28 to 0.47 s on an Intel Xeon with AMX."""
    net, _ = load_net_and_info(weights)
    rng = np.random.default_rng(SEED)
    ours, creation, goals = {}, {}, {"eager": EAGER_GOAL}
    inputs = {(height, width): {batch: rng.random((batch, 3, height, width), dtype=np.float32)
                                for batch in preset["infer_batches"]} for height, width in preset["infer_sizes"]}
    for (height, width), batches in inputs.items():  # before any exported runtime is loaded (see below)
        for batch, images in batches.items():
            tensor = paddle.to_tensor(images)
            with paddle.no_grad():
                ours["{}x{}/{}".format(width, height, batch), "eager"] = timed(
                    lambda: net(tensor).numpy(), args.warmup, args.repeats)
    reference = {}
    if ref:  # while no runtime's threads are idling in this process
        reference = ref.run("inference", sizes=preset["infer_sizes"], batches=preset["infer_batches"],
                            warmup=args.warmup, repeats=args.repeats)
    for (height, width), batches in inputs.items():
        prefix = os.path.join(workdir, "exported", "depth_{}x{}".format(width, height))
        export_every_precision(weights, prefix, data, height, width)
        for mode, predict, seconds in exported_predictors(prefix):
            creation["{}/{}x{}".format(mode, width, height)] = seconds
            goals[mode] = DEPLOY_GOALS[predict.precision]
            for batch, images in batches.items():
                ours["{}x{}/{}".format(width, height, batch), mode] = timed(
                    lambda: predict(images), args.warmup, args.repeats)
            predict = None  # let it go before the next one is created
    measures = {}
    for (key, mode), times in ours.items():
        size, batch = key.split("/")
        per_image = [t / int(batch) for t in times]
        ref_times = reference.get(key)
        measures["inference/{}/{}".format(mode, key)] = measure(
            "inference", "depth net {}, {}, batch {}".format(mode, size, batch), "s/image", per_image,
            [t / int(batch) for t in ref_times] if ref_times else None, goal=goals[mode])
    for key, seconds in creation.items():
        measures["inference/predictor_creation/" + key] = measure(
            "inference", "predictor creation, {}".format(key.replace("/", ", ")), "s", [seconds], None,
            samples=None)
    return measures


def eval_section(args, preset, data, weights, ref, workdir):
    """Images/s of the whole evaluation of the drive's test split, ours and the reference's."""
    height, width = preset["train_size"]
    splits = os.path.join(workdir, "eval_splits")
    # the reference knows no "synthetic" split; its "eigen" scores alike (Garg crop, 1e-3..80 m)
    ours_dir, ref_dir = os.path.join(splits, "synthetic"), os.path.join(splits, "eigen")
    for folder in (ours_dir, ref_dir):
        os.makedirs(folder, exist_ok=True)
        shutil.copy(os.path.join(data, "splits", "test_files.txt"), folder)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = GroundTruth(export_gt_depths(data, "synthetic", splits))
    num_images = len(gt)
    # the reference reads {"data": N x H x W}; all maps of the drive have one size
    np.savez(os.path.join(ref_dir, "gt_depths.npz"), data=np.stack([gt[i] for i in range(num_images)]))

    reference = {}
    if ref:  # before any runtime is loaded here (inference_section)
        ref_weights = os.path.join(workdir, "ref_weights")  # the runner writes them
        eval_args = ["--eval_split", "eigen", "--eval_mono", "--data_path", data, "--num_workers", "0",
                     "--load_weights_folder", ref_weights]
        reference = ref.run("eval", eval_args=eval_args, splits_dir=splits, weights=ref_weights,
                            height=height, width=width, warmup=args.warmup, repeats=args.repeats)
    evaluate_depth.SPLITS_DIR = splits  # the drive's test split and ground truth, not the project's splits/
    argv = ["--eval_split", "synthetic", "--eval_mono", "--data_path", data, "--load_weights_folder", weights,
            "--num_workers", "0", "--device", "cpu"]
    prefix = os.path.join(workdir, "eval_exported", "depth")
    ours, results, labels = {}, {}, {}

    def time_evaluation(key, label, extra):
        opt = MonodepthOptions().parse(argv + extra)

        def run():
            with contextlib.redirect_stdout(io.StringIO()):
                results[key] = evaluate_depth.evaluate(opt)
        ours[key], labels[key] = timed(run, args.warmup, args.repeats), label
    time_evaluation("end_to_end", "eager", [])  # before the exported runtimes are loaded
    export_every_precision(weights, prefix, data)
    for precision in inference.PRECISIONS:
        try:
            backend = inference.predictor(prefix, precision=precision).backend
        except inference.BackendUnavailable as err:
            print("   skipped the evaluation in {}: {}".format(precision, err))
            continue
        time_evaluation("exported_{}_end_to_end".format(precision), "exported ({} {})".format(backend, precision),
                        ["--exported", prefix, "--precision", precision])
    ref_times = [t / num_images for t in reference["end_to_end"]] if reference else None
    measures = {}
    for key, label in labels.items():
        name = "evaluation end to end, {}, {} images at {}x{}".format(label, num_images, width, height)
        row = measure("eval", name, "s/image", [t / num_images for t in ours[key]], ref_times,
                      goal=None if key == "end_to_end" else 0.7)
        row["metrics"] = results[key]["metrics"]  # bf16's effect on them, next to its speed
        measures["eval/" + key] = row
    return measures


def video_section(args, preset, data, weights, workdir):
    """Frames/s of demo.py on a video of the drive's test frames through the exported model."""
    import cv2

    lines = readlines(os.path.join(data, "splits", "test_files.txt"))
    frames = [os.path.join(data, folder, "image_02", "data", "{:010d}.jpg".format(int(index)))
              for folder, index, _ in (line.split() for line in lines)]
    height, width = cv2.imread(frames[0]).shape[:2]
    video = os.path.join(workdir, "drive.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for frame in frames:
        writer.write(cv2.imread(frame))
    writer.release()
    prefix = os.path.join(workdir, "video_exported", "depth")
    with contextlib.redirect_stdout(io.StringIO()):
        export(weights, prefix)
    backend = inference.predictor(prefix).backend
    out = os.path.join(workdir, "video_out")

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            demo.main(["--image_path", video, "--exported", prefix, "--output_dir", out])
    times = timed(run, args.warmup, args.repeats)
    name = "demo on a video, exported ({} fp32), {} frames {}x{}".format(backend, len(frames), width, height)
    return {"video/demo": measure("video", name, "s/frame", [t / len(frames) for t in times], None)}


def measure(section, name, unit, ours, reference, goal=None, samples=1):
    """One row: raw repeats, medians, ratio of our time to the reference's and the goal."""
    row = {"section": section, "name": name, "unit": unit,
           "ours": {"repeats": ours, "median": float(np.median(ours))}, "reference": None,
           "ratio": None, "goal_ratio_at_most": goal, "goal_met": None}
    if reference:
        row["reference"] = {"repeats": reference, "median": float(np.median(reference))}
        row["ratio"] = row["ours"]["median"] / row["reference"]["median"]
        if goal is not None:
            row["goal_met"] = row["ratio"] <= goal
    # rates, the other way round: samples (or images) per second
    for side in ("ours", "reference"):
        if row[side]:
            row[side]["per_second"] = samples / row[side]["median"] if samples else None
    return row


def pooled(rows):
    """One row from the same measure's rows of several rounds: their repeats pooled."""
    first = rows[0]
    rate = first["ours"]["per_second"]
    samples = round(rate * first["ours"]["median"]) if rate else None
    reference = [t for row in rows if row["reference"] for t in row["reference"]["repeats"]]
    row = measure(first["section"], first["name"], first["unit"], [t for row in rows for t in row["ours"]["repeats"]],
                  reference or None, first["goal_ratio_at_most"], samples)
    return dict(first, **row)  # extra entries (the evaluation's metrics) from the first round


# the CPU features that decide the kernels both sides run (float32, bfloat16, int8)
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_model_and_flags():
    """The CPU's model name (and vendor) and which of SPEED_FLAGS it has, from /proc/cpuinfo."""
    fields = {}
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    model = " ".join(v for v in (fields.get("vendor_id"), fields.get("model name")) if v) or "unknown"
    flags = set(fields.get("flags", "").split())
    return model, [f for f in SPEED_FLAGS if f in flags]


def machine_info():
    model, flags = cpu_model_and_flags()
    return {"cpu": model, "cpu_flags": flags, "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
            "cores": os.cpu_count(), "usable_cores": cpu_threads.available_cores(),
            "threads": threads(), "platform": platform.platform(), "python": platform.python_version(),
            "paddle": paddle.__version__, "numpy": np.__version__, "load_average_at_start": os.getloadavg()}


def print_table(result):
    machine = result["machine"]
    print("\nmedians on {} ({}; {} threads, load average {}); ratio = our time / reference time (< 1: ours "
          "faster), per-second rates are the inverse".format(
              machine["cpu"], " ".join(machine["cpu_flags"]) or "no AVX2", machine["threads"],
              " ".join("{:.1f}".format(x) for x in machine["load_average_at_start"])))
    header = "{:<72} {:>8} {:>10} {:>10} {:>7} {:>7} {:>4} {:>9} {:>9}"
    print(header.format("measure", "unit", "ours", "reference", "ratio", "goal", "met", "ours/s", "ref/s"))

    def cell(value, spec):
        return "-" if value is None else format(value, spec)
    for row in result["measures"].values():
        ref = row["reference"] or {}
        met = {None: "-", True: "yes", False: "NO"}[row["goal_met"]]
        goal = "<=" + format(row["goal_ratio_at_most"], "g") if row["goal_ratio_at_most"] else "-"
        print(header.format(row["name"], row["unit"], cell(row["ours"]["median"], ".4g"),
                            cell(ref.get("median"), ".4g"), cell(row["ratio"], ".3f"), goal, met,
                            cell(row["ours"]["per_second"], ".4g"), cell(ref.get("per_second"), ".4g")))


def section_in_new_process(args, name, data, ref, workdir):
    """(measures, the reference's versions) of one run of section `name`, in a new process: the
    runtimes a section loads stay in its process and slow what runs after them (inference_section)."""
    out = os.path.join(workdir, "section_{}.json".format(name))
    argv = args.argv + ["--only", name, "--rounds", "1", "--data_path", data, "--section_in", workdir, out]
    argv += [] if ref else ["--no_ref"]
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + argv)
    if proc.returncode:
        sys.exit("the {} section failed (exit code {})".format(name, proc.returncode))
    with open(out) as f:
        result = json.load(f)
    return result["measures"], result["versions"]


def preset_of(args):
    preset = dict(QUICK if args.quick else FULL)
    preset["infer_batches"] = args.infer_batches or preset["infer_batches"]
    return preset


def run_section(args, workdir, out):
    """The body of section_in_new_process: one section, written to `out`."""
    preset = preset_of(args)
    paddle.set_device("cpu")
    ref = None if args.no_ref else Reference(args, workdir)
    data, weights = os.path.abspath(args.data_path), os.path.join(workdir, "weights")
    sections = {"train": lambda: train_section(args, preset, data, ref, workdir),
                "inference": lambda: inference_section(args, preset, data, weights, ref, workdir),
                "eval": lambda: eval_section(args, preset, data, weights, ref, workdir),
                "video": lambda: video_section(args, preset, data, weights, workdir)}
    measures = sections[args.only[0]]()
    with open(out, "w") as f:
        json.dump({"measures": measures, "versions": ref.versions if ref else None}, f)


def main(args):
    if args.section_in:
        return run_section(args, *args.section_in)
    preset = preset_of(args)
    paddle.set_device("cpu")  # the untrained weights from the CPU's generator, on any machine
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        print("warning: the load average is {:.1f}: other work on this machine will slow both sides, "
              "the reference most (its threads wait for each other at every kernel)".format(load))
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": [sys.executable] + sys.argv, "machine": machine_info(), "quick": args.quick,
              "settings": {k: v for k, v in vars(args).items()
                           if k not in ("ref", "ref_python", "json", "section_in", "argv")},
              "measures": {}}
    with tempfile.TemporaryDirectory() as workdir:
        ref = Reference.create(args, workdir)
        data = make_drive(args, workdir, preset)
        save_untrained_depth_net(os.path.join(workdir, "weights"), *preset["train_size"])
        versions = None
        for name in SECTIONS:
            if name not in args.only:
                continue
            rounds = []
            for number in range(args.rounds):
                print("timing {}{}{}".format(name, " (ours and the reference)" if ref and name != "video" else "",
                                             ", round {} of {}".format(number + 1, args.rounds) if args.rounds > 1
                                             else ""), flush=True)
                measures, ref_versions = section_in_new_process(args, name, data, ref, workdir)
                versions = ref_versions or versions  # the video section runs no reference
                rounds.append(measures)
            result["measures"].update({key: pooled([r[key] for r in rounds]) for key in rounds[0]})
        result["machine"]["load_average_at_end"] = os.getloadavg()  # other work skews the timings
        result["reference"] = {"checkout": os.path.abspath(args.ref), "python": os.path.abspath(args.ref_python),
                               "versions": versions} if ref else None
    print_table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote {}".format(args.json))


if __name__ == "__main__":
    main(ARGS)
