"""demo.py's metric depth and 3D outputs: --camera_height, --point_cloud, --trajectory, the
colour bar in metres, read back from the files written; the depth network is replaced by one
that sees a flat road (an untrained network sees none), the pose network is an untrained one
saved as training saves it."""
import os
import re

import numpy as np
import paddle
import pytest
from PIL import Image

import demo
from datasets.kitti_dataset import KITTIDataset
from layers import transformation_from_parameters
from metric_depth import backproject, camera_matrix, camera_path
from network import PoseDecoder, ResnetEncoder, load_pose_net
from scene_files import read_ply, read_trajectory
from test_export_model import make_weights_folder
from test_metric_depth import road_depth

MIN_DEPTH, MAX_DEPTH = 0.1, 100
UNKNOWN = 0.2  # the road network's depth is the road's in metres times this


def add_pose_network(folder):
    paddle.seed(3)
    encoder = ResnetEncoder(18, False, num_input_images=2)
    paddle.save(dict(encoder.state_dict(), kind="resnet", num_layers=18), os.path.join(folder, "pose_encoder.pdparams"))
    paddle.save(PoseDecoder(encoder.num_ch_enc, 1, 2).state_dict(), os.path.join(folder, "pose.pdparams"))
    return folder


@pytest.fixture(scope="module")
def mono_weights(tmp_path_factory):
    return add_pose_network(make_weights_folder(tmp_path_factory.mktemp("mono"), use_stereo=False))


@pytest.fixture
def road_network(monkeypatch):
    """The demo's depth network replaced by one whose depth is a flat road 1.65 m below a camera
    pitched down 2 degrees, times UNKNOWN, where the image's top-left pixel is not black (a wall
    5 m away otherwise)."""
    depth, _ = road_depth(1.65, pitch_degrees=2, sky=MAX_DEPTH * 0.999)
    road = (1 / (depth * UNKNOWN) - 1 / MAX_DEPTH) / (1 / MIN_DEPTH - 1 / MAX_DEPTH)  # sigmoid disparity
    wall = (1 / (5 * UNKNOWN) - 1 / MAX_DEPTH) / (1 / MIN_DEPTH - 1 / MAX_DEPTH)
    real_load = demo.load_model

    def load_model(args, device):
        _, info = real_load(args, device)
        return (lambda batch: np.where(batch[:, :1, :1, :1] > 0, road, wall)[:, :1].astype(np.float32)), info
    monkeypatch.setattr(demo, "load_model", load_model)


@pytest.fixture
def frames(tmp_path):
    """Three 192x64 frames (not black), in a folder."""
    folder = tmp_path / "drive"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(1, 256, (64, 192, 3), dtype=np.uint8)).save(folder / "{:03d}.png".format(i))
    return folder


def run_demo(*args):
    assert demo.main([str(a) for a in args]) is None


def demo_error(capsys, *args, code=1):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([str(a) for a in args])
    assert exit_info.value.code == code
    return capsys.readouterr().err


def test_camera_height_makes_depth_and_point_cloud_metric(mono_weights, frames, tmp_path, road_network, capsys):
    out = tmp_path / "out"
    run_demo("--image_path", frames / "000.png", "--load_weights_folder", mono_weights, "--camera_height", 1.65,
             "--point_cloud", "--pred_metric_depth", "--output_dir", out)
    truth, _ = road_depth(1.65, pitch_degrees=2, sky=MAX_DEPTH * 0.999)
    depth = np.load(out / "000_depth.npy")[0, 0]
    road = truth < 50
    np.testing.assert_allclose(depth[road], truth[road], rtol=1e-3)  # metres, not the network's units
    points, colours, comments = read_ply(out / "000.ply")
    assert "metres" in comments[0]
    assert len(points) == 64 * 192
    np.testing.assert_allclose(points, backproject(depth, camera_matrix(KITTIDataset.K, 192, 64)).reshape(-1, 3),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(colours.reshape(64, 192, 3), np.asarray(Image.open(frames / "000.png")))
    # the road's points lie 1.65 m below the camera along the road's normal (pitched by 2 degrees)
    normal = np.array([0, np.cos(np.radians(2)), np.sin(np.radians(2))])
    assert np.abs(points[road.ravel()] @ normal - 1.65).max() < 1.65 * 1e-3
    assert "3D outputs in metres, scaled by the road 1.65 m below the camera" in capsys.readouterr().out
    # a colour bar in metres on the image: its labels cover the right edge, which is plain otherwise
    with_bar = np.asarray(Image.open(out / "000_disp.jpeg"))
    run_demo("--image_path", frames / "000.png", "--load_weights_folder", mono_weights, "--output_dir", tmp_path)
    without = np.asarray(Image.open(tmp_path / "000_disp.jpeg"))
    assert np.abs(with_bar[:, -14:].astype(int) - without[:, -14:]).mean() > 20
    np.testing.assert_allclose(with_bar[:, :80], without[:, :80], atol=8)  # the rest is the same (JPEG)


def test_without_a_height_mono_clouds_are_up_to_scale_and_cropped(mono_weights, frames, tmp_path, road_network,
                                                                 capsys):
    run_demo("--image_path", frames / "000.png", "--load_weights_folder", mono_weights, "--point_cloud",
             "--cloud_max_depth", 2, "--output_dir", tmp_path)
    points, _, comments = read_ply(tmp_path / "000.ply")
    assert "up to scale" in comments[0]
    assert "the network's units: depth up to an unknown scale (give --camera_height METRES)" in capsys.readouterr().out
    depth = 1 / np.load(tmp_path / "000_disp.npy")[0, 0]
    assert len(points) == np.count_nonzero(depth <= 2) > 1000 and points[:, 2].max() <= 2
    normal = np.array([0, np.cos(np.radians(2)), np.sin(np.radians(2))])
    np.testing.assert_allclose(points @ normal, 1.65 * UNKNOWN, rtol=1e-3)  # the road in the network's units


def test_clouds_of_larger_images_take_the_resize_into_the_intrinsics(mono_weights, tmp_path, road_network,
                                                                     monkeypatch):
    """384 x 128 frames (--intrinsics in their pixels, or KITTI's) on the 192 x 64 network: clouds
    are back-projected with the principal point the resize moved (metric_depth.camera_matrix), and
    the pose network's motions, learnt without that shift, are carried into the clouds' frame."""
    drive = tmp_path / "drive"
    drive.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(1, 256, (128, 384, 3), dtype=np.uint8)).save(drive / "{}.png".format(i))
    given = [0.6 * 384, 1.9 * 128, 190.0, 60.0]
    forward = np.array([[1, 0, 0, 0], [0, 0.995, -0.0998, 0], [0, 0.0998, 0.995, -1.0], [0, 0, 0, 1]])  # 1 m, 5.7 deg
    monkeypatch.setattr(demo, "transformation_from_parameters", lambda *_: paddle.to_tensor(forward[None]))
    for intrinsics, normalised, centre in [
            ([], KITTIDataset.K, (95.75, 31.75)),
            (["--intrinsics"] + given, [[given[0] / 384, 0, given[2] / 384], [0, given[1] / 128, given[3] / 128],
                                        [0, 0, 1]], (94.75, 29.75))]:
        K = camera_matrix(normalised, 192, 64, (384, 128))
        assert tuple(K[:2, 2]) == pytest.approx(centre)  # half a pixel of the input is a quarter of the network's
        out = tmp_path / "out{}".format(len(intrinsics))
        run_demo("--image_path", drive, "--ext", "png", "--load_weights_folder", mono_weights, "--point_cloud",
                 "--trajectory", "--output_dir", out, *intrinsics)
        depth = 1 / np.load(out / "1_disp.npy")[0, 0]
        points, _, comments = read_ply(out / "1.ply")
        np.testing.assert_allclose(points, backproject(depth, K).reshape(-1, 3), rtol=1e-5, atol=1e-5)
        assert comments[1] == demo.CLOUD_INTRINSICS.format(K[0, 0], K[1, 1], *centre, 192, 64, 384, 128)
        to_cloud = np.eye(4)
        to_cloud[:3, :3] = np.linalg.inv(K) @ camera_matrix(normalised, 192, 64)
        carried = to_cloud @ forward @ np.linalg.inv(to_cloud)  # a shear of a rotation: off by 1e-4
        u, _, vt = np.linalg.svd(carried[:3, :3])
        rigid = carried.copy()
        rigid[:3, :3] = u @ vt
        poses = read_trajectory(out / "drive_trajectory.txt")
        np.testing.assert_allclose(poses, camera_path([rigid]), rtol=1e-6, atol=1e-6)
        assert np.abs(poses[1, :3, 3] - camera_path([forward])[1, :3, 3]).max() > 1e-3  # carried, not as learnt
        np.testing.assert_allclose(poses[1, :3, :3] @ poses[1, :3, :3].T, np.eye(3), atol=1e-6)  # a rotation


def test_trajectory_and_drive_cloud(mono_weights, frames, tmp_path, road_network, capsys):
    run_demo("--image_path", frames, "--ext", "png", "--load_weights_folder", mono_weights, "--camera_height", 1.65,
             "--trajectory", "--point_cloud", "--output_dir", tmp_path, "--depth_video", tmp_path / "depth.mp4")
    poses = read_trajectory(tmp_path / "drive_trajectory.txt")
    # the pose network's motions between the frames, chained, in metres (1 / UNKNOWN per unit)
    encoder, decoder = load_pose_net(mono_weights)
    images = [np.asarray(Image.open(frames / "{:03d}.png".format(i)), np.float32).transpose(2, 0, 1)[None] / 255
              for i in range(3)]
    motions = []
    with paddle.no_grad():
        for a, b in zip(images, images[1:]):
            axisangle, translation = decoder([encoder(paddle.to_tensor(np.concatenate([a, b], 1)))])
            motions.append(transformation_from_parameters(axisangle[:, 0], translation[:, 0]).numpy()[0])
    np.testing.assert_allclose(poses, camera_path(motions, 1 / UNKNOWN), rtol=1e-4, atol=1e-5)
    assert len(open(tmp_path / "drive_trajectory.txt").read().splitlines()) == 3
    with Image.open(tmp_path / "drive_trajectory.png") as plot:
        assert plot.size[0] > 300
    points, _, _ = read_ply(tmp_path / "drive_drive.ply")
    assert len(points) == 3 * 16 * 48  # every 4th pixel of every 4th row of 3 frames
    out = capsys.readouterr().out
    assert "Scale of the sequence: 5 m per unit (median of 3 frames" in out
    assert "Camera path (m)" in out
    import cv2
    video = cv2.VideoCapture(str(tmp_path / "depth.mp4"))
    ok, frame = video.read()
    video.release()
    assert ok and frame.shape == (64, 384, 3)
    # the colour bar over the right edge of the depth half, as on the image written
    bar = np.asarray(Image.open(tmp_path / "000_disp.jpeg"))[:, -14:]
    assert np.abs(frame[:, -14:, ::-1].astype(int) - bar).mean() < 12


def test_trajectory_needs_a_pose_network_and_two_frames(frames, tmp_path, road_network, capsys):
    depth_only = make_weights_folder(tmp_path / "depth_only", use_stereo=False)
    assert "--trajectory needs a weights folder with a pose network" in demo_error(
        capsys, "--image_path", frames, "--ext", "png", "--load_weights_folder", depth_only, "--trajectory")
    assert "--trajectory needs at least two frames" in demo_error(
        capsys, "--image_path", frames / "000.png", "--load_weights_folder", add_pose_network(depth_only),
        "--trajectory", "--output_dir", tmp_path)


def test_errors_name_the_flag(mono_weights, frames, tmp_path, capsys):
    image = frames / "000.png"
    for bad in ("0", "-1", "nan"):
        assert "--camera_height must be the camera's height above the road in metres" in demo_error(
            capsys, "--image_path", image, "--load_weights_folder", mono_weights, "--camera_height", bad, code=2)
    assert "argument --camera_height: invalid float value: 'tall'" in demo_error(
        capsys, "--image_path", image, "--load_weights_folder", mono_weights, "--camera_height", "tall", code=2)
    err = demo_error(capsys, "--image_path", image, "--load_weights_folder", mono_weights, "--pred_metric_depth",
                     "--output_dir", tmp_path)
    assert "give the camera's height above the road with --camera_height METRES" in err
    # the untrained network sees no road
    err = demo_error(capsys, "--image_path", image, "--load_weights_folder", mono_weights, "--camera_height", "1.65",
                     "--output_dir", tmp_path)
    assert "000: no ground plane" in err and "--camera_height needs a flat road" in err


def hide_the_road(frames, i):
    """A black top-left pixel: the road network sees a wall 5 m away (1 unit) in frame i."""
    image = np.asarray(Image.open(frames / "{:03d}.png".format(i))).copy()
    image[0, 0] = 0
    Image.fromarray(image).save(frames / "{:03d}.png".format(i))


def test_frames_without_a_road_wait_for_the_first_with_one(mono_weights, frames, tmp_path, road_network, capsys):
    hide_the_road(frames, 0)
    hide_the_road(frames, 2)
    run_demo("--image_path", frames, "--ext", "png", "--load_weights_folder", mono_weights, "--camera_height", 1.65,
             "--pred_metric_depth", "--point_cloud", "--output_dir", tmp_path)
    truth, _ = road_depth(1.65, pitch_degrees=2, sky=MAX_DEPTH * 0.999)
    for i in range(3):  # each written once, in order, with the road frame's scale (1 / UNKNOWN)
        depth = np.load(tmp_path / "{:03d}_depth.npy".format(i))[0, 0]
        if i == 1:
            road = truth < 50
            np.testing.assert_allclose(depth[road], truth[road], rtol=1e-3)
        else:
            np.testing.assert_allclose(depth, 5, rtol=1e-4)  # the wall 5 m away
        points, _, comments = read_ply(tmp_path / "{:03d}.ply".format(i))
        assert "metres" in comments[0]
        np.testing.assert_allclose(points[:, 2].max(), depth.max(), rtol=1e-4)
    out = capsys.readouterr().out
    assert "the 1 frame(s) before 001 show no road plane: they take its scale" in out
    assert "002: no road plane, using the median scale of the frames so far" in out
    assert re.findall(r"^ +(\d+): .*(\d{3})_disp\.jpeg and", out, re.M) == [("1", "000"), ("2", "001"), ("3", "002")]
    assert "-> Done: 3 images" in out
    assert "Scale of the sequence" not in out  # one frame with a road: no sequence line
    # no frame with a road: nothing is written and the error names the frames
    hide_the_road(frames, 1)
    err = demo_error(capsys, "--image_path", frames, "--ext", "png", "--load_weights_folder", mono_weights,
                     "--camera_height", 1.65, "--pred_metric_depth", "--output_dir", tmp_path / "none")
    assert "no road plane in any of the 3 frames (000: no ground plane" in err
    assert not os.path.exists(tmp_path / "none" / "000_depth.npy")


def test_a_held_frame_of_another_size_keeps_its_own_intrinsics(mono_weights, tmp_path, road_network):
    """A 384 x 128 frame without a road, held until the 192 x 64 frame after it shows one: its
    cloud is back-projected with the intrinsics of its own size, and its comment says so."""
    drive = tmp_path / "drive"
    drive.mkdir()
    rng = np.random.default_rng(2)
    large = rng.integers(1, 256, (128, 384, 3), dtype=np.uint8)
    large[:16, :16] = 0  # black after the resize too: the road network sees its wall
    Image.fromarray(large).save(drive / "000.png")
    Image.fromarray(rng.integers(1, 256, (64, 192, 3), dtype=np.uint8)).save(drive / "001.png")
    out = tmp_path / "out"
    run_demo("--image_path", drive, "--ext", "png", "--load_weights_folder", mono_weights, "--camera_height", 1.65,
             "--pred_metric_depth", "--point_cloud", "--output_dir", out)
    for name, size in [("000", (384, 128)), ("001", (192, 64))]:
        K = camera_matrix(KITTIDataset.K, 192, 64, size)
        depth = np.load(out / "{}_depth.npy".format(name))[0, 0]
        points, _, comments = read_ply(out / "{}.ply".format(name))
        assert comments[1] == demo.CLOUD_INTRINSICS.format(K[0, 0], K[1, 1], K[0, 2], K[1, 2], 192, 64, *size)
        np.testing.assert_allclose(points, backproject(depth, K).reshape(-1, 3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(out / "000_depth.npy"), 5, rtol=1e-4)  # the wall, with 001's scale


def test_only_frames_with_a_road_count_in_the_sequence_scale(mono_weights, frames, tmp_path, monkeypatch, capsys):
    scales = iter([None, 1.0, None, 3.0, 5.0])  # None: no road in that frame

    def scripted(depth, K, camera_height):
        scale = next(scales)
        if scale is None:
            raise demo.NoGroundError("no ground plane: scripted")
        return scale
    monkeypatch.setattr(demo, "ground_scale", scripted)
    for i in range(1, 5):  # five copies of one frame: their depths differ by their scales alone
        Image.open(frames / "000.png").save(frames / "{:03d}.png".format(i))
    run_demo("--image_path", frames, "--ext", "png", "--load_weights_folder", mono_weights, "--camera_height", 1.65,
             "--pred_metric_depth", "--output_dir", tmp_path)
    # the median of 1, 3 and 5; counting frame 2 (given the median so far, 1) would make it 2
    assert "Scale of the sequence: 3 m per unit (median of 3 frames" in capsys.readouterr().out
    depth = [np.load(tmp_path / "{:03d}_depth.npy".format(i)) for i in range(5)]
    np.testing.assert_allclose([np.median(d / depth[0]) for d in depth], [1, 1, 1, 3, 5], rtol=1e-6)


def test_too_many_frames_without_a_road_stop_the_run(mono_weights, frames, tmp_path, road_network, monkeypatch,
                                                     capsys):
    monkeypatch.setattr(demo.Scene3D, "MAX_HELD", 1)
    hide_the_road(frames, 0)
    hide_the_road(frames, 1)
    err = demo_error(capsys, "--image_path", frames, "--ext", "png", "--load_weights_folder", mono_weights,
                     "--camera_height", 1.65, "--pred_metric_depth", "--output_dir", tmp_path)
    assert "no road plane in the first 2 frames (000: no ground plane" in err
    assert not os.path.exists(tmp_path / "000_depth.npy")
