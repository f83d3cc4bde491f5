"""Loader throughput (samples/s) for 640x192 mono+stereo samples, ours vs the reference.

Each sample holds frames 0, -1, 1 and "s" at 4 scales, with training-time
augmentation.  The images are the KITTI raw frames of ../shared/kitti_sample
(frame 1 of drive 0001, both cameras), converted to JPEG like a prepared KITTI
copy unless --png.  With --ref and --ref_python (defaults: ../ref and
../refvenv/bin/python, if present) the PyTorch reference loader is timed on the
same files in a separate process, and both loaders' outputs are compared for
the same flips and colour-jitter parameters.

    python3 benchmarks/bench_loader.py [--png] [--json benchmarks/bench_loader.json]

The defaults take about ten minutes on two cores, mostly in the reference.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import paddle  # noqa: E402

from datasets import KITTIRAWDataset, SeededBatchSampler  # noqa: E402

DATE = "2011_09_26"
DRIVE = f"{DATE}/{DATE}_drive_0001_sync"
FRAME_IDS = [0, -1, 1, "s"]
HEIGHT, WIDTH, SCALES = 192, 640, 4

# Runs under the reference's Python.  It stubs skimage (only needed for depth,
# which this data lacks), restores PIL's removed ANTIALIAS name, and turns
# torchvision's ColorJitter.get_params (which now returns parameters) back into
# the callable the reference expects, applying one parameter set to all images.
REF_RUNNER = textwrap.dedent('''
    import json, random, resource, sys, time
    import numpy as np
    import PIL.Image
    PIL.Image.ANTIALIAS = PIL.Image.LANCZOS
    import torch
    from torchvision import transforms
    from torchvision.transforms import functional as F

    cfg = json.load(open(sys.argv[1]))
    sys.path[:0] = [cfg["shim"], cfg["ref"]]
    import datasets
    from datasets import mono_dataset

    def jitter_from(order, b, c, s, h):
        ops = {0: lambda im: F.adjust_brightness(im, b), 1: lambda im: F.adjust_contrast(im, c),
               2: lambda im: F.adjust_saturation(im, s), 3: lambda im: F.adjust_hue(im, h)}
        def jitter(img):
            for i in order:
                img = ops[int(i)](img)
            return img
        return jitter

    draw = transforms.ColorJitter.get_params
    forced = []
    def get_params(*ranges):
        if forced:
            return jitter_from(*forced.pop(0))
        order, b, c, s, h = draw(*ranges)
        return jitter_from(order.tolist(), b, c, s, h)
    transforms.ColorJitter.get_params = staticmethod(get_params)

    lines = open(cfg["split"]).read().splitlines()
    def make(is_train):
        return datasets.KITTIRAWDataset(cfg["data"], lines, cfg["height"], cfg["width"],
                                        cfg["frame_ids"], cfg["scales"], is_train=is_train,
                                        img_ext=cfg["ext"])

    def key_name(k):
        return k if isinstance(k, str) else "/".join(str(p) for p in k)

    # Outputs for given augmentations: random.random() > 0.5 decides aug, then flip.
    out = {}
    ds = make(True)
    real_random = random.random
    for case in cfg["cases"]:
        rolls = iter([0.9 if case["aug"] else 0.1, 0.9 if case["flip"] else 0.1])
        mono_dataset.random.random = lambda: next(rolls)
        if case["aug"]:
            forced.append(case["params"])
        for k, v in ds[case["index"]].items():
            out["%d/%s" % (case["index"], key_name(k))] = v.numpy()
    mono_dataset.random.random = real_random
    np.savez(cfg["arrays"], **out)

    def cpu_seconds():
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    timings = {}
    for workers in cfg["workers"]:
        loader = torch.utils.data.DataLoader(make(True), cfg["batch_size"], shuffle=True,
                                             num_workers=workers, drop_last=False)
        rates, cpu = [], []
        for rep in range(cfg["warmup"] + cfg["repeats"]):
            start, start_cpu = time.perf_counter(), cpu_seconds()
            n = sum(b[("color", 0, 0)].shape[0] for b in loader)
            if rep >= cfg["warmup"]:
                rates.append(n / (time.perf_counter() - start))
                cpu.append((cpu_seconds() - start_cpu) / n * 1000)
        timings[str(workers)] = {"samples_per_s": rates, "cpu_ms_per_sample": cpu}
    print(json.dumps(timings))
''')


def make_data(sample_dir, out_dir, ext):
    """Copy the sample drive's calibration and frames 0-2 into ``out_dir`` as ``ext``."""
    for name in os.listdir(os.path.join(sample_dir, DATE)):
        if name.startswith("calib_"):
            os.makedirs(os.path.join(out_dir, DATE), exist_ok=True)
            shutil.copy(os.path.join(sample_dir, DATE, name), os.path.join(out_dir, DATE, name))
    for cam in ("image_02", "image_03"):
        dst = os.path.join(out_dir, DRIVE, cam, "data")
        os.makedirs(dst, exist_ok=True)
        for frame in range(3):
            img = Image.open(os.path.join(sample_dir, DRIVE, cam, "data", f"{frame:010d}.png"))
            # quality 92 with 4:2:0 chroma, as the reference's README converts KITTI
            img.convert("RGB").save(os.path.join(dst, f"{frame:010d}{ext}"), quality=92, subsampling=2)


def cpu_seconds():
    """CPU time of this process and its finished children (the loader's workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def time_ours(dataset, workers, batch_size, warmup, repeats):
    """Wall-clock samples/s and CPU ms per sample (which other load on the machine does not change)."""
    sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=True, seed=dataset.seed)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
    rates, cpu = [], []
    for epoch in range(warmup + repeats):
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        n = sum(b[("color", 0, 0)].shape[0] for b in loader)
        if epoch >= warmup:
            rates.append(n / (time.perf_counter() - start))
            cpu.append((cpu_seconds() - start_cpu) / n * 1000)
    return {"samples_per_s": rates, "cpu_ms_per_sample": cpu}


def lanczos_chain_difference(dataset, data_dir, ext):
    """Max |ours - PIL Lanczos chain| over all frames and scales of an unaugmented sample."""
    item = dataset[0]
    folder, frame, side = dataset.lines[0]
    worst = 0.0
    for f in FRAME_IDS:
        cam = {"l": "image_02", "r": "image_03"}[dataset.other_side[side] if f == "s" else side]
        index = frame if f == "s" else frame + f
        img = Image.open(os.path.join(data_dir, folder, cam, "data", f"{index:010d}{ext}")).convert("RGB")
        for s in range(SCALES):
            img = img.resize((WIDTH // 2 ** s, HEIGHT // 2 ** s), Image.LANCZOS)
            expected = np.asarray(img, np.float32).transpose(2, 0, 1) / 255
            worst = max(worst, float(np.abs(item[("color", f, s)] - expected).max()))
    return worst


def run_reference(args, data_dir, split_path, ext, workdir, train_set):
    """Time the reference loader and compare its outputs with ours for the same augmentations."""
    shim = os.path.join(workdir, "shim")
    os.makedirs(os.path.join(shim, "skimage"))
    open(os.path.join(shim, "skimage", "__init__.py"), "w").close()
    with open(os.path.join(shim, "skimage", "transform.py"), "w") as f:
        f.write("def resize(*args, **kwargs):\n    raise NotImplementedError('no depth here')\n")
    runner = os.path.join(workdir, "ref_runner.py")
    with open(runner, "w") as f:
        f.write(REF_RUNNER)

    cases = []
    for index in range(args.compare):
        do_flip, jitter = train_set.draw_augmentation(index)
        cases.append({"index": index, "flip": do_flip, "aug": jitter is not None,
                      "params": list(jitter) if jitter else None})
    cfg = {"shim": shim, "ref": os.path.abspath(args.ref), "data": data_dir, "split": split_path,
           "ext": ext, "height": HEIGHT, "width": WIDTH, "frame_ids": FRAME_IDS, "scales": SCALES,
           "batch_size": args.batch_size, "workers": args.workers, "warmup": args.warmup,
           "repeats": args.repeats, "cases": cases, "arrays": os.path.join(workdir, "ref.npz")}
    cfg_path = os.path.join(workdir, "cfg.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.run([args.ref_python, runner, cfg_path], capture_output=True, text=True, cwd=workdir)
    if proc.returncode:
        raise RuntimeError(f"reference loader failed:\n{proc.stderr[-3000:]}")
    timings = json.loads(proc.stdout.strip().splitlines()[-1])

    ref = np.load(cfg["arrays"])
    worst, compared = 0.0, 0
    for case in cases:
        ours = train_set[case["index"]]
        for key, value in ours.items():
            name = key if isinstance(key, str) else "/".join(str(p) for p in key)
            worst = max(worst, float(np.abs(value - ref[f"{case['index']}/{name}"]).max()))
            compared += 1
    combos = sorted({(c["aug"], c["flip"]) for c in cases})
    return timings, {"max_abs_diff": worst, "arrays_compared": compared,
                     "aug_flip_cases": [list(c) for c in combos]}


def summarise(result, workers_list):
    """Medians per worker count; speedup > 1 means ours is faster."""
    summary = {}
    for workers in map(str, workers_list):
        summary[workers] = {}
        for measure in ("samples_per_s", "cpu_ms_per_sample"):
            ours = float(np.median(result["ours"][workers][measure]))
            ref = result["reference"].get(workers, {}).get(measure)
            ref = float(np.median(ref)) if ref else None
            speedup = None if ref is None else (ours / ref if measure == "samples_per_s" else ref / ours)
            summary[workers][measure] = {"ours": ours, "reference": ref, "speedup": speedup}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default=os.path.join(ROOT, "..", "shared", "kitti_sample"))
    parser.add_argument("--png", action="store_true", help="read PNG frames instead of JPEG")
    parser.add_argument("--samples", type=int, default=64,
                        help="samples per timed pass (one epoch: workers start once per pass)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=int, default=12, help="samples compared with the reference")
    parser.add_argument("--ref", default=os.path.join(ROOT, "..", "ref"))
    parser.add_argument("--ref_python", default=os.path.join(ROOT, "..", "refvenv", "bin", "python"))
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "bench_loader.json"))
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.sample, DRIVE)):
        sys.exit(f"KITTI sample not found at {args.sample} (expected {DRIVE} inside)")
    ext = ".png" if args.png else ".jpg"

    with tempfile.TemporaryDirectory() as workdir:
        data_dir = os.path.join(workdir, "kitti")
        make_data(args.sample, data_dir, ext)
        lines = [f"{DRIVE} 1 {side}" for side in "lr"] * (args.samples // 2)
        split_path = os.path.join(workdir, "split.txt")
        with open(split_path, "w") as f:
            f.write("\n".join(lines) + "\n")

        train_set = KITTIRAWDataset(data_dir, lines, HEIGHT, WIDTH, FRAME_IDS, SCALES,
                                    is_train=True, img_ext=ext, seed=0)
        plain_set = KITTIRAWDataset(data_dir, lines, HEIGHT, WIDTH, FRAME_IDS, SCALES, img_ext=ext)
        result = {"images": ext, "samples_per_pass": len(lines), "batch_size": args.batch_size,
                  "lanczos_chain_max_abs_diff": lanczos_chain_difference(plain_set, data_dir, ext),
                  "ours": {}, "reference": {}}
        for workers in args.workers:
            result["ours"][str(workers)] = time_ours(train_set, workers, args.batch_size,
                                                     args.warmup, args.repeats)
        if os.path.isdir(args.ref) and os.path.isfile(args.ref_python):
            result["reference"], result["reference_match"] = run_reference(
                args, data_dir, split_path, ext, workdir, train_set)
        else:
            print(f"reference not found ({args.ref}, {args.ref_python}): timing ours only")

    result["medians"] = summarise(result, args.workers)
    print(f"images {ext}, {len(lines)} samples per pass, batch {args.batch_size}, median of {args.repeats} passes")
    print("samples/s: wall clock; ms: CPU time per sample, workers included (robust to other load)")
    print(f"{'workers':>7} {'ours/s':>8} {'ref/s':>8} {'speedup':>8} {'ours ms':>8} {'ref ms':>8} {'speedup':>8}")
    for workers, row in result["medians"].items():
        cells = []
        for r in (row["samples_per_s"], row["cpu_ms_per_sample"]):
            cells += [r["ours"], r["reference"], r["speedup"]]
        print(f"{workers:>7}" + "".join(f" {c:8.2f}" if c is not None else f" {'-':>8}" for c in cells))
    print(f"max |ours - PIL Lanczos chain| = {result['lanczos_chain_max_abs_diff']:g}")
    if "reference_match" in result:
        match = result["reference_match"]
        print(f"max |ours - reference| over {match['arrays_compared']} arrays of "
              f"{args.compare} augmented samples = {match['max_abs_diff']:g}")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
