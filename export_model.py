"""Export the depth network of a weights folder for Paddle Inference.

    python export_model.py --load_weights_folder DIR [--output PREFIX] [--height H --width W]

writes PREFIX.json and PREFIX.pdiparams (the program and weights paddle.jit.save writes)
and PREFIX.info.json (input size, encoder depth, whether the weights were trained with
stereo, and the depth range, frames and dataset of training when the weights record
them). The model maps a B x 3 x H x W batch of RGB images in [0, 1] to the B x 1 x H x W
sigmoid disparity of scale 0. By default H x W is the size the encoder was trained at and
PREFIX is DIR/inference/depth. inference.py runs it (demo.py --exported PREFIX).
"""
import argparse
import json
import os

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

import paddle

import network

INFO_SUFFIX = ".info.json"
# what the weights record that prediction needs, written to the info file when known
RECORDED_INFO = ("min_depth", "max_depth", "frame_ids", "dataset")


def load_depth_net(folder):
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


def export(folder, output, height=None, width=None):
    """Export the network of the weights folder `folder` to the prefix `output`; returns
    the info written beside it."""
    net, info = load_depth_net(folder)
    info["height"] = height or info["height"]
    info["width"] = width or info["width"]
    check_size(info["height"], info["width"])
    spec = [paddle.static.InputSpec([None, 3, info["height"], info["width"]], "float32", "images")]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), output)
    with open(output + INFO_SUFFIX, "w") as f:
        json.dump(info, f, indent=2)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load_weights_folder", required=True,
                        help="folder with encoder.pdparams and depth.pdparams")
    parser.add_argument("--output", help="prefix of the exported files "
                        "(default: LOAD_WEIGHTS_FOLDER/inference/depth)")
    parser.add_argument("--height", type=int, help="input height (default: the encoder's)")
    parser.add_argument("--width", type=int, help="input width (default: the encoder's)")
    args = parser.parse_args(argv)
    output = args.output or os.path.join(args.load_weights_folder, "inference", "depth")
    paddle.set_device("cpu")
    try:
        info = export(args.load_weights_folder, output, args.height, args.width)
    except (OSError, ValueError) as err:
        parser.exit(1, "error: {}\n".format(err))
    print("exported ResNet-{num_layers} depth network for {height}x{width} inputs to".format(**info),
          output + ".*")


if __name__ == "__main__":
    main()
