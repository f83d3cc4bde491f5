"""demo.py on an untrained ResNet-18 at 64x192: images, folders and videos in, the files
it writes read back and checked against the network, the colour range, metric depth,
the released-model fetch (offline, on local files) and the errors."""
import hashlib
import io
import os
import shutil
import zipfile

import matplotlib
import numpy as np
import paddle
import pytest
from PIL import Image

import cpu_threads
import demo
import export_model
from export_model import load_net_and_info
from layers import disp_to_depth
from test_export_model import make_weights_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_WEIGHTS = os.path.join(ROOT, "tests", "data", "ref_weights")
SIZES = {"a": (100, 40), "b": (150, 70)}  # width, height of the test images


@pytest.fixture(scope="module")
def stereo_weights(tmp_path_factory):
    return make_weights_folder(tmp_path_factory.mktemp("stereo"), use_stereo=True)


@pytest.fixture(scope="module")
def mono_weights(tmp_path_factory):
    return make_weights_folder(tmp_path_factory.mktemp("mono"), use_stereo=False, seed=1)


@pytest.fixture
def images(tmp_path):
    """A folder with two PNG images of different sizes."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / (name + ".png"))
    return folder


def run_demo(*args):
    assert demo.main([str(a) for a in args]) is None


def run_demo_error(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([str(a) for a in args])
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def expected_disparity(weights, image_file):
    """The network's sigmoid disparity of an image resized as the demo does."""
    net, info = load_net_and_info(weights)
    image = Image.open(image_file).convert("RGB").resize((info["width"], info["height"]), Image.LANCZOS)
    batch = (np.asarray(image, np.float32) / 255).transpose(2, 0, 1)[None]
    with paddle.no_grad():
        return net(paddle.to_tensor(batch)).numpy()


def test_folder_writes_colour_image_and_scaled_disparity(stereo_weights, images, tmp_path):
    out = tmp_path / "out"
    run_demo("--image_path", images, "--ext", "png", "--load_weights_folder", stereo_weights,
             "--output_dir", out)
    assert sorted(os.listdir(out)) == ["a_disp.jpeg", "a_disp.npy", "b_disp.jpeg", "b_disp.npy"]
    for name, size in SIZES.items():
        with Image.open(out / (name + "_disp.jpeg")) as jpeg:
            assert jpeg.size == size and jpeg.mode == "RGB"
        scaled = np.load(out / (name + "_disp.npy"))
        assert scaled.shape == (1, 1, 64, 192)
        expected = disp_to_depth(expected_disparity(stereo_weights, images / (name + ".png")), 0.1, 100)[0]
        np.testing.assert_allclose(scaled, expected, rtol=1e-6)


def test_single_image_writes_beside_it_and_folder_skips_outputs(stereo_weights, images):
    run_demo("--image_path", images / "a.png", "--model_path", stereo_weights)
    assert sorted(os.listdir(images)) == ["a.png", "a_disp.jpeg", "a_disp.npy", "b.png"]
    with pytest.raises(ValueError, match=r"no \*\.jpeg images in "):  # a_disp.jpeg is an output
        demo.find_inputs(str(images), "jpeg")


def test_colour_map_spans_minimum_to_95th_percentile():
    disp = np.linspace(2, 3, 100 * 50, dtype=np.float32).reshape(50, 100)
    colours = demo.colorize(disp)
    magma = matplotlib.colormaps["magma"]
    top = (np.array(magma(1.0)[:3]) * 255).astype(np.uint8)
    bottom = (np.array(magma(0.0)[:3]) * 255).astype(np.uint8)
    vmax = np.percentile(disp, 95)
    assert colours.dtype == np.uint8 and colours.shape == (50, 100, 3)
    assert (colours[disp >= vmax] == top).all()
    below_top_bin = disp < vmax - (vmax - disp.min()) / 128  # magma has 256 colours
    assert (colours[below_top_bin] != top).any(axis=1).all()
    assert (colours[0, 0] == bottom).all()
    middle = np.argmin(np.abs(disp - (2 + vmax) / 2))
    np.testing.assert_allclose(colours.reshape(-1, 3)[middle], np.array(magma(0.5)[:3]) * 255, atol=2)


def test_written_jpeg_is_the_colour_mapped_resized_disparity(stereo_weights, images):
    run_demo("--image_path", images / "b.png", "--load_weights_folder", stereo_weights)
    net, info = load_net_and_info(stereo_weights)
    image = Image.open(images / "b.png").convert("RGB")
    full = demo.at_image_size(net(paddle.to_tensor(demo.network_input(image, info))).numpy(), image)
    assert full.shape == (70, 150)
    expected = io.BytesIO()
    Image.fromarray(demo.colorize(full)).save(expected, "JPEG")
    np.testing.assert_array_equal(np.asarray(Image.open(images / "b_disp.jpeg")),
                                  np.asarray(Image.open(expected)))


def test_metric_depth_is_the_stereo_scale_times_depth(stereo_weights, images, tmp_path):
    run_demo("--image_path", images / "a.png", "--load_weights_folder", stereo_weights,
             "--output_dir", tmp_path)
    run_demo("--image_path", images / "a.png", "--load_weights_folder", stereo_weights,
             "--output_dir", tmp_path, "--pred_metric_depth")
    scaled = np.load(tmp_path / "a_disp.npy")
    depth = np.load(tmp_path / "a_depth.npy")
    np.testing.assert_allclose(depth, 5.4 / scaled, rtol=1e-6)
    assert 0.54 <= depth.min() and depth.max() <= 540


def test_metric_depth_refused_for_mono_weights_unless_forced(mono_weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    err = run_demo_error(capsys, "--image_path", images / "a.png", "--load_weights_folder", mono_weights,
                         "--output_dir", out, "--pred_metric_depth")
    assert "trained without stereo" in err and "--force_metric_depth" in err
    assert not out.exists()
    run_demo("--image_path", images / "a.png", "--load_weights_folder", mono_weights,
             "--output_dir", out, "--pred_metric_depth", "--force_metric_depth")
    assert sorted(os.listdir(out)) == ["a_depth.npy", "a_disp.jpeg"]


def test_metric_depth_refused_for_a_rig_of_unknown_baseline(stereo_weights, images, tmp_path, capsys, monkeypatch):
    from datasets import DATASETS, MonoDataset

    monkeypatch.setitem(DATASETS, "rigless", MonoDataset)
    weights = tmp_path / "weights"
    shutil.copytree(stereo_weights, weights)
    encoder = paddle.load(str(weights / "encoder.pdparams"))
    paddle.save(dict(encoder, dataset="rigless"), str(weights / "encoder.pdparams"))
    err = run_demo_error(capsys, "--image_path", images / "a.png", "--load_weights_folder", weights,
                         "--output_dir", tmp_path / "out", "--pred_metric_depth")
    assert "--pred_metric_depth: depth stereo-trained on --dataset rigless has no known metric scale" in err


def write_video(path, frames, fps=10):
    """A 96x48 MJPG video of `frames` plain frames of growing brightness."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (96, 48))
    for i in range(frames):
        writer.write(np.full((48, 96, 3), 60 * i + 20, np.uint8))
    writer.release()
    return str(path)


def test_video_gives_a_depth_video_at_its_rate_and_frame_files_only_when_asked(stereo_weights, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    video = write_video(tmp_path / "clip.avi", 3, fps=25)
    run_demo("--image_path", video, "--load_weights_folder", stereo_weights)
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "clip_depth.mp4"]
    assert "25 frames/s): " + str(tmp_path / "clip_depth.mp4") in capsys.readouterr().out
    capture = cv2.VideoCapture(str(tmp_path / "clip_depth.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == 25 and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    capture.release()
    run_demo("--image_path", video, "--load_weights_folder", stereo_weights, "--save_frames")
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "clip_depth.mp4", "clip_frames"]
    names = sorted(os.listdir(tmp_path / "clip_frames"))
    assert names == ["clip_{:06d}_disp.{}".format(i, e) for i in range(3) for e in ("jpeg", "npy")]
    first, last = (np.load(tmp_path / "clip_frames" / "clip_{:06d}_disp.npy".format(i)) for i in (0, 2))
    assert first.shape == (1, 1, 64, 192) and not np.allclose(first, last)
    with Image.open(tmp_path / "clip_frames" / "clip_000001_disp.jpeg") as jpeg:
        assert jpeg.size == (96, 48)


def test_depth_video_rate_falls_back_to_kittis_without_one(monkeypatch, tmp_path):
    cv2 = pytest.importorskip("cv2")
    assert demo.video_header(write_video(tmp_path / "clip.avi", 2, fps=30)) == (2, 30)
    monkeypatch.setattr(cv2.VideoCapture, "get", lambda self, prop: 0.0)  # a header that does not say
    assert demo.video_header(str(tmp_path / "clip.avi")) == (None, None)
    assert demo.DEFAULT_FPS == 10


def test_exported_model_gives_the_eager_results(stereo_weights, images, tmp_path):
    prefix = str(tmp_path / "exported" / "depth")
    export_model.main(["--load_weights_folder", stereo_weights, "--output", prefix])
    sources = {"eager": ("--load_weights_folder", stereo_weights), "exported": ("--exported", prefix)}
    for out, model in sources.items():
        run_demo("--image_path", images, "--ext", "png", *model, "--output_dir", tmp_path / out,
                 "--pred_metric_depth")
    for name in SIZES:
        np.testing.assert_allclose(np.load(tmp_path / "exported" / (name + "_depth.npy")),
                                   np.load(tmp_path / "eager" / (name + "_depth.npy")), rtol=1e-5)


def test_video_streams_through_the_model_exported_on_first_use(stereo_weights, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "clip.avi", 4)
    weights = tmp_path / "weights"
    shutil.copytree(stereo_weights, weights)
    for out, model in {"eager": (), "exported": ("--exported",)}.items():
        run_demo("--image_path", video, "--load_weights_folder", weights, *model, "--output_dir", tmp_path / out,
                 "--save_frames")
        assert "-> Done: 4 frames in " in capsys.readouterr().out
    assert os.path.isfile(weights / "inference" / "depth.onnx")
    for i in range(4):
        name = "clip_{:06d}_disp.npy".format(i)
        np.testing.assert_allclose(np.load(tmp_path / "exported" / name), np.load(tmp_path / "eager" / name),
                                   rtol=1e-5)
    onnx_time = os.path.getmtime(weights / "inference" / "depth.onnx")
    # with a core left free by the network, frames come from the reader thread
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 2)
    monkeypatch.setattr(cpu_threads, "num_threads", lambda: 1)
    read_ahead = []
    monkeypatch.setattr(demo, "prefetched", lambda items, real=demo.prefetched: read_ahead.append(1) or real(items))
    run_demo("--image_path", video, "--load_weights_folder", weights, "--exported", "--backend", "paddle",
             "--output_dir", tmp_path / "again", "--save_frames")
    out = capsys.readouterr().out
    assert "(paddle fp32 on cpu (1 threads)" in out and "-> Done: 4 frames in" in out and "frames/s)" in out
    assert read_ahead == [1]
    np.testing.assert_allclose(np.load(tmp_path / "again" / "clip_000003_disp.npy"),
                               np.load(tmp_path / "eager" / "clip_000003_disp.npy"), rtol=1e-5)
    assert os.path.getmtime(weights / "inference" / "depth.onnx") == onnx_time  # not exported again


def test_prefetched_yields_in_order_and_raises_the_readers_error():
    def items():
        yield from range(10)
        raise ValueError("cannot read frame 10")
    seen = []
    with pytest.raises(ValueError, match="cannot read frame 10"):
        for item in demo.prefetched(items(), depth=2):
            seen.append(item)
    assert seen == list(range(10))


@pytest.mark.parametrize("args, message", [
    (["--exported", "x", "--load_weights_folder", "w"], "--exported PREFIX is a model of its own"),
    ([], "give the model with --load_weights_folder, --model_name or --exported PREFIX"),
    (["--exported"], "give the model with"),
    (["--load_weights_folder", "w", "--backend", "paddle"], "add --exported"),
])
def test_model_flag_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--image_path", "x.png"] + args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_name_the_problem(stereo_weights, images, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert "--image_path {}: no such file or folder".format(missing) in run_demo_error(
        capsys, "--image_path", missing, "--load_weights_folder", stereo_weights)
    assert "weights folder not found: {}".format(missing) in run_demo_error(
        capsys, "--image_path", images, "--ext", "png", "--load_weights_folder", missing)
    no_decoder = tmp_path / "no_decoder"
    no_decoder.mkdir()
    shutil.copy(os.path.join(stereo_weights, "encoder.pdparams"), no_decoder)
    assert "weights file not found: {}".format(no_decoder / "depth.pdparams") in run_demo_error(
        capsys, "--image_path", images, "--ext", "png", "--load_weights_folder", no_decoder)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert "cannot read {}: not an image Pillow can open, nor a video".format(text) in run_demo_error(
        capsys, "--image_path", text, "--load_weights_folder", stereo_weights)
    assert "no exported model at {}".format(missing) in run_demo_error(
        capsys, "--image_path", images, "--ext", "png", "--exported", missing)
    assert not (images / "a_disp.jpeg").exists()


def make_release(folder):
    """A zip laid out like a released model (torch-format encoder.pth and depth.pth of the
    reference networks) and its md5 sum."""
    archive = os.path.join(folder, "release.zip")
    with zipfile.ZipFile(archive, "w") as f:
        for name in ("encoder.pth", "depth.pth"):
            f.write(os.path.join(REF_WEIGHTS, name), name)
    with open(archive, "rb") as f:
        return archive, hashlib.md5(f.read()).hexdigest()


def test_released_model_is_downloaded_checked_unzipped_and_converted(tmp_path, monkeypatch):
    archive, md5 = make_release(tmp_path)
    monkeypatch.setitem(demo.RELEASED_MODELS, "stereo_640x192", ("stereo_640x192.zip", md5))
    urls = []

    def download(url, path):
        urls.append(url)
        shutil.copy(archive, path)

    models = tmp_path / "models"
    folder = demo.fetch_released_model("stereo_640x192", str(models), download)
    assert folder == str(models / "stereo_640x192")
    assert urls == [demo.RELEASE_URL + "stereo_640x192.zip"]
    assert {"encoder.pdparams", "depth.pdparams"} <= set(os.listdir(folder))
    _, info = load_net_and_info(folder)
    assert info == {"height": 192, "width": 640, "use_stereo": True, "num_layers": 18}
    assert demo.fetch_released_model("stereo_640x192", str(models), download) == folder
    assert len(urls) == 1  # converted weights are reused


def test_released_model_zip_with_the_wrong_md5_is_refused(tmp_path, monkeypatch):
    archive, md5 = make_release(tmp_path)
    monkeypatch.setitem(demo.RELEASED_MODELS, "mono_640x192", ("mono_640x192.zip", "0" * 32))
    models = tmp_path / "models"
    with pytest.raises(ValueError, match="mono_640x192.zip.part has md5 {}, expected 0{{32}} .*damaged".format(md5)):
        demo.fetch_released_model("mono_640x192", str(models), lambda url, path: shutil.copy(archive, path))
    assert not (models / "mono_640x192").exists() and not (models / "mono_640x192.zip").exists()


def test_a_zip_put_in_models_with_the_wrong_md5_says_so(tmp_path, monkeypatch, capsys):
    """The offline route (the zip put at models/NAME.zip by hand), with a wrong file: the demo
    names both sums and what to do, and downloads nothing."""
    import urllib.request
    monkeypatch.setattr(demo, "MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(urllib.request, "urlretrieve", lambda *a: pytest.fail("downloaded"))
    archive, md5 = make_release(tmp_path)
    os.makedirs(tmp_path / "models")
    with zipfile.ZipFile(tmp_path / "models" / "mono+stereo_640x192.zip", "w") as f:
        f.write(archive, "another.zip")
    found = hashlib.md5(open(tmp_path / "models" / "mono+stereo_640x192.zip", "rb").read()).hexdigest()
    Image.new("RGB", (64, 32)).save(tmp_path / "image.jpg")
    err = run_demo_error(capsys, "--image_path", tmp_path / "image.jpg", "--model_name", "mono+stereo_640x192")
    expected = demo.RELEASED_MODELS["mono+stereo_640x192"][1]
    assert "{} has md5 {}, expected {}".format(tmp_path / "models" / "mono+stereo_640x192.zip", found, expected) in err
    assert "Delete it and run again" in err and demo.RELEASE_URL + "mono%2Bstereo_640x192.zip" in err
    assert "cannot download" not in err
    assert os.listdir(tmp_path / "models") == ["mono+stereo_640x192.zip"]


def test_release_table_matches_the_reference_names():
    assert len(demo.RELEASED_MODELS) == 9
    for name, (file_name, md5) in demo.RELEASED_MODELS.items():
        assert file_name == name.replace("+", "%2B") + ".zip"
        assert len(md5) == 32 and int(md5, 16) >= 0


def test_depth_range_comes_from_the_weights_unless_given(images, tmp_path):
    """Weights trained with --min_depth 1 (the built-in example's) scale by 1..100 m, in the
    eager demo and through the exported model; the flags override it."""
    weights = make_weights_folder(tmp_path / "min1", use_stereo=True)
    path = os.path.join(weights, "encoder.pdparams")
    paddle.save(dict(paddle.load(path), min_depth=1.0, max_depth=100.0, dataset="kitti"), path)
    sigmoid = expected_disparity(weights, images / "a.png")
    run_demo("--image_path", images / "a.png", "--load_weights_folder", weights, "--output_dir", tmp_path / "eager")
    np.testing.assert_allclose(np.load(tmp_path / "eager" / "a_disp.npy"), disp_to_depth(sigmoid, 1, 100)[0], rtol=1e-6)
    prefix = str(tmp_path / "exported" / "depth")
    export_model.main(["--load_weights_folder", weights, "--output", prefix])
    run_demo("--image_path", images / "a.png", "--exported", prefix, "--output_dir", tmp_path / "exp")
    np.testing.assert_allclose(np.load(tmp_path / "exp" / "a_disp.npy"), disp_to_depth(sigmoid, 1, 100)[0], rtol=1e-5)
    run_demo("--image_path", images / "a.png", "--load_weights_folder", weights, "--output_dir", tmp_path / "flag",
             "--min_depth", "0.1")
    np.testing.assert_allclose(np.load(tmp_path / "flag" / "a_disp.npy"), disp_to_depth(sigmoid, 0.1, 100)[0], rtol=1e-6)


def test_depth_video_puts_each_frame_beside_its_disparity(stereo_weights, tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = write_video(tmp_path / "clip.avi", 3)
    out = str(tmp_path / "out" / "depth.mp4")
    run_demo("--image_path", video, "--load_weights_folder", stereo_weights, "--output_dir", tmp_path / "out",
             "--depth_video", out, "--save_frames")
    capture = cv2.VideoCapture(out)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    assert len(frames) == 3 and frames[0].shape == (48, 192, 3)
    assert abs(int(np.median(frames[2][:, :96])) - 140) <= 8  # the input on the left (two lossy codecs)
    with Image.open(tmp_path / "out" / "clip_000002_disp.jpeg") as jpeg:  # its colours on the right
        assert np.abs(frames[2][:, 96:].astype(int) - np.asarray(jpeg, dtype=int)).mean() < 12


def test_a_16_bit_grayscale_png_gives_the_result_of_its_8_bit_version(stereo_weights, tmp_path, capsys):
    gray = np.random.default_rng(2).integers(0, 256, (40, 100)).astype(np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "deep.png")  # mode I;16, 0..65535
    Image.fromarray(gray.astype(np.uint8)).convert("RGB").save(tmp_path / "flat.png")
    for name in ("deep", "flat"):
        run_demo("--image_path", tmp_path / (name + ".png"), "--load_weights_folder", stereo_weights)
    np.testing.assert_array_equal(np.load(tmp_path / "deep_disp.npy"), np.load(tmp_path / "flat_disp.npy"))
    Image.fromarray(gray.astype(np.float32)).save(tmp_path / "float.tif")  # mode F: range unknown
    err = run_demo_error(capsys, "--image_path", tmp_path / "float.tif", "--load_weights_folder", stereo_weights)
    assert "float.tif is a 32-bit float image of unknown range" in err
    assert not (tmp_path / "float_disp.npy").exists()


def test_offline_released_model_says_where_to_put_the_zip(tmp_path, monkeypatch):
    import urllib.error
    archive, md5 = make_release(tmp_path)
    monkeypatch.setitem(demo.RELEASED_MODELS, "mono_640x192", ("mono_640x192.zip", md5))
    models = tmp_path / "models"

    def offline(url, path):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    with pytest.raises(FileNotFoundError) as err:
        demo.fetch_released_model("mono_640x192", str(models), offline)
    message = str(err.value)
    assert demo.RELEASE_URL + "mono_640x192.zip" in message and "Name or service not known" in message
    assert "put it at {}".format(models / "mono_640x192.zip") in message
    shutil.copy(archive, models / "mono_640x192.zip")  # as the message says
    folder = demo.fetch_released_model("mono_640x192", str(models), offline)
    assert {"encoder.pdparams", "depth.pdparams"} <= set(os.listdir(folder))


def test_resize_mode_comes_from_the_weights_unless_given(images, tmp_path):
    weights = make_weights_folder(tmp_path / "nearest", use_stereo=True)
    run_demo("--image_path", images / "b.png", "--load_weights_folder", weights, "--output_dir", tmp_path / "flag",
             "--resize", "nearest")
    path = os.path.join(weights, "encoder.pdparams")
    paddle.save(dict(paddle.load(path), resize="nearest"), path)
    run_demo("--image_path", images / "b.png", "--load_weights_folder", weights, "--output_dir", tmp_path / "own")
    np.testing.assert_array_equal(np.load(tmp_path / "own" / "b_disp.npy"), np.load(tmp_path / "flag" / "b_disp.npy"))


def test_resize_nearest_feeds_the_network_pils_nearest_resize(stereo_weights, images, tmp_path):
    image = images / "b.png"
    run_demo("--image_path", image, "--load_weights_folder", stereo_weights, "--output_dir", tmp_path / "n",
             "--resize", "nearest")
    net, info = load_net_and_info(stereo_weights)
    resized = Image.open(image).convert("RGB").resize((info["width"], info["height"]), Image.NEAREST)
    with paddle.no_grad():
        disp = net(paddle.to_tensor((np.asarray(resized, np.float32) / 255).transpose(2, 0, 1)[None])).numpy()
    saved = np.load(tmp_path / "n" / "b_disp.npy")
    np.testing.assert_allclose(saved, disp_to_depth(disp, *demo.DEFAULT_DEPTH_RANGE)[0], rtol=1e-5, atol=1e-6)
    run_demo("--image_path", image, "--load_weights_folder", stereo_weights, "--output_dir", tmp_path / "l")
    assert np.abs(np.load(tmp_path / "l" / "b_disp.npy") - saved).max() > 1e-4


def test_a_failed_onnx_conversion_on_first_use_falls_back_to_paddle_inference(stereo_weights, images, tmp_path,
                                                                              capsys, monkeypatch):
    paddle2onnx = pytest.importorskip("paddle2onnx")
    monkeypatch.setattr(paddle2onnx, "export", lambda *args, **kwargs: None)  # logs, writes nothing
    weights = tmp_path / "weights"
    shutil.copytree(stereo_weights, weights)
    run_demo("--image_path", images / "a.png", "--load_weights_folder", weights, "--exported",
             "--output_dir", tmp_path / "out")
    out = capsys.readouterr().out
    assert "no ONNX model (paddle2onnx wrote no ONNX file {}.onnx".format(weights / "inference" / "depth") in out
    assert "Paddle Inference alone" in out and "paddle fp32" in out
    assert sorted(os.listdir(weights / "inference")) == ["depth.info.json", "depth.json", "depth.pdiparams"]
    assert sorted(os.listdir(tmp_path / "out")) == ["a_disp.jpeg", "a_disp.npy"]
