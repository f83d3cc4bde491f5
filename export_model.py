"""Export the depth network of a weights folder for Paddle Inference and as ONNX.

    python export_model.py --load_weights_folder DIR [--output PREFIX] [--height H --width W]
                           [--format paddle|onnx|all] [--precision int8 --calibration IMAGES]

writes, for --format paddle, PREFIX.json and PREFIX.pdiparams (the program and weights
paddle.jit.save writes); for onnx, PREFIX.onnx (that program converted by paddle2onnx, opset
17, for OpenVINO and ONNX Runtime); for all (the default), both, and removes the files of a
format not asked for left at PREFIX by an earlier export. Always PREFIX.info.json (input size,
encoder depth, whether the weights were trained with stereo, and the depth range, frames
and dataset of training when the weights record them; where the weights folder is and the
SHA-256 of its encoder and depth files, so that an export of other weights is never run).
--precision int8 adds PREFIX.int8.xml and .bin, an OpenVINO model quantized to int8 by NNCF
on up to --calibration_size images of the folder --calibration (quantize.py). The model maps a B x 3 x H x W
batch of RGB images in [0, 1] to the B x 1 x H x W sigmoid disparity of scale 0. By default
H x W is the size the encoder was trained at and PREFIX is DIR/inference/depth. inference.py
runs it (demo.py and evaluate_depth.py --exported PREFIX).
"""
import argparse
import hashlib
import importlib.util
import json
import os
import tempfile
import time

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import paddle

import layers
import network
import quantize

INFO_SUFFIX = ".info.json"
FINGERPRINT_FILES = ("encoder.pdparams", "depth.pdparams")  # what the exported network is made of
ONNX_SUFFIX = ".onnx"
FORMATS = {"paddle": ("paddle",), "onnx": ("onnx",), "all": ("paddle", "onnx")}
FORMAT_SUFFIXES = {"paddle": (".json", ".pdiparams"), "onnx": (ONNX_SUFFIX,),
                   "int8": (quantize.INT8_SUFFIX, quantize.INT8_SUFFIX[:-4] + ".bin")}
# paddle2onnx 2.1 converts this network at opsets 13 and 17; at 11 its constant folding fails
ONNX_OPSET = 17
# what the weights record that prediction needs, written to the info file when known
RECORDED_INFO = ("min_depth", "max_depth", "frame_ids", "dataset", "resize", "stereo_scale")


def load_net_and_info(folder):
    """network.DepthNet in evaluation mode with the weights of `folder`, and a dict of
    the encoder's depth (num_layers), height, width and use_stereo (None when absent), plus
    RECORDED_INFO entries the weights record."""
    net, record = network.load_depth_net(folder)
    info = {k: record[k] for k in ("height", "width", "use_stereo", "num_layers")}
    info.update({k: record[k] for k in RECORDED_INFO if record[k] is not None})
    for key in ("height", "width"):
        if info[key] is None:
            raise ValueError("{} has no '{}' entry: it is not an encoder saved by training or "
                             "by tools/convert_weights.py".format(os.path.join(folder, "encoder.pdparams"), key))
        info[key] = int(info[key])
    if info["use_stereo"] is not None:
        info["use_stereo"] = bool(info["use_stereo"])
    return net, info


def check_size(height, width):
    """The encoder halves the size five times and the decoder doubles it back."""
    for name, value in (("--height", height), ("--width", width)):
        if value <= 0 or value % 32:
            raise ValueError("{} {}: must be a positive multiple of 32".format(name, value))


def progress(message):
    print("-> " + message, flush=True)


class ExportError(ValueError):
    """The network cannot be converted (paddle2onnx missing or failing): the scripts print it."""


def onnx_installed():
    return importlib.util.find_spec("paddle2onnx") is not None


def to_onnx(program_prefix, output):
    """Convert the Paddle program at `program_prefix` to the ONNX file `output`."""
    if not onnx_installed():
        raise ExportError("the ONNX export needs paddle2onnx (pip install -r requirements.txt), or "
                          "export for Paddle Inference only with --format paddle")
    import paddle2onnx

    progress("converting to ONNX with paddle2onnx (opset {}, a few seconds)".format(ONNX_OPSET))
    partial = output + ".part"
    try:
        paddle2onnx.export(program_prefix + ".json", program_prefix + ".pdiparams", partial,
                           opset_version=ONNX_OPSET, auto_upgrade_opset=False)
    except Exception as err:  # paddle2onnx raises anything, or logs and writes nothing
        problem = "could not convert the traced network to {}: {}".format(output, err)
    else:
        problem = None if os.path.isfile(partial) else \
            "wrote no ONNX file {} (see its messages above)".format(output)
    if problem:
        if os.path.isfile(partial):
            os.remove(partial)
        raise ExportError("paddle2onnx " + problem)
    os.replace(partial, output)


def export(folder, output, height=None, width=None, formats=FORMATS["all"], calibration=None,
           calibration_size=32):
    """Export the network of the weights folder `folder` to the prefix `output` in the
    `formats` ("paddle", "onnx"), and quantized to int8 on images of the folder `calibration`
    when given; returns the info written beside it, which also records where the weights are
    (relative to the export) and their fingerprint (check_fresh)."""
    net, info = load_net_and_info(folder)
    info["weights"] = os.path.relpath(os.path.abspath(folder), os.path.dirname(os.path.abspath(output)))
    info["weights_sha256"] = weights_fingerprint(folder)
    info["height"] = height or info["height"]
    info["width"] = width or info["width"]
    check_size(info["height"], info["width"])
    if calibration:
        if "onnx" not in formats:
            raise ValueError("--precision int8 quantizes the ONNX export: use --format onnx or all")
        images = quantize.calibration_images(calibration, info["height"], info["width"], calibration_size,
                                             info.get("resize", "lanczos"))
        formats = formats + ("int8",)
    spec = [paddle.static.InputSpec([None, 3, info["height"], info["width"]], "float32", "images")]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    for stale in (output + s for f in FORMAT_SUFFIXES if f not in formats for s in FORMAT_SUFFIXES[f]):
        if os.path.isfile(stale):  # from an earlier export, maybe of another size
            os.remove(stale)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(output))) as scratch:
        progress("tracing the network into a static program (paddle.jit.save)")
        start = time.time()
        if "paddle" in formats:
            paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), output)
        if "onnx" in formats:
            program = os.path.join(scratch, "depth")
            with layers.static_upsample("resize"):  # one Resize node, fast in OpenVINO
                paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), program)
            to_onnx(program, output + ONNX_SUFFIX)
        if "int8" in formats:
            progress("quantizing to int8 with NNCF on {} images of {}".format(len(images), calibration))
            quantize.quantize(output + ONNX_SUFFIX, output + quantize.INT8_SUFFIX, images)
        progress("exported in {:.1f} s".format(time.time() - start))
    with open(output + INFO_SUFFIX, "w") as f:
        json.dump(info, f, indent=2)
    return info


def default_prefix(folder):
    return os.path.join(folder, "inference", "depth")


def weights_fingerprint(folder):
    """SHA-256 of the contents of the weights files of `folder` that an export is made of.
    File times cannot tell an export's freshness: cp -p, rsync and unzip keep them."""
    digest = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        with open(os.path.join(folder, name), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def exported_from(prefix, info):
    """The weights folder the export at `prefix` was made from, when its info records it."""
    if not isinstance(info.get("weights"), str):
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(prefix)), info["weights"]))


def reexport_command(prefix, info=None):
    folder = exported_from(prefix, info or {}) or "WEIGHTS_FOLDER"
    return "python export_model.py --load_weights_folder {} --output {}".format(folder, prefix)


def read_info(prefix):
    """The info file of the export at `prefix`; ValueError naming it, and the command that
    writes it again, when it is damaged."""
    path = prefix + INFO_SUFFIX
    try:
        with open(path) as f:
            info = json.load(f)
        problem = None if isinstance(info, dict) else "not a JSON object"
    except ValueError as err:  # also bytes that are not UTF-8
        info, problem = {}, str(err)
    if not problem and not all(type(info.get(k)) is int and info[k] > 0 for k in ("height", "width")):
        problem = "no positive integer height and width"
    if problem:
        raise ValueError("{} is damaged ({}): export the model again with {}".format(
            path, problem, reexport_command(prefix)))
    return info


def check_fresh(prefix, info):
    """ValueError when the weights folder the export at `prefix` was made from (see
    exported_from) now holds other weights: the export would run the old network."""
    folder = exported_from(prefix, info)
    if folder is None or "weights_sha256" not in info or not all(
            os.path.isfile(os.path.join(folder, name)) for name in FINGERPRINT_FILES):
        return  # an export older than fingerprints, or moved without its weights
    if weights_fingerprint(folder) != info["weights_sha256"]:
        raise ValueError("{} was exported from other weights than those now in {} (their SHA-256 "
                         "differs): export them again with {}".format(prefix, folder, reexport_command(prefix, info)))


def is_fresh(folder, prefix):
    """Whether the export at `prefix` exists and was made from the weights now in `folder`."""
    if not all(os.path.isfile(prefix + s) for s in FORMAT_SUFFIXES["paddle"] + (INFO_SUFFIX,)):
        return False
    try:
        return read_info(prefix).get("weights_sha256") == weights_fingerprint(folder)
    except ValueError:  # a damaged info file: export again
        return False


def export_if_stale(folder):
    """The prefix of the model exported from the weights folder `folder` into
    folder/inference/depth, exported first when absent or made from other weights (demo.py
    and evaluate_depth.py --exported without a path): in every format, or for Paddle
    Inference alone when paddle2onnx is not installed or cannot convert the network."""
    prefix = default_prefix(folder)
    if is_fresh(folder, prefix):
        return prefix
    progress("exporting the network of {} to {}".format(folder, prefix))
    if onnx_installed():
        try:
            export(folder, prefix)
            return prefix
        except ExportError as err:
            progress("no ONNX model ({}): exporting for Paddle Inference alone".format(err))
    else:
        progress("paddle2onnx is not installed: exporting for Paddle Inference alone")
    export(folder, prefix, formats=FORMATS["paddle"])
    return prefix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load_weights_folder", required=True,
                        help="folder with encoder.pdparams and depth.pdparams")
    parser.add_argument("--output", help="prefix of the exported files "
                        "(default: LOAD_WEIGHTS_FOLDER/inference/depth)")
    parser.add_argument("--height", type=int, help="input height (default: the encoder's)")
    parser.add_argument("--width", type=int, help="input width (default: the encoder's)")
    parser.add_argument("--format", choices=list(FORMATS), default="all",
                        help="paddle: Paddle Inference files; onnx: an ONNX file (OpenVINO, ONNX "
                        "Runtime); all: both")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                        help="int8: also an OpenVINO model quantized to int8 (PREFIX.int8.xml), "
                        "calibrated on the images of --calibration")
    parser.add_argument("--calibration", help="with --precision int8: a folder of the images the "
                        "network will see (JPEG/PNG, searched recursively)")
    parser.add_argument("--calibration_size", type=int, default=32,
                        help="with --precision int8: calibrate on this many images of the folder")
    args = parser.parse_args(argv)
    if (args.precision == "int8") != bool(args.calibration):
        parser.error("--precision int8 needs --calibration FOLDER, and --calibration needs --precision int8")
    if args.calibration_size < 1:
        parser.error("--calibration_size {}: must be at least 1".format(args.calibration_size))
    output = args.output or default_prefix(args.load_weights_folder)
    paddle.set_device("cpu")
    try:
        info = export(args.load_weights_folder, output, args.height, args.width, FORMATS[args.format],
                      args.calibration, args.calibration_size)
    except (OSError, ValueError, RuntimeError) as err:  # Paddle's own failures are RuntimeErrors
        parser.exit(1, "error: {}\n".format(err))
    print("exported ResNet-{num_layers} depth network for {height}x{width} inputs to".format(**info),
          output + ".*", "({}{})".format(args.format, ", int8" if args.calibration else ""))


if __name__ == "__main__":
    main()
