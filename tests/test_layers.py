"""Geometry, warping and losses: against the reference's golden values and independent NumPy."""
import numpy as np
import paddle
import pytest

from conftest import GOLDEN, need
import paddle.nn.functional as F

from layers import (SSIM, BackprojectDepth, Project3D, compute_depth_errors, disp_to_depth,
                    get_smooth_loss, reflection_pad, transformation_from_parameters, warp)


def golden():
    return np.load(need(GOLDEN))


def t(x):
    return paddle.to_tensor(np.asarray(x))


def rodrigues(v):
    """Rotation matrix of an axis-angle vector, written independently of layers.py."""
    angle = np.linalg.norm(v)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def test_disp_to_depth_spans_the_depth_range():
    scaled, depth = disp_to_depth(t(np.array([0.0, 0.5, 1.0], np.float32)), 0.1, 100)
    np.testing.assert_allclose(depth.numpy()[[0, 2]], [100, 0.1], rtol=1e-5)
    np.testing.assert_allclose(scaled.numpy() * depth.numpy(), 1, rtol=1e-6)


def test_transformation_is_rodrigues_and_inverts():
    rng = np.random.RandomState(0)
    aa = rng.randn(4, 1, 3).astype(np.float32)
    tr = rng.randn(4, 1, 3).astype(np.float32)
    M = transformation_from_parameters(t(aa), t(tr)).numpy()
    M_inv = transformation_from_parameters(t(aa), t(tr), invert=True).numpy()
    for i in range(4):
        np.testing.assert_allclose(M[i, :3, :3], rodrigues(aa[i, 0].astype(np.float64)), atol=1e-5)
        np.testing.assert_allclose(M[i, :3, 3], tr[i, 0], atol=1e-6)
        np.testing.assert_allclose(M[i] @ M_inv[i], np.eye(4), atol=1e-5)


def test_transformation_matches_golden():
    g = golden()
    aa, tr = t(g["layer/transform/axisangle"]), t(g["layer/transform/translation"])
    np.testing.assert_allclose(transformation_from_parameters(aa, tr).numpy(),
                               g["layer/transform/forward"], atol=1e-6)
    np.testing.assert_allclose(transformation_from_parameters(aa, tr, invert=True).numpy(),
                               g["layer/transform/inverse"], atol=1e-6)


def test_backproject_then_project_is_the_pixel_grid():
    h, w = 6, 10
    K = np.array([[[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]]],
                 np.float32).repeat(2, 0)
    depth = np.random.RandomState(1).uniform(1, 50, (2, 1, h, w)).astype(np.float32)
    points = BackprojectDepth(h, w)(t(depth), t(np.linalg.inv(K)))
    np.testing.assert_allclose(points.numpy()[:, 2].reshape(2, 1, h, w), depth, rtol=1e-5)
    grid = Project3D(h, w)(points, t(K), t(np.eye(4, dtype=np.float32)[None].repeat(2, 0))).numpy()
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    np.testing.assert_allclose(grid[0, ..., 0], xs / (w - 1) * 2 - 1, atol=1e-5)
    np.testing.assert_allclose(grid[1, ..., 1], ys / (h - 1) * 2 - 1, atol=1e-5)


def test_project3d_moves_points_by_the_stereo_baseline():
    h, w = 4, 8
    K = np.array([[[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]]],
                 np.float32)
    T = np.eye(4, dtype=np.float32)[None]
    T[0, 0, 3] = 0.1
    points = BackprojectDepth(h, w)(t(np.full((1, 1, h, w), 2.0, np.float32)), t(np.linalg.inv(K)))
    moved = Project3D(h, w)(points, t(K), t(T)).numpy()
    still = Project3D(h, w)(points, t(K), t(np.eye(4, dtype=np.float32)[None])).numpy()
    shift_pixels = (moved[..., 0] - still[..., 0]) * (w - 1) / 2
    np.testing.assert_allclose(moved[..., 1], still[..., 1], atol=1e-6)
    np.testing.assert_allclose(shift_pixels, 0.58 * w * 0.1 / 2.0, rtol=1e-5)


def bilinear_border(image, grid):
    """NumPy float64 grid sampling (align_corners=True, border padding) for one image."""
    c, h, w = image.shape
    x = np.clip((grid[..., 0] + 1) / 2 * (w - 1), 0, w - 1)
    y = np.clip((grid[..., 1] + 1) / 2 * (h - 1), 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = x - x0, y - y0
    return (image[:, y0, x0] * (1 - fx) * (1 - fy) + image[:, y0, x0 + 1] * fx * (1 - fy) +
            image[:, y0 + 1, x0] * (1 - fx) * fy + image[:, y0 + 1, x0 + 1] * fx * fy)


def test_warp_values_and_grid_gradient_match_an_independent_computation():
    rng = np.random.RandomState(2)
    image = rng.rand(1, 3, 5, 7)
    # inside the image, away from pixel centres (no kinks), plus a clamped border point
    grid = rng.uniform(-0.9, 0.9, (1, 4, 6, 2))
    grid[0, 0, 0] = [-1.4, 0.3]
    weights = rng.randn(1, 3, 4, 6)

    def loss(g):
        return (bilinear_border(image[0], g[0]) * weights[0]).sum()

    g_t = paddle.to_tensor(grid.astype(np.float32), stop_gradient=False)
    img_t = paddle.to_tensor(image.astype(np.float32))  # needs no gradient: the crashing case
    out = warp(img_t, g_t)
    np.testing.assert_allclose(out.numpy()[0], bilinear_border(image[0], grid[0]), atol=1e-5)
    (out * paddle.to_tensor(weights.astype(np.float32))).sum().backward()
    numeric = np.zeros_like(grid)
    eps = 1e-6
    for idx in np.ndindex(grid.shape):
        step = np.zeros_like(grid)
        step[idx] = eps
        numeric[idx] = (loss(grid + step) - loss(grid - step)) / (2 * eps)
    np.testing.assert_allclose(g_t.grad.numpy(), numeric, atol=1e-3)
    assert numeric[0, 0, 0, 0] == 0  # a clamped coordinate gets no gradient
    assert img_t.grad is None


def test_ssim_matches_golden_and_is_zero_for_equal_images():
    g = golden()
    out = SSIM()(t(g["layer/ssim/x"]), t(g["layer/ssim/y"])).numpy()
    np.testing.assert_allclose(out, g["layer/ssim/out"], atol=1e-6)
    x = t(np.random.RandomState(3).rand(1, 3, 8, 8).astype(np.float32))
    assert float(SSIM()(x, x).abs().max()) < 1e-6


def test_ssim_with_precomputed_target_statistics_is_bit_identical():
    rng = np.random.RandomState(4)
    x, y = (t(rng.rand(2, 3, 10, 14).astype(np.float32)) for _ in range(2))
    ssim = SSIM()
    direct = ssim(x, y).numpy()
    assert np.array_equal(ssim(x, ssim.target_stats(y)).numpy(), direct)
    # the statistics are those of the target: another target's give another result
    assert not np.array_equal(ssim(x, ssim.target_stats(x)).numpy(), direct)


def test_reflection_pad_matches_paddle_reflect_padding_and_its_gradient():
    rng = np.random.RandomState(5)
    data = rng.rand(2, 3, 5, 7).astype(np.float32)
    weights = t(rng.rand(2, 3, 7, 9).astype(np.float32))
    grads = []
    for pad in (reflection_pad, lambda v: F.pad(v, [1, 1, 1, 1], mode="reflect")):
        x = paddle.to_tensor(data, stop_gradient=False)
        out = pad(x)
        (out * weights).sum().backward()
        grads.append((out.numpy(), x.grad.numpy()))
    assert np.array_equal(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-6)
    padded = grads[0][0]
    assert np.array_equal(padded[:, :, 0, 1:-1], data[:, :, 1])  # mirrored about the border row
    assert np.array_equal(padded[:, :, 1:-1, -1], data[:, :, :, -2])


def test_smoothness_matches_golden_and_numpy():
    g = golden()
    disp, img = g["layer/smooth/disp"], g["layer/ssim/x"]
    got = float(get_smooth_loss(t(disp), t(img)))
    np.testing.assert_allclose(got, g["layer/smooth/out"], rtol=1e-5)
    wx = np.exp(-np.abs(np.diff(img, axis=3)).mean(1, keepdims=True))
    wy = np.exp(-np.abs(np.diff(img, axis=2)).mean(1, keepdims=True))
    expected = (np.abs(np.diff(disp, axis=3)) * wx).mean() + (np.abs(np.diff(disp, axis=2)) * wy).mean()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    flat = t(np.ones((1, 1, 4, 4), np.float32))
    assert float(get_smooth_loss(flat, t(np.random.rand(1, 3, 4, 4).astype(np.float32)))) == 0


def test_depth_errors_match_golden_and_hand_values():
    g = golden()
    np.testing.assert_allclose(compute_depth_errors(g["layer/depth_errors/gt"], g["layer/depth_errors/pred"]),
                               g["layer/depth_errors/out"], rtol=1e-6)
    abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3 = compute_depth_errors([10.0, 20.0], [10.0, 30.0])
    assert abs_rel == pytest.approx(0.25) and sq_rel == pytest.approx(2.5)
    assert rmse == pytest.approx(np.sqrt(50)) and a1 == 0.5 and a2 == 1 and a3 == 1
    assert rmse_log == pytest.approx(np.sqrt(np.log(1.5) ** 2 / 2))
