"""The ground-plane scale of metric_depth.py on depth maps of known geometry."""
import numpy as np
import pytest

from datasets.kitti_dataset import KITTIDataset
from metric_depth import (NoGroundError, backproject, camera_matrix, camera_path, check_camera_height,
                          fit_ground_plane, ground_points, ground_scale, sequence_scale)

WIDTH, HEIGHT = 192, 64
K = camera_matrix(KITTIDataset.K, WIDTH, HEIGHT)


def road_depth(height, pitch_degrees=0.0, roll_degrees=0.0, sky=100.0):
    """Depth map of a flat road `height` below a camera pitched down (and rolled) by the given
    angles; pixels above the horizon (or beyond `sky`) see the sky at `sky`."""
    pitch, roll = np.radians(pitch_degrees), np.radians(roll_degrees)
    # the road's normal (pointing down) in the camera frame: +y turned by the pitch and the roll
    normal = np.array([np.sin(roll), np.cos(roll) * np.cos(pitch), np.cos(roll) * np.sin(pitch)])
    rays = backproject(np.ones((HEIGHT, WIDTH)), K)
    along = rays @ normal
    depth = np.full((HEIGHT, WIDTH), sky)
    hits = along > height / sky
    depth[hits] = height / along[hits]
    return depth, normal


@pytest.mark.parametrize("pitch, roll", [(0, 0), (4, 0), (-3, 0), (3, 2)])
def test_plane_at_known_height_is_recovered(pitch, roll):
    depth, normal = road_depth(1.65, pitch, roll)
    fitted, distance, inliers = fit_ground_plane(ground_points(depth, K))
    assert abs(distance - 1.65) < 1e-3
    assert np.degrees(np.arccos(min(1.0, fitted @ normal))) < 0.05
    road = ground_points(np.where(depth < 100, depth, np.nan), K)  # the pixels seeing the road
    assert inliers.sum() == len(road)


@pytest.mark.parametrize("pitch", [0, 5])
def test_scale_undoes_an_unknown_depth_scale(pitch):
    depth, _ = road_depth(1.65, pitch)
    for unknown in (0.03, 1.0, 7.0):
        assert ground_scale(depth * unknown, K, 1.65) * unknown == pytest.approx(1.0, abs=1e-3)


def test_objects_and_noise_on_the_road_do_not_move_the_plane():
    rng = np.random.default_rng(3)
    depth, _ = road_depth(1.5, pitch_degrees=2)
    depth = depth * rng.normal(1, 0.01, depth.shape)  # 1% depth noise
    depth[40:, 20:70] = 6.0  # a wall across part of the lower image
    depth[50:, 150:170] = 3.0  # a car close by
    scale = ground_scale(depth * 0.2, K, 1.5)
    assert scale * 0.2 == pytest.approx(1.0, abs=0.01)


def test_a_tilted_surface_over_a_noisy_road_does_not_take_its_place():
    """A surface rising 15 degrees from the near road over the left of the lower image, exact,
    beside a road with 5% depth noise: the surface holds more points within the tolerance than
    the road does, but most of the road lies beneath it; the road is found, within its noise."""
    rng = np.random.default_rng(5)
    depth, _ = road_depth(1.65)
    depth = depth * rng.normal(1, 0.05, depth.shape)
    tilt = np.radians(15)
    surface = np.array([0, np.cos(tilt), np.sin(tilt)])
    rays = backproject(np.ones((HEIGHT, WIDTH)), K)
    meets = 1.65 * np.cos(tilt) + np.sin(tilt) * depth[-1, WIDTH // 2]  # the road at the bottom row
    along = rays @ surface
    on_surface = np.where(along > 0, meets / np.where(along > 0, along, 1), np.inf)
    left = np.zeros_like(depth, dtype=bool)
    left[:, :WIDTH * 2 // 5] = True
    depth = np.where(left & (on_surface < depth), on_surface, depth)
    points = ground_points(depth, K)
    counted = np.count_nonzero(np.abs(points @ surface - meets) < 0.03 * meets)
    assert counted > 1.2 * np.count_nonzero(np.abs(points[:, 1] - 1.65) < 0.03 * 1.65)  # more points on it
    normal, distance, _ = fit_ground_plane(points)
    assert distance == pytest.approx(1.65, rel=0.05)  # counting alone: 3.28, the surface's
    assert np.degrees(np.arccos(min(1.0, normal[1]))) < 1


def test_a_very_noisy_road_is_still_found():
    """With 14% depth noise few candidate planes hold 15% of the points: the one that scores best
    among those that do is kept (not the best-scoring plane, which may hold fewer)."""
    rng = np.random.default_rng(0)
    depth, _ = road_depth(1.65)
    normal, distance, _ = fit_ground_plane(ground_points(depth * rng.normal(1, 0.14, depth.shape), K))
    assert distance == pytest.approx(1.65, rel=0.15)  # +13.8%: points beneath push it down (counting: +7.8%)
    assert np.degrees(np.arccos(min(1.0, normal[1]))) < 3


def test_no_road_is_an_error():
    wall = np.full((HEIGHT, WIDTH), 5.0)  # a wall facing the camera: its normal is the z axis
    with pytest.raises(NoGroundError, match="no ground plane"):
        ground_scale(wall, K, 1.65)
    steep, _ = road_depth(1.65, pitch_degrees=45)  # a plane tilted further than a road can be
    with pytest.raises(NoGroundError, match="within 20 degrees"):
        ground_scale(steep, K, 1.65)
    ceiling, _ = road_depth(1.65)
    with pytest.raises(NoGroundError):  # the plane above the camera, seen upside down
        ground_scale(ceiling[::-1], K, 1.65)


@pytest.mark.parametrize("bad", [0, -1.65, float("nan"), float("inf"), "tall", None])
def test_camera_height_must_be_positive_metres(bad):
    with pytest.raises(ValueError, match="--camera_height must be the camera's height"):
        check_camera_height(bad)
    depth, _ = road_depth(1.65)
    with pytest.raises(ValueError, match="--camera_height"):
        ground_scale(depth, K, bad)


def test_sequence_scale_is_the_median_of_the_frames_with_ground():
    assert sequence_scale([2.0, None, 1.0, 10.0]) == 2.0
    with pytest.raises(NoGroundError, match="any of the 2 frames"):
        sequence_scale([None, None])


@pytest.mark.parametrize("image_size", [(1242, 375), (621, 188)])
def test_a_depth_map_resized_from_a_larger_image_back_projects_onto_its_road(image_size):
    """The network sees a resize: its pixel u looks where the image's (u + 0.5) W / w - 0.5 does.
    With the image's size the road's points lie on the road; without it the cloud is tilted (the
    scale, the road's distance, is the same either way)."""
    big = camera_matrix(KITTIDataset.K, *image_size)
    u, v = np.meshgrid((np.arange(WIDTH) + 0.5) * image_size[0] / WIDTH - 0.5,
                       (np.arange(HEIGHT) + 0.5) * image_size[1] / HEIGHT - 0.5)
    rows = (v - big[1, 2]) / big[1, 1]  # the rays' y per unit depth, level camera
    road = rows > 1.65 / 80
    depth = np.where(road, 1.65 / np.where(road, rows, 1), 80.0)  # a level road 1.65 m below, 80 m beyond
    truth = np.stack([(u - big[0, 2]) / big[0, 0] * depth, rows * depth, depth], -1)  # the points the image sees
    resized = camera_matrix(KITTIDataset.K, WIDTH, HEIGHT, image_size)
    np.testing.assert_allclose(backproject(depth, resized), truth, rtol=1e-9, atol=1e-9)
    assert np.abs(truth[road][:, 1] - 1.65).max() < 1e-9
    tilted = backproject(depth, K)[road]
    assert np.abs(tilted[:, 1] - 1.65).max() > 0.05 * 1.65  # the far road, too high
    assert ground_scale(depth, resized, 1.65) == pytest.approx(ground_scale(depth, K, 1.65), rel=1e-4)
    assert ground_scale(depth, resized, 1.65) == pytest.approx(1.0, abs=1e-3)


def test_camera_path_chains_the_inverse_motions_and_scales_translations():
    # the camera moves 1 unit forward per frame: points move 1 unit towards it (z - 1)
    forward = np.eye(4)
    forward[2, 3] = -1
    turn = np.eye(4)  # and turns 90 degrees left (about -y) before the last step
    turn[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    poses = camera_path([forward, forward, turn, forward], scale=2.0)
    assert poses.shape == (5, 4, 4)
    np.testing.assert_allclose(poses[:, :3, 3], [[0, 0, 0], [0, 0, 2], [0, 0, 4], [0, 0, 4], [-2, 0, 4]],
                               atol=1e-12)
