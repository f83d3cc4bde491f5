"""torch_weights: reading torch.save files without torch, and the torch-to-Paddle mapping.

The .pth fixtures in tests/data were written by torch (see tests/data/make_pth_fixtures.py);
the hostile or malformed files are assembled here, opcode by opcode, since torch would
never write them.
"""
import os
import pickle
import struct
import zipfile

import numpy as np
import paddle
import pytest

import torch_weights
from torch_weights import (RESNET_LAYOUTS, imagenet_weights_path, load_imagenet_weights,
                           load_pth, resnet_depth, to_paddle_state_dict)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TINY_FILES = ["tiny_zip.pth", "tiny_legacy.pth"]


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(DATA, "tiny_expected.npz")) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.mark.parametrize("filename", TINY_FILES)
def test_load_pth_matches_torch_exactly(filename, expected):
    sd = load_pth(os.path.join(DATA, filename))
    assert list(sd) == list(expected) + ["height", "width", "use_stereo"]  # order kept
    for name, want in expected.items():
        got = sd[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert sd["bn.num_batches_tracked"].shape == () and sd["bn.num_batches_tracked"] == 12345678901
    assert sd["bf16"].dtype == np.float32
    assert (sd["height"], sd["width"]) == (192, 640) and type(sd["height"]) is int
    assert sd["use_stereo"] is False


def test_views_of_one_storage_become_independent_arrays():
    sd = load_pth(os.path.join(DATA, "tiny_zip.pth"))
    shared = sd["shared"]
    np.testing.assert_array_equal(sd["shared_t"], shared.T)
    np.testing.assert_array_equal(sd["shared_slice"], shared[1:, 2:5])
    np.testing.assert_array_equal(sd["shared_col"], shared[:, 3])
    np.testing.assert_array_equal(sd["shared_rep"], np.tile(shared[2, 1:3], (3, 1)))
    for name in ("shared_t", "shared_slice", "shared_col", "shared_rep"):
        assert not np.shares_memory(sd[name], shared) and sd[name].flags.writeable


def test_load_pth_nested_containers_of_an_optimizer_state():
    sd = load_pth(os.path.join(DATA, "ref_weights", "adam.pth"))
    group = sd["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["params"] == [0, 1] and group["lr"] == 1e-4
    assert sorted(sd["state"]) == [0, 1]
    assert sd["state"][0]["exp_avg"].shape == (1, 2, 1, 1)
    assert sd["state"][1]["exp_avg"].dtype == np.float32


# --- files torch would not write -------------------------------------------------------

def _unicode(text):
    return b"X" + struct.pack("<I", len(text)) + text.encode()


def _int(value):
    return b"J" + struct.pack("<i", value)


def _tensor_pickle(size, stride, offset, numel, storage="FloatStorage"):
    """data.pkl of {"w": tensor} in torch's zip layout, with any size/stride/offset."""
    def ints(values):
        return b"(" + b"".join(_int(v) for v in values) + b"t"
    storage_id = (b"(" + _unicode("storage") + f"ctorch\n{storage}\n".encode() + _unicode("0")
                  + _unicode("cpu") + _int(numel) + b"tQ")
    args = (storage_id + _int(offset) + ints(size) + ints(stride) + b"\x89"
            + b"ccollections\nOrderedDict\n)R")
    return b"\x80\x02}" + _unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + args + b"tRs."


def _write_zip(path, pickled, storage=b""):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("anyname/data.pkl", pickled)
        archive.writestr("anyname/data/0", storage)
    return str(path)


def test_crafted_tensor_layout_is_honoured(tmp_path):
    storage = np.arange(6, dtype=np.float32).tobytes()
    path = _write_zip(tmp_path / "w.pth", _tensor_pickle((2, 2), (1, 2), 1, 6), storage)
    np.testing.assert_array_equal(load_pth(path)["w"], [[1, 3], [2, 4]])


@pytest.mark.parametrize("size, stride, offset, numel, storage_bytes, message", [
    ((3, 3), (3, 1), 0, 6, 24, "reaches element 8"),
    ((2,), (-1,), 1, 6, 24, "bad strides"),
    ((2,), (1,), 0, 6, 8, "storage holds 8 bytes, expected 24"),
])
def test_tensor_outside_its_storage_is_refused(tmp_path, size, stride, offset, numel,
                                               storage_bytes, message):
    path = _write_zip(tmp_path / "bad.pth", _tensor_pickle(size, stride, offset, numel),
                      bytes(storage_bytes))
    with pytest.raises(ValueError, match=message) as err:
        load_pth(path)
    assert path in str(err.value)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ("touch " + self.marker,)


@pytest.mark.parametrize("wrap_in_zip", [True, False])
def test_arbitrary_globals_are_refused_not_run(tmp_path, wrap_in_zip):
    marker = str(tmp_path / "pwned")
    pickled = pickle.dumps({"w": _Exploit(marker)}, protocol=2)
    path = str(tmp_path / "evil.pth")
    if wrap_in_zip:
        _write_zip(path, pickled)
    else:
        with open(path, "wb") as f:
            f.write(pickled)
    with pytest.raises(ValueError, match=r"refusing to load the global (posix|os)\.system") as err:
        load_pth(path)
    assert path in str(err.value)
    assert not os.path.exists(marker)


def test_unsupported_storage_type_is_refused(tmp_path):
    path = _write_zip(tmp_path / "u.pth", _tensor_pickle((2,), (1,), 0, 8, "UntypedStorage"), bytes(8))
    with pytest.raises(ValueError, match="torch.UntypedStorage"):
        load_pth(path)


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pth(path)


@pytest.mark.parametrize("filename", TINY_FILES)
def test_truncated_file_is_named(tmp_path, filename):
    with open(os.path.join(DATA, filename), "rb") as f:
        data = f.read()
    path = str(tmp_path / filename)
    with open(path, "wb") as f:
        f.write(data[:len(data) - 100])
    with pytest.raises(ValueError) as err:
        load_pth(path)
    assert path in str(err.value)


@pytest.mark.parametrize("content, message", [
    (b"height: 192\n", "not a file written by torch.save"),
    (pickle.dumps([1, 2], protocol=2), "not a PyTorch file"),
])
def test_non_torch_file_is_named(tmp_path, content, message):
    path = str(tmp_path / "other.pth")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match=message) as err:
        load_pth(path)
    assert path in str(err.value)


def test_zip_that_is_not_a_torch_file(tmp_path):
    path = str(tmp_path / "plain.zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="data.pkl"):
        load_pth(path)


def test_a_list_is_not_a_state_dict(tmp_path):
    path = _write_zip(tmp_path / "list.pth", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_pth(path)


# --- torch names to Paddle names -------------------------------------------------------

def test_to_paddle_state_dict_renames_transposes_and_drops():
    sd = load_pth(os.path.join(DATA, "tiny_zip.pth"))
    pd = to_paddle_state_dict(sd)
    assert "bn.num_batches_tracked" not in pd
    assert "bn.running_mean" not in pd and "bn.running_var" not in pd
    np.testing.assert_array_equal(pd["bn._mean"], sd["bn.running_mean"])
    np.testing.assert_array_equal(pd["bn._variance"], sd["bn.running_var"])
    assert pd["fc.weight"].shape == (4, 5) and pd["fc.weight"].flags.c_contiguous
    np.testing.assert_array_equal(pd["fc.weight"], sd["fc.weight"].T)
    for name in ("conv.weight", "conv.bias", "bn.weight", "shared_t", "mask", "height", "use_stereo"):
        assert pd[name] is sd[name]
    assert len(pd) == len(sd) - 1


def test_converted_linear_computes_what_torch_computes():
    sd = load_pth(os.path.join(DATA, "tiny_zip.pth"))
    pd = to_paddle_state_dict(sd)
    linear = paddle.nn.Linear(4, 5)
    missing, unexpected = linear.set_state_dict(
        {"weight": pd["fc.weight"], "bias": pd["fc.bias"].astype(np.float32)})
    assert not missing and not unexpected
    x = np.random.RandomState(0).standard_normal((3, 4)).astype(np.float32)
    want = x @ sd["fc.weight"].T + sd["fc.bias"]  # torch's nn.Linear
    np.testing.assert_allclose(linear(paddle.to_tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_only_2d_fc_weights_are_transposed():
    conv = np.zeros((8, 4, 1, 1), np.float32)
    square = np.arange(4.0).reshape(2, 2)
    pd = to_paddle_state_dict({"head.fc.weight": conv, "proj.weight": square, "encoder.fc.weight": square,
                               "running_mean": np.zeros(2)})
    assert pd["head.fc.weight"] is conv and pd["proj.weight"] is square
    np.testing.assert_array_equal(pd["encoder.fc.weight"], square.T)
    assert list(pd) == ["head.fc.weight", "proj.weight", "encoder.fc.weight", "_mean"]


# --- torchvision ResNets ---------------------------------------------------------------

def _resnet_keys(blocks, bottleneck, width=64):
    keys = {"conv1.weight": 0, "fc.weight": 0}
    for stage, count in enumerate(blocks, 1):
        for block in range(count):
            for conv in ("conv1", "conv2", "conv3") if bottleneck else ("conv1", "conv2"):
                keys[f"layer{stage}.{block}.{conv}.weight"] = 0
    keys["layer1.0.conv1.weight"] = np.zeros((width, 1, 1, 1))
    return keys


@pytest.mark.parametrize("depth", sorted(RESNET_LAYOUTS))
def test_resnet_depth_from_keys(depth):
    assert resnet_depth(_resnet_keys(*RESNET_LAYOUTS[depth])) == depth


def test_resnet_depth_of_a_torch_written_resnet18():
    assert resnet_depth(load_pth(os.path.join(DATA, "resnet18_legacy.pth"))) == 18


@pytest.mark.parametrize("keys, message", [
    (_resnet_keys((3, 4, 6, 3), True, width=128), "wide ResNet or ResNeXt"),
    (_resnet_keys((2, 2, 2, 2), True), r"\(2, 2, 2, 2\) blocks per stage, bottleneck"),
    ({"conv1.weight": 0}, r"\(0, 0, 0, 0\)"),
])
def test_resnet_depth_rejects_other_networks(keys, message):
    with pytest.raises(ValueError, match=message):
        resnet_depth(keys)


def test_imagenet_weights_path_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(torch_weights.PRETRAINED_DIR_ENV, raising=False)
    root = os.path.dirname(os.path.abspath(torch_weights.__file__))
    assert torch_weights.pretrained_dir() == os.path.join(root, "weights")
    assert os.path.isfile(os.path.join(root, "weights", "README.md"))
    monkeypatch.setattr(torch_weights, "OLD_PRETRAINED_DIR", str(tmp_path / "no_old_folder"))
    assert imagenet_weights_path(50) == os.path.join(root, "weights", "resnet50.pdparams")
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path))
    assert imagenet_weights_path(18) == os.path.join(str(tmp_path), "resnet18.pdparams")
    with pytest.raises(ValueError, match="ResNet-20"):
        imagenet_weights_path(20)


def test_pretrained_reads_weights_then_the_old_pretrained_folder(monkeypatch, tmp_path):
    """In weights/: the converted file, torchvision's download as is, the port's .h5; then
    pretrained/resnet{N}.pdparams, where the converter wrote before weights/ existed."""
    weights, old = tmp_path / "weights", tmp_path / "pretrained"
    weights.mkdir()
    old.mkdir()
    monkeypatch.delenv(torch_weights.PRETRAINED_DIR_ENV, raising=False)
    monkeypatch.setattr(torch_weights, "WEIGHTS_DIR", str(weights))
    monkeypatch.setattr(torch_weights, "OLD_PRETRAINED_DIR", str(old))
    files = {}
    files[old / "resnet18.pdparams"] = small_resnet_weights(4)
    paddle.save(files[old / "resnet18.pdparams"], str(old / "resnet18.pdparams"))
    files[weights / "resnet18-pytorch.h5"] = small_resnet_weights(5)
    write_port_h5(str(weights / "resnet18-pytorch.h5"), files[weights / "resnet18-pytorch.h5"])
    os.symlink(os.path.join(DATA, "resnet18_legacy.pth"), weights / "resnet18-f37072fd.pth")
    files[weights / "resnet18-f37072fd.pth"] = to_paddle_state_dict(load_pth(os.path.join(DATA, "resnet18_legacy.pth")))
    files[weights / "resnet18.pdparams"] = small_resnet_weights(6)
    paddle.save(files[weights / "resnet18.pdparams"], str(weights / "resnet18.pdparams"))
    for path in [weights / "resnet18.pdparams", weights / "resnet18-f37072fd.pth",
                 weights / "resnet18-pytorch.h5", old / "resnet18.pdparams"]:
        assert imagenet_weights_path(18) == str(path)
        found, loaded = torch_weights.imagenet_init("pretrained", 18)
        assert found == str(path)
        for name in ("conv1.weight", "fc.weight", "layer4.1.bn2._variance"):
            np.testing.assert_array_equal(loaded[name], files[path][name], err_msg=str(path))
        os.remove(path)
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path / "elsewhere"))  # replaces both
    paddle.save(small_resnet_weights(7), str(weights / "resnet18.pdparams"))
    paddle.save(small_resnet_weights(7), str(old / "resnet18.pdparams"))
    with pytest.raises(FileNotFoundError, match="none of resnet18.pdparams, resnet18-f37072fd.pth, "
                                                "resnet18-pytorch.h5 is in .*elsewhere"):
        load_imagenet_weights(18)


def test_missing_imagenet_weights_say_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_imagenet_weights(50)
    message = str(err.value)
    for part in (str(tmp_path / "resnet50.pdparams"),
                 "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                 "python tools/convert_weights.py resnet50-0676ba61.pth",
                 "MONODEPTH2_PRETRAINED_DIR"):
        assert part in message


def test_imagenet_weights_of_the_wrong_depth_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path))
    weights = to_paddle_state_dict(load_pth(os.path.join(DATA, "resnet18_legacy.pth")))
    paddle.save(weights, str(tmp_path / "resnet34.pdparams"))
    with pytest.raises(ValueError, match="ResNet-18 weights, not ResNet-34"):
        load_imagenet_weights(34)


# ---------------------------------------------------------------- other --weights_init files

def small_resnet_weights(seed):
    """A ResNet-18 state dict under Paddle's names, random values (numpy)."""
    from network import ResnetEncoder
    rng = np.random.RandomState(seed)
    return {k: rng.rand(*v.shape).astype(np.float32) for k, v in ResnetEncoder(18, False).encoder.state_dict().items()}


def write_port_h5(path, weights, group=None):
    """The published port's HDF5 layout, with h5py: torchvision names, fc weight as [out, in],
    a scalar num_batches_tracked per batch norm (optionally all under one group)."""
    import h5py
    with h5py.File(path, "w") as f:
        root = f.create_group(group) if group else f
        for name, value in weights.items():
            prefix, _, leaf = name.rpartition(".")
            if leaf == "_mean":
                root.create_dataset(prefix + ".running_mean", data=value)
                root.create_dataset(prefix + ".num_batches_tracked", data=np.int64(7))
            elif leaf == "_variance":
                root.create_dataset(prefix + ".running_var", data=value)
            else:
                root.create_dataset(name, data=value.T if name == "fc.weight" else value)


@pytest.mark.parametrize("group", [None, "resnet"])
def test_h5_files_written_by_h5py_read_as_paddle_weights(tmp_path, group):
    weights = small_resnet_weights(1)
    path = str(tmp_path / "resnet18-pytorch.h5")
    write_port_h5(path, weights, group)
    raw = torch_weights.load_torch_names(path)
    assert raw[("resnet." if group else "") + "fc.weight"].shape == (1000, 512)
    assert raw[("resnet." if group else "") + "bn1.num_batches_tracked"] == 7
    if group:
        raw = {k[len("resnet."):]: v for k, v in raw.items()}
    converted = to_paddle_state_dict(raw)
    assert sorted(converted) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


def test_weights_init_finds_pdparams_pth_and_h5_with_or_without_extension(tmp_path):
    weights = small_resnet_weights(2)
    write_port_h5(str(tmp_path / "a.h5"), weights)
    paddle.save(weights, str(tmp_path / "b.pdparams"))
    for stem in ("a", "b"):
        for given in (stem, stem + (".h5" if stem == "a" else ".pdparams")):
            path, state = torch_weights.imagenet_init(str(tmp_path / given), 18)
            assert path == str(tmp_path / (stem + (".h5" if stem == "a" else ".pdparams")))
            np.testing.assert_array_equal(state["layer4.1.bn2._variance"], weights["layer4.1.bn2._variance"])
            np.testing.assert_array_equal(state["fc.weight"], weights["fc.weight"])
    legacy = os.path.join(DATA, "resnet18_legacy.pth")
    path, from_pth = torch_weights.imagenet_init(legacy[:-len(".pth")], 18)
    assert path == legacy
    assert from_pth["fc.weight"].shape == (512, 1000) and "bn1._mean" in from_pth
    assert torch_weights.imagenet_init("scratch", 18) is None and torch_weights.imagenet_init(False, 18) is None


def test_weights_init_errors_name_the_value_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--weights_init .*nope: neither pretrained.*nope\.h5"):
        torch_weights.imagenet_init(str(tmp_path / "nope"), 18)
    paddle.save(small_resnet_weights(3), str(tmp_path / "r18.pdparams"))
    with pytest.raises(ValueError, match="holds ResNet-18 weights: pass --num_layers 18"):
        torch_weights.imagenet_init(str(tmp_path / "r18"), 50)
    paddle.save({"conv.weight": np.zeros((1, 1), np.float32)}, str(tmp_path / "other.pdparams"))
    with pytest.raises(ValueError, match="other.pdparams: not a torchvision ResNet"):
        torch_weights.imagenet_init(str(tmp_path / "other.pdparams"), 18)
    (tmp_path / "broken.h5").write_bytes(torch_weights.HDF5_SIGNATURE + b"\0" * 20)
    with pytest.raises(ValueError, match="cannot read HDF5 weights .*broken.h5"):
        torch_weights.imagenet_init(str(tmp_path / "broken.h5"), 18)


def test_missing_imagenet_file_names_the_commands_that_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MONODEPTH2_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        torch_weights.imagenet_init("pretrained", 18)
    for fix in ("python tools/convert_weights.py resnet18-f37072fd.pth", "--weights_init scratch",
                "--weights_init paddle_pretrained"):
        assert fix in str(err.value)


def test_paddle_pretrained_comes_from_paddle_vision_cache_or_says_where_to_put_it(tmp_path, monkeypatch):
    from paddle.utils import download
    monkeypatch.setattr(download, "WEIGHTS_HOME", str(tmp_path))

    def offline(url, md5sum=None):
        raise RuntimeError("Download from {} failed. Retry limit reached".format(url))

    monkeypatch.setattr(download, "get_weights_path_from_url", offline)
    with pytest.raises(FileNotFoundError) as err:
        torch_weights.imagenet_init("paddle_pretrained", 18)
    message = str(err.value)
    assert "https://paddle-hapi.bj.bcebos.com/models/resnet18.pdparams" in message
    assert "put it at {}".format(tmp_path / "resnet18.pdparams") in message

    vision = paddle.vision.models.resnet18()  # stands for the downloaded file
    paddle.save(vision.state_dict(), str(tmp_path / "resnet18.pdparams"))
    from network import ResnetEncoder
    encoder = ResnetEncoder(18, "paddle_pretrained", num_input_images=2)
    conv1 = vision.conv1.weight.numpy()
    np.testing.assert_allclose(encoder.encoder.conv1.weight.numpy(), np.concatenate([conv1, conv1], 1) / 2)
    np.testing.assert_array_equal(encoder.encoder.layer3[0].downsample[0].weight.numpy(),
                                  vision.layer3[0].downsample[0].weight.numpy())


@pytest.mark.parametrize("dataset, data, holds", [
    ("conv1.weight", "text", r"bytes \(\|S4\)"),
    ("fc.bias", ["a", "bc"], r"strings or other objects \(object\)"),  # variable-length strings
    ("bn1.bias", np.zeros(4, [("a", "f4"), ("b", "i4")]), r"compound records \(.*\)"),
    ("meta/note", "made by hand", r"bytes \(.*\)"),  # not an entry of the network: still no weights file
    ("meta/nothing", "empty", r"strings or other objects \(.*\)"),
])
def test_h5_string_and_compound_datasets_are_named(tmp_path, dataset, data, holds):
    import h5py
    path = str(tmp_path / "resnet18-pytorch.h5")
    write_port_h5(path, small_resnet_weights(0))
    with h5py.File(path, "a") as f:
        if dataset in f:
            del f[dataset]
        if isinstance(data, list):
            data = np.array([s.encode() for s in data], dtype=h5py.string_dtype())
        elif isinstance(data, str) and data == "empty":
            data = h5py.Empty("f4")
        f.create_dataset(dataset, data=data)
    message = "{}: '{}' holds {}, not numbers".format(path, dataset, holds)
    with pytest.raises(ValueError, match=message.replace(".h5", r"\.h5")):
        torch_weights.imagenet_init(path, 18)
    with pytest.raises(ValueError, match=message.replace(".h5", r"\.h5")):
        torch_weights.load_torch_names(path)  # what tools/convert_weights.py reads
