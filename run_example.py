"""The built-in example: the whole pipeline on a synthetic KITTI drive, on the CPU.

    python run_example.py [--out example_run]

1. renders a synthetic street in the KITTI raw layout (tools/make_synthetic_kitti.py);
2. trains from scratch at 64x192, stereo (no ImageNet weights can be had offline);
3. fine-tunes the result at 96x320 with --load_weights_folder, as the 1024x320 stage does;
4. exports the ground truth, evaluates the untrained and the trained network (--eval_mono
   and --eval_stereo) and runs the demo on a test image.

Why --min_depth 1 (in training and evaluation): with the default 0.1 the untrained
network's disparity (sigmoid 0.5) warps the other view by about a third of the image, the
unwarped image then wins the per-pixel minimum everywhere and no gradient reaches the depth
network; with 1 (the network's units: 5.4 m on KITTI's rig) the first warps are a few pixels and
training starts at once. Every
command is printed as it runs, so it can be copied.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
# stereo pairs train the fastest from scratch; loading in the training process (no workers)
# is quicker on 2 cores than workers competing with the step for them
TRAIN_FLAGS = ["--frame_ids", "0", "--use_stereo", "--weights_init", "scratch", "--min_depth", "1",
               "--batch_size", "8", "--num_workers", "0", "--seed", "1", "--log_frequency", "10",
               "--overwrite"]  # the example starts its runs again each time
METRICS = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"]


def run(args):
    print("\n$ python " + " ".join(args), flush=True)
    subprocess.run([sys.executable] + args, cwd=ROOT, check=True)


def save_untrained(data_flags):
    """The networks as training starts (same options and seed), to score against."""
    sys.path.insert(0, ROOT)
    from options import MonodepthOptions
    from trainer import Trainer
    opt = MonodepthOptions().parse(["--model_name", "untrained", "--height", "64", "--width", "192"]
                                   + TRAIN_FLAGS + data_flags)
    trainer = Trainer(opt)
    trainer.save_model("weights_0")
    return os.path.join(trainer.models_dir, "weights_0")


def evaluate(weights, mode, data):
    run(["evaluate_depth.py", "--load_weights_folder", weights, "--eval_split", "synthetic", "--data_path", data,
         "--eval_" + mode, "--min_depth", "1", "--num_workers", "0"])
    with open(os.path.join(weights, "eval_depth_synthetic.json")) as f:
        return json.load(f)["metrics"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "example_run"), help="working folder")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the first stage")
    args = parser.parse_args()
    start = time.time()
    data, logs = os.path.join(args.out, "data"), os.path.join(args.out, "logs")
    data_flags = ["--data_path", data, "--split", "synthetic", "--log_dir", logs]
    if not os.path.isdir(os.path.join(data, "2000_01_01")):
        # the default drive, whose split files are the project's splits/synthetic
        run(["tools/make_synthetic_kitti.py", "--out", data, "--splits_dir", os.path.join(ROOT, "splits", "synthetic")])
    run(["export_gt_depth.py", "--data_path", data, "--split", "synthetic"])
    untrained = save_untrained(data_flags)

    run(["train.py", "--model_name", "stage1_64x192", "--height", "64", "--width", "192",
         "--num_epochs", str(args.epochs)] + TRAIN_FLAGS + data_flags)
    stage1 = os.path.join(logs, "stage1_64x192", "models", "best")
    run(["train.py", "--model_name", "stage2_96x320", "--height", "96", "--width", "320", "--num_epochs", "1",
         "--load_weights_folder", stage1, "--models_to_load", "encoder", "depth"]
        + TRAIN_FLAGS + data_flags)
    trained = os.path.join(logs, "stage2_96x320", "models", "best")

    results = {(name, mode): evaluate(weights, mode, data) for name, weights in (("untrained", untrained),
                                                                            ("trained", trained))
               for mode in ("mono", "stereo")}
    test_image = os.path.join(data, "2000_01_01", "2000_01_01_drive_0002_sync", "image_02", "data", "0000000010.jpg")
    run(["demo.py", "--image_path", test_image, "--load_weights_folder", trained,
         "--output_dir", os.path.join(args.out, "demo")])

    print("\n{:>18}".format("") + "".join("{:>10}".format(m) for m in METRICS))
    for (name, mode), metrics in results.items():
        print("{:>18}".format("{} {}".format(name, mode)) + "".join("{:10.3f}".format(metrics[m]) for m in METRICS))
    mono_gain = 1 - results["trained", "mono"]["abs_rel"] / results["untrained", "mono"]["abs_rel"]
    stereo_better = results["trained", "stereo"]["abs_rel"] < results["untrained", "stereo"]["abs_rel"]
    print("\nabs_rel (mono) {:.0%} below the untrained network's; stereo {}; {:.0f} s in all".format(
        mono_gain, "lower" if stereo_better else "NOT lower", time.time() - start))
    if mono_gain < 0.25 or not stereo_better:
        sys.exit("the example did not learn as expected")


if __name__ == "__main__":
    main()
