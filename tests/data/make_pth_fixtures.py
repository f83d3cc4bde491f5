"""Writes the PyTorch fixtures of tests/test_torch_weights.py and tests/test_convert_weights.py.

The test suite never imports torch; this script does, once, to produce real torch.save files:

    cd <project root> && /path/to/venv-with-torch/bin/python tests/data/make_pth_fixtures.py /path/to/monodepth2

(the second argument is a checkout of the PyTorch Monodepth2, whose networks give the
reference weight names and shapes). It writes, next to itself:

- ``tiny_zip.pth`` / ``tiny_legacy.pth``: the same small state dict in torch's zip format
  and in the legacy format of torch < 1.6. It mixes dtypes (float32/64/16, bfloat16,
  int64/32/16/8, uint8, bool), a 0-d tensor, an empty one, a Parameter, and views that
  share one storage with a non-zero offset, transposed strides and a zero stride, plus
  the plain ``height``/``width``/``use_stereo`` entries the reference adds to encoder.pth.
- ``tiny_expected.npz``: the arrays those files hold (bfloat16 widened to float32).
- ``ref_weights/{encoder,depth,pose}.pth`` and ``ref_weights/adam.pth`` (of a tiny model):
  a ResNet-18 reference weights folder as the reference trainer saves it (no
  pose_encoder.pth, to show that any subset is accepted). ``resnet18_legacy.pth``: a torchvision ResNet-18
  state dict in the legacy format, like the old ``resnet18-5c106cde.pth``.
  To stay a few kilobytes these hold the true names and shapes but cheap values, see
  ``pattern_state_dict``.
"""
import collections
import os
import sys
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PATTERN_LENGTH = 1024


def pattern_state_dict(state_dict):
    """`state_dict` with cheap values that the tests rebuild with NumPy alone.

    A float tensor's last axis counts up from crc32(name) % (PATTERN_LENGTH - length + 1),
    its leading axes repeat it; all are views of one storage, so the file stays small.
    Other tensors (num_batches_tracked) become 7.
    """
    base = torch.arange(PATTERN_LENGTH, dtype=torch.float32)
    out = collections.OrderedDict()
    for name, tensor in state_dict.items():
        if tensor.dtype == torch.float32:
            length = tensor.shape[-1]
            start = zlib.crc32(name.encode()) % (PATTERN_LENGTH - length + 1)
            out[name] = base[start:start + length].expand(*tensor.shape)
        else:
            out[name] = torch.full_like(tensor, 7)
    return out


def tiny_state_dict():
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 6, generator=gen)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3, generator=gen)
    sd["conv.bias"] = torch.randn(4, generator=gen)
    sd["bn.weight"] = torch.rand(4, generator=gen)
    sd["bn.bias"] = torch.randn(4, generator=gen)
    sd["bn.running_mean"] = torch.randn(4, generator=gen)
    sd["bn.running_var"] = torch.rand(4, generator=gen) + 0.5
    sd["bn.num_batches_tracked"] = torch.tensor(12345678901, dtype=torch.int64)  # 0-d
    sd["fc.weight"] = torch.nn.Parameter(torch.randn(5, 4, generator=gen))
    sd["fc.bias"] = torch.randn(5, generator=gen, dtype=torch.float64)
    sd["shared"] = shared
    sd["shared_t"] = shared.t()                    # transposed strides
    sd["shared_slice"] = shared[1:, 2:5]           # storage offset 8, strides (6, 1)
    sd["shared_col"] = shared[:, 3]                # offset 3, stride 6
    sd["shared_rep"] = shared[2, 1:3].expand(3, 2)  # zero stride
    sd["empty"] = torch.zeros(0, 3)
    sd["half"] = torch.randn(2, 3, generator=gen).half()
    sd["bf16"] = torch.tensor([1.5, -2.25, 3.0e38, 1e-3]).bfloat16()
    sd["long"] = torch.tensor([-(2 ** 40), 0, 2 ** 62])
    sd["int"] = torch.tensor([-7, 2 ** 31 - 1], dtype=torch.int32)
    sd["short"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["char"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["byte"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["mask"] = torch.tensor([[True, False, True], [False, False, True]])
    sd["height"] = 192
    sd["width"] = 640
    sd["use_stereo"] = False
    return sd


def expected_arrays(sd):
    out = {}
    for name, value in sd.items():
        if isinstance(value, torch.Tensor):
            value = value.detach()
            out[name] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return out


def reference_state_dicts(ref_root):
    sys.path.insert(0, ref_root)
    import networks  # the reference's package

    encoder = networks.ResnetEncoder(18, pretrained=False)
    depth = networks.DepthDecoder(encoder.num_ch_enc, range(4))
    pose = networks.PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    return encoder.state_dict(), depth.state_dict(), pose.state_dict()


def adam_state_dict():
    """An Adam state after one step, as in adam.pth (of a tiny model, to stay small)."""
    model = torch.nn.Conv2d(2, 1, 1)
    adam = torch.optim.Adam(model.parameters(), 1e-4)
    model(torch.ones(1, 2, 1, 1)).sum().backward()
    adam.step()
    return adam.state_dict()


def main(ref_root):
    tiny = tiny_state_dict()
    torch.save(tiny, os.path.join(HERE, "tiny_zip.pth"))
    torch.save(tiny, os.path.join(HERE, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    np.savez(os.path.join(HERE, "tiny_expected.npz"), **expected_arrays(tiny))

    encoder, depth, pose = reference_state_dicts(ref_root)
    folder = os.path.join(HERE, "ref_weights")
    os.makedirs(folder, exist_ok=True)
    encoder = pattern_state_dict(encoder)
    encoder.update(height=192, width=640, use_stereo=True)  # what the reference trainer adds
    torch.save(encoder, os.path.join(folder, "encoder.pth"))
    torch.save(pattern_state_dict(depth), os.path.join(folder, "depth.pth"))
    torch.save(pattern_state_dict(pose), os.path.join(folder, "pose.pth"))
    torch.save(adam_state_dict(), os.path.join(folder, "adam.pth"))

    resnet = collections.OrderedDict(
        (name[len("encoder."):], value) for name, value in encoder.items() if name.startswith("encoder."))
    torch.save(pattern_state_dict(resnet), os.path.join(HERE, "resnet18_legacy.pth"),
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
