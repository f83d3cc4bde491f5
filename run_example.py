"""The built-in example: the whole pipeline on a synthetic KITTI drive, on the CPU.

    python run_example.py [--out example_run] [--frames 200]

1. renders a synthetic street in the KITTI raw layout (tools/make_synthetic_kitti.py);
2. trains from scratch at 64x192, stereo (no ImageNet weights can be had offline);
3. fine-tunes the result at 96x320 with --load_weights_folder, as the 1024x320 stage does.

Why --min_depth 1: with the default 0.1 the untrained network's disparity (sigmoid 0.5)
warps the other view by about a third of the image, the unwarped image then wins the
per-pixel minimum everywhere and no gradient reaches the depth network; with 1 m the
first warps are a few pixels and training starts at once. Each step is printed as the
commands run, so they can be copied.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
TRAIN_FLAGS = ["--frame_ids", "0", "--use_stereo", "--weights_init", "scratch", "--min_depth", "1",
               "--batch_size", "8", "--num_workers", "2", "--seed", "1", "--log_frequency", "20"]


def run(args):
    print("\n$ " + " ".join(args), flush=True)
    subprocess.run([sys.executable] + args, cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "example_run"), help="working folder")
    parser.add_argument("--frames", type=int, default=200, help="frames of the synthetic drive")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the first stage")
    args = parser.parse_args()
    start = time.time()
    data, splits, logs = (os.path.join(args.out, name) for name in ("data", "splits", "logs"))
    if not os.path.isfile(os.path.join(splits, "train_files.txt")):
        run(["tools/make_synthetic_kitti.py", "--out", data, "--frames", str(args.frames),
             "--splits_dir", splits])
    common = ["--data_path", data, "--split", splits, "--log_dir", logs] + TRAIN_FLAGS
    run(["train.py", "--model_name", "stage1_64x192", "--height", "64", "--width", "192",
         "--num_epochs", str(args.epochs)] + common)
    stage1 = os.path.join(logs, "stage1_64x192", "models", "weights_{}".format(args.epochs - 1))
    run(["train.py", "--model_name", "stage2_96x320", "--height", "96", "--width", "320",
         "--num_epochs", "1", "--load_weights_folder", stage1, "--models_to_load", "encoder", "depth"]
        + common)
    print("\nexample finished in {:.0f} s; weights in {}".format(time.time() - start, logs))


if __name__ == "__main__":
    main()
