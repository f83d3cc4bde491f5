"""Run a depth network exported by export_model.py, with the fastest backend on the machine.

    from inference import predictor
    depth_net = predictor("models/weights_19/inference/depth")  # backend="auto", precision="fp32"
    disp = depth_net(images)  # float32 B x 3 x H x W in [0, 1] -> B x 1 x H x W sigmoid disparity

    # metres from the camera's height above the road (metric_depth.py; K normalised as in datasets/)
    from layers import disp_to_depth
    from metric_depth import camera_matrix, ground_scale
    depth = disp_to_depth(disp, 0.1, 100)[1][0, 0]
    K_px = camera_matrix(K, depth.shape[1], depth.shape[0], image_size=image.size)  # the PIL image before resizing
    depth_m = depth * ground_scale(depth, K_px, camera_height=1.65)

Backends, in the order "auto" tries them on the CPU (fastest first, as measured on a 2-core
Xeon with AVX-512: DEVELOPERS.md): OpenVINO and ONNX Runtime run PREFIX.onnx, Paddle
Inference (oneDNN) runs PREFIX.json and PREFIX.pdiparams. On a GPU, "auto" tries Paddle
Inference, then ONNX Runtime's CUDA provider. A backend whose package is not installed, or
whose file was not exported, is skipped. precision="bf16" (OpenVINO or Paddle Inference, on
CPUs with bfloat16 instructions) computes in bfloat16: 2-3x faster here, disparities
about 2e-4 off. precision="int8" (OpenVINO) runs the PREFIX.int8.xml model that
export_model.py --precision int8 quantizes (quantize.py). `depth_net.info` holds what export_model.py recorded: height, width (the only
input size the model takes), num_layers, use_stereo, the weights' folder and fingerprint, and
what the weights record for prediction (min_depth, max_depth, frame_ids, dataset, resize,
stereo_scale: export_model.RECORDED_INFO); `depth_net.backend` the backend used.
"""
import importlib
import json
import os

import numpy as np

import cpu_threads
from export_model import INFO_SUFFIX, ONNX_SUFFIX, check_fresh, read_info, reexport_command
from quantize import INT8_SUFFIX

PADDLE_SUFFIXES = (".json", ".pdmodel")  # PIR programs, and the older format
CPU_ORDER = ("openvino", "onnxruntime", "paddle")
GPU_ORDER = ("paddle", "onnxruntime")
BACKENDS = CPU_ORDER
PRECISIONS = ("fp32", "bf16", "int8")


class BackendUnavailable(ValueError):
    """The backend asked for cannot run here (package, file, device or precision missing)."""


class DamagedExport(ValueError):
    """An exported file a backend cannot load: names it and the command that writes it again."""

    def __init__(self, paths, error, info):
        paths = (paths,) if isinstance(paths, str) else tuple(paths)
        super().__init__("cannot load {} ({}: {}): {} damaged; export the model again with {}".format(
            " or ".join(paths), type(error).__name__, " ".join(str(error).split())[:300],
            "the file is" if len(paths) == 1 else "one of these files is", reexport_command(model_prefix(paths[0]), info)))


def model_prefix(path):
    """The prefix export_model.py wrote, from the prefix itself or one of its files."""
    for suffix in (INT8_SUFFIX,) + PADDLE_SUFFIXES + (".pdiparams", ONNX_SUFFIX, INFO_SUFFIX):
        if path.endswith(suffix) and os.path.isfile(path):
            return path[:-len(suffix)]
    return path


def exported_formats(path):
    """{"paddle": (program, weights), "onnx": file, "int8": file} for the formats exported at `path` (a
    prefix or one of its files), and the info file; FileNotFoundError when there is none."""
    prefix = model_prefix(path)
    formats = {}
    programs = [prefix + s for s in PADDLE_SUFFIXES if os.path.isfile(prefix + s)]
    if programs and os.path.isfile(prefix + ".pdiparams"):
        formats["paddle"] = (programs[0], prefix + ".pdiparams")
    if os.path.isfile(prefix + ONNX_SUFFIX):
        formats["onnx"] = prefix + ONNX_SUFFIX
    if os.path.isfile(prefix + INT8_SUFFIX):
        formats["int8"] = prefix + INT8_SUFFIX
    info = prefix + INFO_SUFFIX
    if not formats or not os.path.isfile(info):
        missing = info if formats else "{0}.json and .pdiparams, or {0}.onnx,".format(prefix)
        raise FileNotFoundError("no exported model at {}: {} missing (export one with python "
                                "export_model.py --load_weights_folder DIR --output {})".format(
                                    path, missing, prefix))
    return formats, info


def installed(backend):
    """Whether the backend's Python package (named like it) can be imported."""
    try:
        importlib.import_module(backend)
    except ImportError:
        return False
    return True


class ExportedDepthNet:
    """An exported depth network called like the eager one; subclasses run one backend."""

    backend = None
    file_format = None

    @classmethod
    def format_for(cls, precision):
        """The exported format this backend reads to run in `precision`."""
        return cls.file_format

    def __init__(self, files, info, device, precision, threads):
        self.info = info
        self.device, self.precision = device, precision
        self.threads = threads or cpu_threads.num_threads()
        # on the CPU a batch runs image by image: activations of one image stay in the caches
        # (measured with Paddle Inference at 640x192 and 1024x320: 20-40% less time per image
        # than batches of 16)
        self.images_per_run = 1 if device == "cpu" else None
        try:
            self._load(files)
        except (BackendUnavailable, DamagedExport):
            raise
        except Exception as err:  # each backend raises its own kinds for a damaged file
            raise DamagedExport(files, err, info) from None  # Paddle's program and weights: either

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = (3, self.info["height"], self.info["width"])
        if images.ndim != 4 or images.shape[1:] != expected or not len(images):
            raise ValueError("the exported model takes B x {} x {} x {} images, not {}".format(
                *expected, "x".join(map(str, images.shape))))
        step = self.images_per_run or len(images)
        return np.concatenate([self._run(images[i:i + step]) for i in range(0, len(images), step)])

    def __repr__(self):
        return "{} {} on {} ({} threads)".format(self.backend, self.precision, self.device, self.threads)


class PaddleDepthNet(ExportedDepthNet):
    """Paddle Inference, with oneDNN on the CPU (bf16 through oneDNN's bfloat16 kernels)."""

    backend, file_format = "paddle", "paddle"
    use_onednn = True

    def _load(self, files):
        from paddle import inference
        from paddle.base import core

        if self.precision == "int8":
            raise BackendUnavailable("--precision int8: the int8 model runs on OpenVINO only")
        program = files[0]
        # parsed here first: Paddle's own error on a damaged program names no file (PIR .json)
        # or is a segmentation fault (the older protobuf .pdmodel)
        # (a .pdmodel damaged where its fields still parse is not caught)
        from google.protobuf.message import DecodeError
        from paddle.base.proto.framework_pb2 import ProgramDesc
        try:
            if program.endswith(".json"):
                with open(program) as f:
                    json.load(f)
            else:
                with open(program, "rb") as f:
                    ProgramDesc.FromString(f.read())
        except (ValueError, DecodeError) as err:  # ValueError: JSON and UTF-8 errors
            raise DamagedExport(program, err, self.info) from None
        config = inference.Config(*files)
        config.disable_glog_info()
        if self.device == "gpu":
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(self.threads)
            if self.use_onednn:
                config.enable_mkldnn()
                if self.precision == "bf16":
                    if not core.supports_bfloat16_fast_performance():
                        raise BackendUnavailable("--precision bf16: this CPU has no bfloat16 "
                                                 "instructions (AVX-512 BF16) for Paddle Inference")
                    config.enable_mkldnn_bfloat16()
            else:
                config.disable_mkldnn()
        self._predictor = inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def _run(self, images):
        self._input.reshape(list(images.shape))
        self._input.copy_from_cpu(images)
        self._predictor.run()
        return self._output.copy_to_cpu()


class PlainCpuPaddleDepthNet(PaddleDepthNet):
    """Paddle Inference without oneDNN (its plain CPU kernels): for comparisons."""

    use_onednn = False


class OnnxRuntimeDepthNet(ExportedDepthNet):
    """ONNX Runtime on the PREFIX.onnx file (CUDA provider on a GPU)."""

    backend, file_format = "onnxruntime", "onnx"

    def _load(self, path):
        import onnxruntime

        if self.precision != "fp32":
            raise BackendUnavailable("--precision {}: ONNX Runtime runs this model in fp32 only "
                                     "(use --backend openvino or paddle)".format(self.precision))
        provider = "CUDAExecutionProvider" if self.device == "gpu" else "CPUExecutionProvider"
        if provider not in onnxruntime.get_available_providers():
            raise BackendUnavailable("ONNX Runtime has no {} here (install onnxruntime-gpu for "
                                     "GPUs)".format(provider))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(path, options, providers=[provider])
        self._input = self._session.get_inputs()[0].name

    def _run(self, images):
        return self._session.run(None, {self._input: images})[0]


class OpenVinoDepthNet(ExportedDepthNet):
    """OpenVINO on the PREFIX.onnx file (it cannot read PIR programs), or PREFIX.int8.xml in
    int8, compiled for one image."""

    backend, file_format = "openvino", "onnx"
    # OpenVINO's own default on CPUs with AVX-512 BF16 is bf16: float32 has to be asked for;
    # in the int8 model what is not quantized runs in float32
    PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

    @classmethod
    def format_for(cls, precision):
        return "int8" if precision == "int8" else cls.file_format

    def _load(self, path):
        import openvino

        if self.device != "cpu":
            raise BackendUnavailable("OpenVINO runs on the CPU here (its GPU device is Intel "
                                     "graphics, not CUDA)")
        core = openvino.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendUnavailable("--precision bf16: OpenVINO finds no bfloat16 support on this "
                                     "CPU (its OPTIMIZATION_CAPABILITIES lack BF16)")
        model = core.read_model(path)
        model.reshape([1, 3, self.info["height"], self.info["width"]])  # static shapes run faster
        self.images_per_run = 1
        self._compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": self.PRECISION_HINTS[self.precision],
            "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()

    def _run(self, images):
        return self._request.infer([images])[0].copy()


EXPORT_FLAGS = {"paddle": "--format paddle", "onnx": "--format onnx",
                "int8": "--precision int8 --calibration IMAGES"}
CLASSES = {"paddle": PaddleDepthNet, "onnxruntime": OnnxRuntimeDepthNet, "openvino": OpenVinoDepthNet}


def backend_order(device):
    return GPU_ORDER if device == "gpu" else CPU_ORDER


def available_backends(path, device="cpu"):
    """The backends that could run the model at `path` on `device`, fastest first: package
    installed and the file it reads exported."""
    formats, _ = exported_formats(path)
    return [b for b in backend_order(device) if CLASSES[b].file_format in formats and installed(b)]


def predictor(path, backend="auto", device="cpu", precision="fp32", threads=None, use_onednn=True):
    """A callable mapping a float32 B x 3 x H x W batch in [0, 1] (NumPy) to its B x 1 x H x W
    disparity, from the model export_model.py wrote at `path`. backend: "auto" (the fastest
    available that supports `precision`), "openvino", "onnxruntime" or "paddle"; device: "cpu"
    or "gpu"; precision: "fp32", "bf16" or "int8"; threads defaults to OMP_NUM_THREADS (cpu_threads.py
    sets it to the available cores); use_onednn=False runs Paddle Inference's plain kernels."""
    if device not in ("cpu", "gpu"):
        raise ValueError("device {!r}: choose 'cpu' or 'gpu'".format(device))
    if precision not in PRECISIONS:
        raise ValueError("--precision {}: choose from {}".format(precision, ", ".join(PRECISIONS)))
    formats, _ = exported_formats(path)
    info = read_info(model_prefix(path))
    check_fresh(model_prefix(path), info)
    classes = dict(CLASSES, paddle=PaddleDepthNet if use_onednn else PlainCpuPaddleDepthNet)
    if backend != "auto":
        if backend not in CLASSES:
            raise ValueError("--backend {}: choose from auto, {}".format(backend, ", ".join(BACKENDS)))
        if not installed(backend):
            raise BackendUnavailable("--backend {}: the {} package is not installed (pip install -r "
                                     "requirements.txt)".format(backend, backend))
        cls = classes[backend]
        file_format = cls.format_for(precision)
        if file_format not in formats:
            raise BackendUnavailable("--backend {} reads the {} export, which {} lacks (python "
                                     "export_model.py {})".format(
                                         backend, file_format, model_prefix(path), EXPORT_FLAGS[file_format]))
        return cls(formats[file_format], info, device, precision, threads)
    reasons = []
    for name in backend_order(device):
        cls = classes[name]
        if not installed(name):
            reasons.append("{}: not installed".format(name))
            continue
        file_format = cls.format_for(precision)
        if file_format not in formats:
            reasons.append("{}: no {} export".format(name, file_format))
            continue
        try:
            return cls(formats[file_format], info, device, precision, threads)
        except BackendUnavailable as err:
            reasons.append("{}: {}".format(name, err))
    raise BackendUnavailable("no backend can run {} on the {} in {} ({})".format(
        model_prefix(path), device, precision, "; ".join(reasons)))
