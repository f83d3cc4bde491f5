"""Metric depth from one camera: the scale of depth known only up to scale, from the height
of the camera above a flat road.

    from metric_depth import camera_matrix, ground_scale
    K = camera_matrix(K_normalised, width, height, image_size)  # pixels of the width x height depth map
                                                                # of an image of image_size (W, H)
    scale = ground_scale(depth, K, camera_height=1.65)  # metres per unit of `depth`

The road's points, back-projected with the intrinsics, lie on a plane whose distance from the
camera is its mounting height; so scale = camera height / fitted plane distance. The plane is
fitted by RANSAC on the lower part of the image, rejecting planes whose normal is far from the
camera's down axis (+y: x right, y down, z forward) and preferring planes with nothing well
beneath them, then refined by least squares on its inliers. A video or a sequence takes the
median of its frames' scales (sequence_scale).
"""
import numpy as np

KITTI_CAMERA_HEIGHT = 1.65  # KITTI's colour cameras above the road, in metres
GROUND_ROWS = 0.55  # the plane is looked for below this fraction of the image's height
MAX_TILT_DEGREES = 20  # largest angle between the road's normal and the camera's down axis
INLIER_TOLERANCE = 0.03  # a point is on the plane within this fraction of the plane's distance
BENEATH = 5  # a point this many tolerances beneath a plane counts against it: nothing is seen under the road
MIN_GROUND_FRACTION = 0.15  # of the lower region's points, for the plane to count as the road
RANSAC_ITERATIONS = 200


class NoGroundError(ValueError):
    """No road plane in the lower part of the image."""


def camera_matrix(K, width, height, image_size=None):
    """The 3 x 3 pixel intrinsics of a width x height image from normalised ones (a 3x3 or 4x4
    matrix whose first row is divided by the width, its second by the height: datasets/).

    With `image_size` (W, H) of the image resized to width x height, the principal point takes
    the resize's half-pixel shift (pixel u sees the image's (u + 0.5) W / width - 0.5), which a
    point cloud needs and training leaves out as the reference does (DEVELOPERS.md)."""
    K = np.array(K, dtype=np.float64)[:3, :3].copy()
    K[0] *= width
    K[1] *= height
    if image_size is not None:
        K[0, 2] += 0.5 * width / image_size[0] - 0.5
        K[1, 2] += 0.5 * height / image_size[1] - 0.5
    return K


def backproject(depth, K):
    """H x W x 3 camera points (x right, y down, z forward) of an H x W depth map (z)."""
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    return (pixels @ np.linalg.inv(K).T) * depth[..., None]


def plane_through(points):
    """(unit normal with a non-negative y, distance) of the plane n . p = d through three points
    (distance None when they are collinear)."""
    normal = np.cross(points[1] - points[0], points[2] - points[0])
    length = np.linalg.norm(normal)
    if length < 1e-12:
        return None, None
    normal = normal / length * (1 if normal[1] >= 0 else -1)
    return normal, float(normal @ points[0])


def least_squares_plane(points):
    """(unit normal with a non-negative y, distance) of the total least-squares plane."""
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    normal = normal if normal[1] >= 0 else -normal
    return normal, float(normal @ centre)


def fit_ground_plane(points, max_tilt=MAX_TILT_DEGREES, tolerance=INLIER_TOLERANCE,
                     min_fraction=MIN_GROUND_FRACTION, iterations=RANSAC_ITERATIONS, seed=0):
    """(normal, distance, inlier mask) of the road plane n . p = d among N x 3 camera points
    (n points down, d > 0 is the camera's height in the points' units). Among the planes below
    the camera with normals within `max_tilt` degrees of +y that hold `min_fraction` of the
    points within `tolerance` * d, RANSAC keeps the one whose inliers minus the points more than
    BENEATH * tolerance * d beneath it are most, then refits it to its inliers (NoGroundError when
    there is none). The road is the lowest surface a camera above it sees: counting inliers
    alone, a partly trained network's noisy road lost to planes tilted 8-17 degrees through the
    near road and the feet of cars and walls, which leave most of the road beneath them
    (DEVELOPERS.md)."""
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 3:
        raise NoGroundError("no ground plane: fewer than 3 points")
    cos_tilt = np.cos(np.radians(max_tilt))
    rng = np.random.default_rng(seed)
    best, best_score, most = None, -np.inf, 0
    for sample in rng.integers(0, len(points), size=(iterations, 3)):
        normal, distance = plane_through(points[sample])
        if normal is None or normal[1] < cos_tilt or distance <= 0:
            continue
        offsets = points @ normal - distance
        count = np.count_nonzero(np.abs(offsets) < tolerance * distance)
        most = max(most, count)
        score = count - np.count_nonzero(offsets > BENEATH * tolerance * distance)
        if count >= min_fraction * len(points) and score > best_score:
            best, best_score = (normal, distance), score
    if best is None:
        raise NoGroundError("no ground plane: no plane within {} degrees of level below the camera holds {:.0%} "
                            "of the points of the lower image (largest: {:.0%})".format(
                                max_tilt, min_fraction, most / len(points)))
    normal, distance = best
    for _ in range(3):  # refit to the inliers, which the refined plane may change
        inliers = np.abs(points @ normal - distance) < tolerance * distance
        normal, distance = least_squares_plane(points[inliers])
    if normal[1] < cos_tilt or distance <= 0:
        raise NoGroundError("no ground plane: the refined plane is tilted {:.0f} degrees from level".format(
            np.degrees(np.arccos(min(normal[1], 1.0)))))
    return normal, distance, np.abs(points @ normal - distance) < tolerance * distance


def ground_points(depth, K, rows=GROUND_ROWS):
    """N x 3 camera points of the image rows below `rows` of its height with a positive,
    finite depth."""
    points = backproject(depth, K)[int(rows * depth.shape[0]):].reshape(-1, 3)
    return points[(points[:, 2] > 0) & np.isfinite(points).all(axis=1)]


def ground_scale(depth, K, camera_height, **fit_options):
    """Metres per unit of the H x W depth map `depth` (any scale) taken by a camera with the 3 x 3
    pixel intrinsics K mounted `camera_height` metres above a flat road that it sees in its lower
    part (NoGroundError otherwise)."""
    check_camera_height(camera_height)
    _, distance, _ = fit_ground_plane(ground_points(depth, K), **fit_options)
    return camera_height / distance


def sequence_scale(scales):
    """One scale for a video or sequence: the median of its frames' (None where no ground)."""
    found = [s for s in scales if s is not None]
    if not found:
        raise NoGroundError("no ground plane in any of the {} frames: --camera_height needs a flat road "
                            "visible in the lower part of the image".format(len(scales)))
    return float(np.median(found))


def check_camera_height(value, flag="--camera_height"):
    """ValueError naming the flag unless `value` is a positive finite number of metres."""
    try:
        ok = np.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("{} must be the camera's height above the road in metres (a positive number), "
                         "got {!r}".format(flag, value))
    return float(value)


def camera_path(motions, scale=1.0):
    """N+1 x 4 x 4 camera-to-first-camera poses from N 4 x 4 motions, each mapping a frame's
    camera points into the next frame's camera (the pose network's transform from frame 0 to
    frame 1); translations are multiplied by `scale`."""
    poses = [np.eye(4)]
    for motion in motions:
        step = np.linalg.inv(np.asarray(motion, dtype=np.float64))
        step[:3, 3] *= scale
        poses.append(poses[-1] @ step)
    return np.array(poses)
