"""A short end-to-end run on a synthetic drive: render, train, fine-tune, export ground truth,
evaluate, export for Paddle Inference and run the demo, as a user chains them."""
import json
import os
import sys

import numpy as np

import demo
import evaluate_depth
import export_model
from conftest import ROOT
from export_gt_depth import export_gt_depths
from options import MonodepthOptions
from trainer import Trainer

sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_synthetic_kitti import generate_dataset  # noqa: E402


def test_render_train_fine_tune_evaluate_export_and_demo(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    generate_dataset(data, num_frames=8, width=192, height=64, test_frames=3, workers=1)
    splits = tmp_path / "splits"
    (splits / "synthetic").mkdir(parents=True)
    (splits / "synthetic" / "test_files.txt").write_text(open(os.path.join(data, "splits", "test_files.txt")).read())
    export_gt_depths(data, "synthetic", str(splits))

    common = ["--data_path", data, "--split", os.path.join(data, "splits"), "--log_dir", str(tmp_path / "logs"),
              "--frame_ids", "0", "-1", "1", "--use_stereo", "--weights_init", "scratch", "--min_depth", "1",
              "--batch_size", "4", "--num_workers", "0", "--seed", "1"]
    Trainer(MonodepthOptions().parse(common + ["--model_name", "s1", "--height", "64", "--width", "192",
                                               "--num_epochs", "1"])).train()
    stage1 = str(tmp_path / "logs" / "s1" / "models" / "best")
    Trainer(MonodepthOptions().parse(common + ["--model_name", "s2", "--height", "96", "--width", "320",
                                               "--num_epochs", "1", "--load_weights_folder", stage1])).train()
    weights = str(tmp_path / "logs" / "s2" / "models" / "weights_0")

    monkeypatch.setattr(evaluate_depth, "SPLITS_DIR", str(splits))
    for mode in ("mono", "stereo"):
        result = evaluate_depth.evaluate(MonodepthOptions().parse(
            ["--data_path", data, "--load_weights_folder", weights, "--eval_split", "synthetic",
             "--eval_" + mode, "--min_depth", "1", "--num_workers", "0"]))
        assert result["num_images"] == 3 and 0 < result["metrics"]["abs_rel"] < 1
    saved = json.load(open(os.path.join(weights, "eval_depth_synthetic.json")))
    assert saved["mode"] == "stereo" and saved["min_depth"] == 1

    export_model.main(["--load_weights_folder", weights])
    image = os.path.join(data, "2000_01_01", "2000_01_01_drive_0002_sync", "image_02", "data", "0000000001.jpg")
    out = tmp_path / "demo"
    demo.main(["--image_path", image, "--exported", os.path.join(weights, "inference", "depth"),
               "--output_dir", str(out)])
    disp = np.load(out / "0000000001_disp.npy")
    assert disp.shape[-2:] == (96, 320) and np.isfinite(disp).all()
    assert os.path.isfile(out / "0000000001_disp.jpeg")
