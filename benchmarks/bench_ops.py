"""Single kernels of the training step, Paddle against PyTorch, for reports upstream.

    python benchmarks/bench_ops.py [--quick] [--rounds N] [--repeats N] [--threads N]
                                   [--json benchmarks/bench_ops.json] [--no_ref]

Each op is one expression of `F` (paddle.nn.functional or torch.nn.functional: the
calls below mean the same in both) or `P` (the project's own: cpu_ops.conv2d, layers.warp,
layers.reflection_pad, layers.mean3x3, layers.upsample and layers.photometric_error (with the
target's statistics computed in each call), against torch's F doing the same)
on the same seeded inputs, at the sizes of a 640x192 batch-2 training step; it is timed forward only (no autograd) and forward + backward
(of the output's sum, into every input marked as needing a gradient). With --ref_python
(default ../refvenv/bin/python, if present) torch runs the same ops in a worker process
with the same thread count, and the two sides alternate: --rounds rounds of --repeats
timed runs each, so that load from other work falls on both alike. Reported: medians in
ms and the ratio Paddle / torch (> 1: Paddle is slower). --quick: tiny sizes, a smoke test.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (expression of F and the inputs a, b, ...; inputs as (shape, values, needs_grad)).
# Shapes are those of the 640x192 mono+stereo step, batch 2 (SSIM pools five moments of
# three channels at once, on reflection-padded images; the encoder's input needs no gradient).
OPS = {
    "conv2d 64->64 3x3 96x320": ("P.conv2d(a, b, padding=1)",
                                 [((2, 64, 96, 320), "randn", True), ((64, 64, 3, 3), "randn", True)]),
    "conv2d 3->64 7x7/2 192x640": ("P.conv2d(a, b, stride=2, padding=3)",
                                   [((2, 3, 192, 640), "randn", False), ((64, 3, 7, 7), "randn", True)]),
    "conv2d 512->256 3x3 6x20": ("P.conv2d(a, b, padding=1)",
                                 [((2, 512, 6, 20), "randn", True), ((256, 512, 3, 3), "randn", True)]),
    "conv2d 32->16 3x3 192x640": ("P.conv2d(a, b, padding=1)",
                                  [((2, 32, 192, 640), "randn", True), ((16, 32, 3, 3), "randn", True)]),
    "batch_norm train 64ch 96x320": ("F.batch_norm(a, b, c, d, e, training=True)",
                                     [((2, 64, 96, 320), "randn", True), ((64,), "zeros", False),
                                      ((64,), "ones", False), ((64,), "ones", True), ((64,), "zeros", True)]),
    "max_pool2d 3x3/2 64ch 96x320": ("F.max_pool2d(a, 3, 2, 1)", [((2, 64, 96, 320), "randn", True)]),
    "avg_pool2d 3x3/1 15ch 194x642": ("F.avg_pool2d(a, 3, 1)", [((2, 15, 194, 642), "randn", True)]),
    "SSIM window means (project's) 15ch 194x642": ("P.mean3x3(a)", [((2, 15, 194, 642), "randn", True)]),
    "grid_sample bilinear border 192x640": (
        "F.grid_sample(a, b, mode='bilinear', padding_mode='border', align_corners=True)",
        [((2, 3, 192, 640), "randn", True), ((2, 192, 640, 2), "grid", True)]),
    "interpolate bilinear 96x320->192x640": (
        "F.interpolate(a, size=[192, 640], mode='bilinear', align_corners=False)",
        [((2, 1, 96, 320), "randn", True)]),
    "interpolate nearest x2 64ch 48x160": ("F.interpolate(a, scale_factor=2, mode='nearest')",
                                           [((2, 64, 48, 160), "randn", True)]),
    "upsample nearest x2 (project's) 64ch 48x160": ("P.upsample(a)", [((2, 64, 48, 160), "randn", True)]),
    "warp (project's) 192x640": ("P.warp(a, b)", [((2, 3, 192, 640), "randn", False), ((2, 192, 640, 2), "grid", True)]),
    "pad reflect 1 3ch 192x640": ("F.pad(a, [1, 1, 1, 1], mode='reflect')", [((2, 3, 192, 640), "randn", True)]),
    "pad reflect 1 (project's) 32ch 192x640": ("P.reflection_pad(a)", [((2, 32, 192, 640), "randn", True)]),
    "pow 2 15ch 192x640": ("a ** 2", [((2, 15, 192, 640), "randn", True)]),
    "photometric error (project's) 3ch 192x640": ("P.photometric_error(a, b)",
                                                  [((2, 3, 192, 640), "randn", True), ((2, 3, 192, 640), "randn", False)]),
}
MODES = ("fwd", "fwd+bwd")


def quick_shape(shape):
    """--quick: spatial sizes (the last two of a 4-d image) divided by 8."""
    if len(shape) == 4 and shape[-1] > 3 and shape[-2] > 3:
        return shape[:2] + (max(3, shape[2] // 8), max(3, shape[3] // 8))
    if len(shape) == 4 and shape[-1] == 2:  # a sampling grid: N x H x W x 2
        return (shape[0], max(3, shape[1] // 8), max(3, shape[2] // 8), 2)
    return shape


def input_arrays(spec, quick):
    """The op's inputs as float32 arrays, the same on both sides (seeded by position)."""
    arrays = []
    for i, (shape, values, _) in enumerate(spec):
        shape = quick_shape(shape) if quick else shape
        rng = np.random.RandomState(i)
        if values == "randn":
            array = rng.randn(*shape)
        elif values == "grid":  # as a warp samples: pixels shifted by a few percent, some outside
            n, h, w, _ = shape
            y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
            shift = rng.uniform(0.0, 0.1, (n, 1, 1))
            array = np.stack(np.broadcast_arrays(1.02 * x + shift + 0.01 * np.sin(7 * y), 1.01 * y), axis=-1)
        else:
            array = np.ones(shape) if values == "ones" else np.zeros(shape)
        arrays.append(array.astype("float32"))
    return arrays


class Side:
    """One framework: tensors, its functional module, no-grad context and backward."""

    def __init__(self, name):
        self.name = name
        if name == "torch":
            import torch
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            self.lib, self.F = torch, torch.nn.functional
            self.P = types.SimpleNamespace(
                conv2d=self.F.conv2d, reflection_pad=lambda a: self.F.pad(a, [1, 1, 1, 1], mode="reflect"),
                warp=lambda a, b: self.F.grid_sample(a, b, mode="bilinear", padding_mode="border",
                                                     align_corners=True),
                mean3x3=lambda a: self.F.avg_pool2d(a, 3, 1),
                upsample=lambda a: self.F.interpolate(a, scale_factor=2, mode="nearest"),
                photometric_error=self.reference_photometric_error)
        else:
            import paddle
            import cpu_ops
            import layers
            self.lib, self.F = paddle, paddle.nn.functional
            self.P = types.SimpleNamespace(
                conv2d=cpu_ops.conv2d, reflection_pad=layers.reflection_pad, warp=layers.warp,
                mean3x3=layers.mean3x3, upsample=layers.upsample,
                photometric_error=lambda a, b: layers.photometric_error(a, b, layers.SSIM().target_stats(b)))

    def reference_photometric_error(self, a, b):
        """The reference's reprojection loss of `a` against `b`: 0.85 SSIM + 0.15 L1, each
        averaged over the channels, SSIM pooling both images' moments on every call."""
        x, y = self.F.pad(a, [1, 1, 1, 1], mode="reflect"), self.F.pad(b, [1, 1, 1, 1], mode="reflect")
        pool = lambda t: self.F.avg_pool2d(t, 3, 1)
        mu_x, mu_y = pool(x), pool(y)
        sigma_x, sigma_y, sigma_xy = pool(x * x) - mu_x ** 2, pool(y * y) - mu_y ** 2, pool(x * y) - mu_x * mu_y
        n = (2 * mu_x * mu_y + 0.01 ** 2) * (2 * sigma_xy + 0.03 ** 2)
        d = (mu_x ** 2 + mu_y ** 2 + 0.01 ** 2) * (sigma_x + sigma_y + 0.03 ** 2)
        ssim = self.lib.clamp((1 - n / d) / 2, 0, 1)
        return 0.85 * ssim.mean(1, keepdim=True) + 0.15 * (b - a).abs().mean(1, keepdim=True)

    def tensor(self, array, grad):
        if self.name == "torch":
            return self.lib.tensor(array, requires_grad=grad)
        t = self.lib.to_tensor(array)
        t.stop_gradient = not grad
        return t

    def times(self, op, mode, quick, warmup, repeats):
        """Seconds of `repeats` runs of one op after `warmup` untimed ones."""
        expression, spec = OPS[op]
        inputs = dict(zip("abcde", [self.tensor(a, grad and mode != "fwd")
                                    for a, (_, _, grad) in zip(input_arrays(spec, quick), spec)]))
        code = compile(expression, op, "eval")
        scope = dict(inputs, F=self.F, P=self.P)

        def run():
            if mode == "fwd":
                with self.lib.no_grad():
                    eval(code, scope)
            else:
                eval(code, scope).sum().backward()

        for _ in range(warmup):
            run()
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            out.append(time.perf_counter() - start)
        return out


def torch_worker():
    """Answers one JSON request per line ({"op", "mode", "quick", "warmup", "repeats"})
    with the list of its times."""
    side = Side("torch")
    print(json.dumps({"threads": side.lib.get_num_threads(), "version": side.lib.__version__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(side.times(**request)), flush=True)


class TorchProcess:
    def __init__(self, python):
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--torch_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        self.info = self.read()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the torch worker ({}) exited with code {}".format(self.proc.args[0], self.proc.wait()))
        return json.loads(line)

    def times(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be an integer >= 1, got {!r}".format(text))
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="spatial sizes / 8, 1 round of 2 repeats")
    parser.add_argument("--rounds", type=positive_int, help="alternations of the two sides (default 5)")
    parser.add_argument("--repeats", type=positive_int, help="timed runs per side and round (default 4)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads of both sides (default: every core)")
    parser.add_argument("--ref_python", default=os.path.join(ROOT, "..", "refvenv", "bin", "python"),
                        help="a Python with torch (used if it exists)")
    parser.add_argument("--no_ref", action="store_true", help="time Paddle only")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "bench_ops.json"))
    parser.add_argument("--torch_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, full, quick in (("rounds", 5, 1), ("repeats", 4, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def median_ms(times):
    return float(np.median(times)) * 1000 if times else None


def main(args):
    sys.path.insert(0, ROOT)
    import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)
    paddle_side = Side("paddle")
    torch_side = None if args.no_ref or not os.path.exists(args.ref_python) else TorchProcess(args.ref_python)
    rows = []
    for op in OPS:
        for mode in MODES:
            ours, theirs = [], []
            for _ in range(args.rounds):
                request = dict(op=op, mode=mode, quick=args.quick, warmup=1, repeats=args.repeats)
                ours += paddle_side.times(**request)
                if torch_side:
                    theirs += torch_side.times(**request)
            paddle_ms, torch_ms = median_ms(ours), median_ms(theirs)
            rows.append(dict(op=op, mode=mode, paddle_ms=paddle_ms, torch_ms=torch_ms,
                             ratio=paddle_ms / torch_ms if torch_ms else None,
                             paddle_times=ours, torch_times=theirs))
            print("{:<40} {:<8} {:>9.2f} {:>9} {:>7}".format(
                op, mode, paddle_ms, "-" if torch_ms is None else "{:.2f}".format(torch_ms),
                "-" if torch_ms is None else "{:.2f}".format(rows[-1]["ratio"])), flush=True)
    if torch_side:
        torch_side.close()
    result = dict(threads=cpu_threads.num_threads(), quick=args.quick, rounds=args.rounds, repeats=args.repeats,
                  paddle=paddle_side.lib.__version__, torch=torch_side.info["version"] if torch_side else None,
                  load_average=os.getloadavg()[0], rows=rows)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print("written to", args.json)
    return result


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.threads:  # before paddle or torch is imported
        os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    if ARGS.torch_worker:
        torch_worker()
    else:
        print("{:<40} {:<8} {:>9} {:>9} {:>7}".format("op", "mode", "paddle ms", "torch ms", "ratio"))
        main(ARGS)
