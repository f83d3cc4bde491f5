"""Options: the reference's names and defaults, and clear start-up errors."""
import pytest

import cpu_threads

from options import MonodepthOptions

REFERENCE_DEFAULTS = dict(
    model_name="mdp", split="eigen_zhou", num_layers=18, dataset="kitti", png=False, height=192,
    width=640, disparity_smoothness=1e-3, scales=[0, 1, 2, 3], min_depth=0.1, max_depth=100.0,
    use_stereo=False, frame_ids=[0, -1, 1], batch_size=12, learning_rate=1e-4, num_epochs=20,
    scheduler_step_size=15, v1_multiscale=False, avg_reprojection=False, disable_automasking=False,
    predictive_mask=False, no_ssim=False, weights_init="pretrained", pose_model_input="pairs",
    pose_model_type="separate_resnet", no_cuda=False, load_weights_folder=None,
    models_to_load=["encoder", "depth", "pose_encoder", "pose"], log_frequency=250, save_frequency=1,
    eval_stereo=False, eval_mono=False, disable_median_scaling=False, pred_depth_scale_factor=1,
    ext_disp_to_eval=None, eval_split="eigen", save_pred_disps=False, no_eval=False,
    eval_eigen_to_benchmark=False, eval_out_dir=None, post_process=False)


def test_defaults_are_the_reference_defaults():
    opt = MonodepthOptions().parse([])
    for name, value in REFERENCE_DEFAULTS.items():
        assert getattr(opt, name) == value, name
    assert opt.data_path.endswith("kitti_data") and opt.log_dir.endswith("tmp")
    # the reference's 12 loader workers would crowd a small machine: as many as it has cores
    assert opt.num_workers == cpu_threads.available_cores()


@pytest.mark.parametrize("args, message", [
    ("--height 100", "--height must be a positive multiple of 32"),
    ("--width 650", "--width must be a positive multiple of 32"),
    ("--frame_ids -1 0 1", "--frame_ids must start with 0"),
    ("--frame_ids 0", "needs --use_stereo"),
    ("--predictive_mask", "--predictive_mask needs --disable_automasking"),
    ("--scales 0 4", "--scales must be among 0 1 2 3"),
    ("--scales 1 2", "include 0"),
    ("--min_depth 10 --max_depth 5", "0 < --min_depth < --max_depth"),
    ("--batch_size 0", "--batch_size must be >= 1, got 0"),
    ("--num_epochs -2", "--num_epochs must be >= 1, got -2"),
    ("--num_workers -1", "--num_workers must be >= 0, got -1"),
    ("--learning_rate nan", "--learning_rate must be > 0, got nan"),
    ("--learning_rate 0", "--learning_rate must be > 0, got 0.0"),
    ("--learning_rate inf", "--learning_rate must be > 0, got inf"),
    ("--scheduler_step_size 0", "--scheduler_step_size must be >= 1"),
    ("--log_frequency 0", "--log_frequency must be >= 1"),
    ("--save_frequency 0", "--save_frequency must be >= 1"),
    ("--checkpoint_minutes -1", "--checkpoint_minutes must be >= 0"),
    ("--checkpoint_minutes nan", "--checkpoint_minutes must be >= 0, got nan"),
    ("--disparity_smoothness -0.1", "--disparity_smoothness must be >= 0"),
    ("--max_depth nan", "--max_depth must be > 0, got nan"),
    ("--pred_depth_scale_factor 0", "--pred_depth_scale_factor must be > 0"),
    ("--seed -1", "--seed must be >= 0"),
    ("--seed 4294967296", "--seed must be below 2**32"),
    ("--num_gpus 0", "--num_gpus must be >= 1"),
    ("--visualdl_frequency 0", "--visualdl_frequency must be >= 1"),
    ("--resize bicubic", "invalid choice: 'bicubic'"),
])
def test_inconsistent_options_stop_with_a_usage_error(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        MonodepthOptions().parse(args.split())
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_consistent_variants_parse():
    assert MonodepthOptions().parse("--num_layers 34 --pose_model_type posecnn".split()).num_layers == 34
    assert MonodepthOptions().parse("--frame_ids 0 --use_stereo --num_layers 152".split()).use_stereo


def test_flags_of_the_published_paddle_port_parse():
    opt = MonodepthOptions().parse("--weights_init weights/resnet18-pytorch --num_gpus 1 --freeze_bn "
                                   "--visualdl_frequency 2000 --resize nearest".split())
    assert (opt.weights_init, opt.num_gpus, opt.freeze_bn, opt.visualdl_frequency, opt.resize) == (
        "weights/resnet18-pytorch", 1, True, 2000, "nearest")
    assert MonodepthOptions().parse(["--weights_init", "paddle_pretrained"]).weights_init == "paddle_pretrained"
    defaults = MonodepthOptions().parse([])
    assert (defaults.resize, defaults.freeze_bn, defaults.visualdl_frequency) == ("lanczos", False, None)
