"""Convert PyTorch Monodepth2 weights to Paddle (PyTorch need not be installed).

    python tools/convert_weights.py SRC_FOLDER DST_FOLDER
        a reference weights folder (encoder.pth, depth.pth, pose_encoder.pth, pose.pth,
        predictive_mask.pth: whichever exist) to a folder of <name>.pdparams that
        --load_weights_folder, evaluation and the demo accept.
    python tools/convert_weights.py resnet18-f37072fd.pth [DST]
    python tools/convert_weights.py resnet18-pytorch.h5 [DST]
        a torchvision ImageNet ResNet (any depth; a .pth, or the published Paddle port's
        HDF5 copy of torchvision's ResNet-18) to the file --weights_init pretrained
        loads. DST is a .pdparams file or a folder (resnet{N}.pdparams inside); by default
        the project's weights/ folder (or $MONODEPTH2_PRETRAINED_DIR).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cpu_threads  # noqa: E402,F401  (before paddle: its threads, and no import warnings)
import numpy as np  # noqa: E402

import network  # noqa: E402
from torch_weights import load_pth, load_torch_names, pretrained_dir, resnet_depth, to_paddle_state_dict  # noqa: E402
from utils import check_tensor, fitting_weights, save_atomic  # noqa: E402

NETWORKS = ("encoder", "depth", "pose_encoder", "pose", "predictive_mask")


def convert_folder(src, dst):
    """Convert each network file of the reference weights folder `src` into `dst`."""
    if dst is None:
        raise ValueError("converting the weights folder {} needs a destination folder".format(src))
    found = [n for n in NETWORKS if os.path.isfile(os.path.join(src, n + ".pth"))]
    if not found:
        raise ValueError("{} holds none of {}".format(src, ", ".join(n + ".pth" for n in NETWORKS)))
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ValueError("destination {} exists and is not a folder".format(dst))
    converted = {name: to_paddle_state_dict(load_pth(os.path.join(src, name + ".pth"))) for name in found}
    check_folder(converted, src)
    os.makedirs(dst, exist_ok=True)
    for name, state_dict in converted.items():
        target = os.path.join(dst, name + ".pdparams")
        save_atomic(state_dict, target)
        print("wrote {} ({} entries)".format(target, len(state_dict)))
    if os.path.isfile(os.path.join(src, "adam.pth")):
        print("skipped adam.pth: optimiser state does not transfer to Paddle's Adam")


def check_folder(converted, src):
    """Before anything is written: every tensor of the converted files ({network: state dict})
    holds finite numbers, and the encoder and depth decoder fit the networks that prediction
    builds from them (utils.fitting_weights, as every load checks)."""
    for name, state_dict in converted.items():
        for key, value in state_dict.items():
            if isinstance(value, np.ndarray):
                check_tensor(value, key, os.path.join(src, name + ".pth"))
    if "encoder" not in converted:
        return
    path = os.path.join(src, "encoder.pth")
    record = network.state_record(converted["encoder"], path)
    net = network.DepthNet(record["num_layers"], record["kind"])
    fitting_weights(net.encoder, converted["encoder"], path)
    if "depth" in converted:
        fitting_weights(net.decoder, converted["depth"], os.path.join(src, "depth.pth"))


def convert_resnet(src, dst):
    """Convert the torchvision ResNet file `src` (.pth, or the published Paddle port's .h5)
    into the ImageNet initialisation."""
    state_dict = load_torch_names(src)
    if any(name.startswith("encoder.") for name in state_dict):
        raise ValueError("{} is a reference network file: convert the folder that holds it "
                         "(python tools/convert_weights.py SRC_FOLDER DST_FOLDER)".format(src))
    if not ("conv1.weight" in state_dict and "fc.weight" in state_dict):
        raise ValueError("{} is neither a torchvision ResNet (no conv1.weight and fc.weight) "
                         "nor a weights folder".format(src))
    depth = resnet_depth(state_dict)
    converted = to_paddle_state_dict(state_dict)
    fitting_weights(network.build_encoder("resnet", depth).encoder, converted, src)
    dst = pretrained_dir() if dst is None else dst
    if not dst.endswith(".pdparams"):
        if os.path.exists(dst) and not os.path.isdir(dst):
            raise ValueError("destination {} exists and is not a folder".format(dst))
        os.makedirs(dst, exist_ok=True)
        dst = os.path.join(dst, "resnet{}.pdparams".format(depth))
    elif not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise ValueError("the folder of {} does not exist".format(dst))
    save_atomic(converted, dst)
    print("wrote {} (ImageNet ResNet-{})".format(dst, depth))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="reference weights folder or torchvision ResNet .pth / .h5 file")
    parser.add_argument("dst", nargs="?", help="Paddle weights folder or .pdparams file")
    args = parser.parse_args(argv)
    try:
        if os.path.isdir(args.src):
            convert_folder(args.src, args.dst)
        else:
            convert_resnet(args.src, args.dst)
    except (OSError, ValueError) as err:
        parser.exit(1, "error: {}\n".format(err))


if __name__ == "__main__":
    main()
