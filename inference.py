"""Run a depth network exported by export_model.py with Paddle Inference.

    from inference import predictor
    depth_net = predictor("models/weights_19/inference/depth", "cpu")
    disp = depth_net(images)  # float32 B x 3 x H x W in [0, 1] -> B x 1 x H x W sigmoid disparity

`depth_net.info` holds what export_model.py recorded: height, width (the only input
size the model takes), num_layers and use_stereo.
"""
import json
import os

import numpy as np
from paddle import inference

from cpu_threads import num_threads
from export_model import INFO_SUFFIX

MODEL_SUFFIXES = (".json", ".pdmodel")  # PIR programs, and the older format


def exported_files(path):
    """(program file, weights file, info file) of the exported model `path`, given as the
    prefix export_model.py wrote or as one of its files."""
    prefix = path
    for suffix in MODEL_SUFFIXES + (".pdiparams", INFO_SUFFIX):
        if path.endswith(suffix) and os.path.isfile(path):
            prefix = path[:-len(suffix)]
            break
    programs = [prefix + s for s in MODEL_SUFFIXES if os.path.isfile(prefix + s)]
    files = programs[:1] + [prefix + ".pdiparams", prefix + INFO_SUFFIX]
    missing = [f for f in files[1:] if not os.path.isfile(f)]
    if not programs or missing:
        raise FileNotFoundError("no exported model at {}: {} missing (export one with "
                                "python export_model.py --load_weights_folder DIR --output {})".format(
                                    path, " and ".join(missing or [prefix + ".json"]), prefix))
    return files


class ExportedDepthNet:
    """A Paddle Inference predictor of an exported depth network, called like the eager one."""

    def __init__(self, path, device="cpu", use_onednn=True, threads=None):
        program, params, info_file = exported_files(path)
        with open(info_file) as f:
            self.info = json.load(f)
        config = inference.Config(program, params)
        config.disable_glog_info()
        if device == "gpu":
            config.enable_use_gpu(256, 0)
        elif device == "cpu":
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or num_threads())
            if use_onednn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
        else:
            raise ValueError("device {!r}: choose 'cpu' or 'gpu'".format(device))
        # on the CPU a batch runs image by image: activations of one image stay in the caches
        # (measured at 640x192 and 1024x320: 20-40% less time per image than batches of 16)
        self.images_per_run = 1 if device == "cpu" else None
        self._predictor = inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = (3, self.info["height"], self.info["width"])
        if images.ndim != 4 or images.shape[1:] != expected or not len(images):
            raise ValueError("the exported model takes B x {} x {} x {} images, not {}".format(
                *expected, "x".join(map(str, images.shape))))
        step = self.images_per_run or len(images)
        return np.concatenate([self._run(images[i:i + step]) for i in range(0, len(images), step)])

    def _run(self, images):
        self._input.reshape(list(images.shape))
        self._input.copy_from_cpu(images)
        self._predictor.run()
        return self._output.copy_to_cpu()


def predictor(path, device="cpu", use_onednn=True, threads=None):
    """A callable mapping a float32 B x 3 x H x W batch in [0, 1] (NumPy) to its B x 1 x H x W
    disparity, run by Paddle Inference on `device` ('cpu' or 'gpu') from the model that
    export_model.py wrote at `path`. On the CPU, oneDNN is used unless `use_onednn` is False;
    `threads` defaults to OMP_NUM_THREADS, which cpu_threads.py sets to the available cores."""
    return ExportedDepthNet(path, device, use_onednn, threads)
