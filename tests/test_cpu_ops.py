"""The compiled CPU operators (cpu_ops.py): the values and gradients of the oneDNN convolution,
the reflection padding, the warp, the window means, the upsampling and the photometric error against Paddle's kernels
in float64, where they are used, and what happens when they cannot be built."""
import platform
import types
import zipfile

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import cpu_ops
import layers
from cpu_ops import Conv2D

BUILDS_HERE = platform.system() == "Linux" and platform.machine() == "x86_64"


@pytest.fixture
def fresh_state(monkeypatch):
    """operators() tries again (and its result is forgotten after the test)."""
    monkeypatch.setitem(cpu_ops._state, "tried", False)
    monkeypatch.setitem(cpu_ops._state, "ops", None)


def relative_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def paddle_divides_as_ieee():
    """Paddle's float32 division of large tensors goes to MKL's vector division, which on CPUs
    with AVX-512 rounds a few quotients in a thousand one ulp off (DEVELOPERS.md)."""
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(0.1, 2, 12000).astype(np.float32) for _ in range(2))
    return np.array_equal((paddle.to_tensor(a) / paddle.to_tensor(b)).numpy(), a / b)


def assert_same_error(fused, composed, exact):
    """The fused error map is the composed one bit for bit, as IEEE 754 arithmetic gives it in
    the written order. Where Paddle's division is not IEEE's, its SSIM quotient (about 1) is
    an ulp off in places, which 1 - quotient keeps: within that, and about as close to float64."""
    if paddle_divides_as_ieee():
        np.testing.assert_array_equal(fused, composed)
    else:
        np.testing.assert_allclose(fused, composed, rtol=0, atol=np.finfo(np.float32).eps)
        assert np.mean(fused != composed) < 0.02  # where a quotient was rounded off, not everywhere
        assert relative_l2(fused, exact) <= 1.1 * relative_l2(composed, exact)  # as the gradients


def results(layer, x):
    """Output and gradients of sum(y^2) with respect to the input (when it takes one), the
    weights and the bias."""
    y = layer(x)
    (y * y).sum().backward()
    found = {"out": y.numpy(), "weight": layer.weight.grad.numpy()}
    if layer.bias is not None:
        found["bias"] = layer.bias.grad.numpy()
    if not x.stop_gradient:
        found["input"] = x.grad.numpy()
    return found


def float64_results(layer, x, stride, padding):
    x64 = paddle.to_tensor(x.numpy().astype(np.float64), stop_gradient=x.stop_gradient)
    w64 = paddle.to_tensor(layer.weight.numpy().astype(np.float64), stop_gradient=False)
    b64 = None if layer.bias is None else paddle.to_tensor(layer.bias.numpy().astype(np.float64),
                                                           stop_gradient=False)
    y = F.conv2d(x64, w64, b64, stride, padding)
    (y * y).sum().backward()
    found = {"out": y.numpy(), "weight": w64.grad.numpy()}
    if b64 is not None:
        found["bias"] = b64.grad.numpy()
    if not x.stop_gradient:
        found["input"] = x64.grad.numpy()
    return found


CASES = [  # in, out, kernel, stride, padding, bias, input takes a gradient, input H x W
    (8, 16, 3, 1, 1, True, True, (12, 20)),      # the decoder's 3x3 on a padded input
    (3, 64, 7, 2, 3, False, False, (24, 40)),    # the encoder's stem on images
    (16, 1, 3, 1, 0, True, True, (14, 22)),      # one output channel (disparity)
    (32, 64, 1, 2, 0, False, True, (9, 11)),     # a downsampling shortcut, odd size
    (12, 12, 3, [2, 1], [1, 0], True, True, (10, 13)),
]


@pytest.mark.skipif(not BUILDS_HERE, reason="the oneDNN convolution is built on Linux x86_64 only")
@pytest.mark.parametrize("cin, cout, kernel, stride, padding, bias, input_grad, size", CASES)
def test_values_and_gradients_are_as_accurate_as_paddles(cin, cout, kernel, stride, padding, bias, input_grad,
                                                         size):
    assert cpu_ops.operators() is not None, "the oneDNN convolution did not build (see stderr)"
    paddle.seed(3)
    layer = Conv2D(cin, cout, kernel, stride, padding, bias_attr=None if bias else False)
    x = paddle.randn((2, cin) + size)
    x.stop_gradient = not input_grad
    ours = results(layer, x)
    exact = float64_results(layer, x, stride, padding)
    assert sorted(ours) == sorted(exact)
    assert (x.grad is None) == (not input_grad)
    for name in ours:
        error = relative_l2(ours[name], exact[name])
        assert error < 2e-5, (name, error)
    with paddle.no_grad():
        paddles = F.conv2d(x, layer.weight, layer.bias, stride, padding).numpy()
    assert relative_l2(ours["out"], paddles) < 2e-6


def test_eager_cpu_calls_use_the_operator_and_traced_programs_do_not(monkeypatch):
    calls = []

    class Spy:
        def onednn_conv2d(self, x, weight, bias, stride, padding, need_dx):
            calls.append((stride, padding, need_dx))
            return F.conv2d(x, weight, bias, stride, padding)

    monkeypatch.setitem(cpu_ops._state, "tried", True)
    monkeypatch.setitem(cpu_ops._state, "ops", Spy())
    layer = Conv2D(4, 6, 3, 2, 1)
    x = paddle.randn([1, 4, 8, 8])
    layer(x)
    assert calls == [([2, 2], [1, 1], False)]
    x.stop_gradient = False
    layer(x)
    assert calls[-1][2] is True
    Conv2D(4, 6, 3, padding=[1, 1, 2, 2])(x)  # symmetric per axis, as Paddle reads it
    Conv2D(4, 6, 3, padding="VALID")(x)
    assert calls[2:] == [([1, 1], [1, 2], True), ([1, 1], [0, 0], True)]
    for other in [Conv2D(4, 6, 3, padding="SAME"), Conv2D(4, 6, 3, padding=[0, 1, 1, 1]),
                  Conv2D(4, 4, 3, padding=1, groups=2), Conv2D(4, 6, 3, padding=2, dilation=2),
                  Conv2D(4, 6, 3, padding=1, padding_mode="reflect")]:
        other(x)  # Paddle's kernel
    Conv2D(8, 6, 3, data_format="NHWC")(paddle.randn([1, 5, 5, 8]))
    as_float64 = Conv2D(4, 6, 3)
    as_float64.to(dtype="float64")
    as_float64(x.astype("float64"))
    assert len(calls) == 4
    traced = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec([1, 4, 8, 8], "float32")],
                                  full_graph=True)
    np.testing.assert_allclose(traced(x).numpy(), F.conv2d(x, layer.weight, layer.bias, 2, 1).numpy(), atol=1e-6)
    assert len(calls) == 4


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("shape, transposed", [((2, 3, 5, 7), False), ((1, 2, 2, 2), False), ((2, 4, 9, 3), True)])
def test_reflection_padding_copies_exactly_and_folds_its_gradient_back(shape, transposed):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    paddle.seed(5)
    x = paddle.randn(shape)
    x.stop_gradient = False
    source = x.transpose([0, 1, 3, 2]) if transposed else x  # a strided view
    padded = layers.reflection_pad(source)
    weights = paddle.randn(padded.shape)
    (padded * weights).sum().backward()
    x64 = paddle.to_tensor(x.numpy().astype(np.float64), stop_gradient=False)
    source64 = x64.transpose([0, 1, 3, 2]) if transposed else x64
    expected = F.pad(source64, [1, 1, 1, 1], mode="reflect")
    (expected * paddle.to_tensor(weights.numpy().astype(np.float64))).sum().backward()
    np.testing.assert_array_equal(padded.numpy(), expected.numpy().astype(np.float32))
    np.testing.assert_allclose(x.grad.numpy(), x64.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("shape, transposed", [((2, 5, 9, 11), False), ((1, 2, 3, 3), False), ((2, 3, 7, 4), True)])
def test_window_means_and_their_gradient_are_avg_pools(shape, transposed):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for function, dtype in ((layers.mean3x3, "float32"), (lambda t: F.avg_pool2d(t, 3, 1), "float64")):
        t = paddle.to_tensor(x.astype(dtype), stop_gradient=False)
        out = function(t.transpose([0, 1, 3, 2]) if transposed else t)
        weights = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
        (out * paddle.to_tensor(weights)).sum().backward()
        results.append((out.numpy(), t.grad.numpy()))
    (out, grad), (out64, grad64) = results
    np.testing.assert_allclose(out, out64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad, grad64, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("operator, function, paddles", [
    ("reflection_pad1", layers.reflection_pad, lambda x: F.pad(x, [1, 1, 1, 1], mode="reflect")),
    ("mean3x3", layers.mean3x3, lambda x: F.avg_pool2d(x, 3, 1)),
    ("upsample2", layers.upsample, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))])
def test_layers_use_the_operators_only_eagerly_in_float32(monkeypatch, operator, function, paddles):
    calls = []

    def spy(x):
        calls.append(x.shape)
        return paddles(x)

    monkeypatch.setitem(cpu_ops._state, "tried", True)
    monkeypatch.setitem(cpu_ops._state, "ops", types.SimpleNamespace(**{operator: spy}))
    x = paddle.randn([1, 2, 4, 5])
    function(x)
    function(x.astype("float64"))
    traced = paddle.jit.to_static(function, input_spec=[paddle.static.InputSpec([1, 2, 4, 5])], full_graph=True)
    np.testing.assert_array_equal(traced(x).numpy(), paddles(x).numpy())
    assert calls == [[1, 2, 4, 5]]


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("transposed", [False, True])
def test_upsampling_copies_and_sums_its_gradient_as_interpolate(transposed):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    results = []
    for function in (layers.upsample, lambda t: F.interpolate(t, scale_factor=2, mode="nearest")):
        t = paddle.to_tensor(x, stop_gradient=False)
        out = function(t.transpose([0, 1, 3, 2]) if transposed else t)
        (out * paddle.to_tensor(np.random.default_rng(9).standard_normal(out.shape).astype(np.float32))).sum().backward()
        results.append((out.numpy(), t.grad.numpy()))
    (out, grad), (expected, expected_grad) = results
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(grad, expected_grad)  # four terms, summed in the same order


def photometric(function, pred, target, dtype, transposed=False):
    """function's error map and the gradient to `pred` of a fixed weighted sum of it."""
    leaf = paddle.to_tensor(pred.astype(dtype), stop_gradient=False)
    x, y = leaf, paddle.to_tensor(target.astype(dtype))
    if transposed:  # a strided view, as the rest of a step may hand over
        x, y = x.transpose([0, 1, 3, 2]), y.transpose([0, 1, 3, 2])
    out = function(x, y, layers.SSIM().target_stats(y))
    weights = np.random.default_rng(5).standard_normal(out.shape)
    (out * paddle.to_tensor(weights.astype(dtype))).sum().backward()
    return out.numpy(), leaf.grad.numpy()


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("shape, transposed", [((2, 3, 12, 17), False), ((1, 2, 2, 2), False), ((3, 1, 7, 5), True)])
def test_photometric_error_is_the_composed_one_with_as_accurate_a_gradient(shape, transposed):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(8)
    target = rng.uniform(0, 1, shape).astype(np.float32)
    pred = np.clip(target + 0.05 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    pred[0, 0, :1, :2] = target[0, 0, :1, :2]  # ties of the L1 term
    fused = photometric(layers.photometric_error, pred, target, "float32", transposed)
    composed = photometric(layers.composed_photometric_error, pred, target, "float32", transposed)
    exact = photometric(layers.composed_photometric_error, pred, target, "float64", transposed)
    assert_same_error(fused[0], composed[0], exact[0])
    assert relative_l2(fused[1], exact[1]) <= 1.1 * relative_l2(composed[1], exact[1]) + 1e-7
    assert relative_l2(fused[1], exact[1]) < 1e-5


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
def test_photometric_error_clamps_as_the_composed_one_where_ssim_rounds_below_zero(monkeypatch):
    """An image that nearly equals its target: SSIM's loss rounds below 0 in places and is
    clamped. Its float32 gradient is ill-conditioned there (cancellation), for both versions."""
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(3)
    target = rng.uniform(0, 1, (1, 3, 9, 13)).astype(np.float32)
    pred = target + 1e-6 * rng.standard_normal(target.shape).astype(np.float32)
    with monkeypatch.context() as patched:
        patched.setattr(paddle, "clip", lambda x, low, high: x)
        unclamped = layers.SSIM()(paddle.to_tensor(pred), layers.SSIM().target_stats(paddle.to_tensor(target)))
    assert (unclamped.numpy() < 0).any()
    fused = photometric(layers.photometric_error, pred, target, "float32")
    composed = photometric(layers.composed_photometric_error, pred, target, "float32")
    exact = photometric(layers.composed_photometric_error, pred, target, "float64")
    assert_same_error(fused[0], composed[0], exact[0])
    assert relative_l2(fused[1], exact[1]) <= 1.1 * relative_l2(composed[1], exact[1]) + 1e-7


def test_photometric_error_uses_the_operator_only_eagerly_in_float32_without_target_gradient(monkeypatch):
    calls = []

    def spy(x, y, mu_y, yy):
        calls.append(x.shape)
        return layers.composed_photometric_error(x, x, (y, mu_y, paddle.square(mu_y), yy))

    x, y = paddle.rand([1, 3, 4, 5]), paddle.rand([1, 3, 4, 5])
    y64 = y.astype("float64")
    y_grad = y.detach()
    y_grad.stop_gradient = False  # a target that takes a gradient gets it from the composed error
    stats = [layers.SSIM().target_stats(t) for t in (y, y64, y_grad)]
    monkeypatch.setitem(cpu_ops._state, "tried", True)
    monkeypatch.setitem(cpu_ops._state, "ops", types.SimpleNamespace(
        photometric_error=spy, mean3x3=lambda t: F.avg_pool2d(t, 3, 1),
        reflection_pad1=lambda t: F.pad(t, [1, 1, 1, 1], mode="reflect")))
    layers.photometric_error(x, y, stats[0])
    layers.photometric_error(x.astype("float64"), y64, stats[1])
    layers.photometric_error(x, y_grad, stats[2]).sum().backward()
    assert calls == [[1, 3, 4, 5]]
    expected = y.detach()
    expected.stop_gradient = False
    layers.composed_photometric_error(x, expected, layers.SSIM().target_stats(expected)).sum().backward()
    np.testing.assert_allclose(y_grad.grad.numpy(), expected.grad.numpy(), rtol=1e-5, atol=1e-7)  # pool gradients differ in order


def warped(warp, image, grid, image_grad, dtype):
    """warp's output and the gradients of a fixed weighted sum of it (the image's or None)."""
    x = paddle.to_tensor(image.astype(dtype), stop_gradient=not image_grad)
    g = paddle.to_tensor(grid.astype(dtype), stop_gradient=False)
    out = warp(x, g.transpose([0, 2, 1, 3]))  # a strided view, as the rest of a step may hand over
    weights = np.random.default_rng(1).standard_normal(out.shape)
    (out * paddle.to_tensor(weights.astype(dtype))).sum().backward()
    return out.numpy(), g.grad.numpy(), x.grad.numpy() if image_grad else None


def paddles_grid_sample(x, g):
    return F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=True)


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("image_shape, grid_size", [((2, 3, 24, 40), (36, 20)), ((1, 2, 5, 7), (11, 9))])
@pytest.mark.parametrize("image_grad", [True, False])
def test_warp_samples_and_differentiates_as_float64_grid_sample(image_shape, grid_size, image_grad):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(7)
    image = rng.standard_normal(image_shape).astype(np.float32)  # both sides see the same inputs
    grid = rng.uniform(-1.3, 1.3, (image_shape[0],) + grid_size + (2,)).astype(np.float32)  # some clamped
    ours = warped(layers.warp, image, grid, image_grad, "float32")
    paddles = warped(paddles_grid_sample, image, grid, True, "float32")
    expected = warped(paddles_grid_sample, image, grid, True, "float64")
    # float32 coordinates are off by up to 1e-7 of the image width on both sides: that, not the
    # arithmetic, sets the error, and it is Paddle's own.
    for got, paddle_got, want in zip(ours, paddles, expected):
        if got is not None:
            assert relative_l2(got, want) <= 1.1 * relative_l2(paddle_got, want) + 1e-7
            assert relative_l2(got, want) < 1e-5


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
def test_warp_passes_no_grid_gradient_from_the_border_itself():
    """PyTorch's convention (the reference trains with it): a coordinate exactly on the border
    counts as clamped. Paddle's grid_sample passes a gradient there."""
    image = np.random.default_rng(3).standard_normal((1, 2, 5, 7))
    grid = np.array([[[[1.0, -1.0], [-1.0, 0.25]], [[0.5, 1.0], [0.5, 0.25]]]])
    _, grad, _ = warped(layers.warp, image, grid, False, "float32")
    _, paddles, _ = warped(paddles_grid_sample, image, grid, True, "float64")
    assert np.all(grad[0, 0, 0] == 0) and grad[0, 0, 1, 0] == 0 and grad[0, 1, 0, 1] == 0
    np.testing.assert_allclose(grad[0, 1, 1], paddles[0, 1, 1], rtol=1e-5)
    assert np.all(grad[0, 0, 1, 1] != 0) and abs(paddles[0, 0, 0, 0]) > 0.1  # the other axis; Paddle's differs


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("function", [layers.reflection_pad, layers.mean3x3, layers.upsample])
def test_backwards_do_not_hold_on_to_their_input(function):
    """Their gradients need only the output's: changing the input in place afterwards is fine,
    and the input's memory is free before the backward."""
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    leaf = paddle.randn([1, 2, 5, 6])
    leaf.stop_gradient = False
    x = leaf * 2
    out = function(x)
    x.add_(paddle.ones_like(x))
    out.sum().backward()
    expected = paddle.to_tensor(leaf.numpy(), stop_gradient=False)
    function(expected * 2).sum().backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), expected.grad.numpy())


@pytest.mark.skipif(not BUILDS_HERE, reason="the operators are built on Linux x86_64 only")
@pytest.mark.parametrize("image_size", [(1, 1), (1, 5), (2, 1), (2, 2)])
def test_warp_of_tiny_images_is_paddles_and_a_nan_coordinate_stays_in_its_pixel(image_size):
    assert cpu_ops.operators() is not None, "the operators did not build (see stderr)"
    rng = np.random.default_rng(5)
    image = rng.standard_normal((1, 2) + image_size).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (1, 3, 4, 2)).astype(np.float32)
    ours = warped(layers.warp, image, grid, True, "float32")
    for got, want in zip(ours, warped(paddles_grid_sample, image, grid, True, "float64")):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # A diverged depth: NaN comes out of that pixel only, and nothing is read outside the image.
    # (Paddle 3.0.0's own grid_sample segfaults on it, so it is not the reference here.)
    grid[0, 2, 3] = [np.nan, 0.5]
    out, grid_grad, image_grad = warped(layers.warp, image, grid, True, "float32")
    nan = np.isnan(out)
    assert nan[0, :, 3, 2].all() and nan.sum() == 2  # warped() hands over the grid transposed
    np.testing.assert_array_equal(out[~nan], ours[0][~nan])
    assert np.isnan(grid_grad[0, 2, 3]).any() and not np.isnan(np.delete(grid_grad.reshape(-1, 2), 11, 0)).any()
    assert not np.isnan(image_grad).any()


def test_without_the_operator_paddles_kernel_runs_and_says_why_once(monkeypatch, fresh_state, capsys):
    def unavailable():
        raise cpu_ops.Unavailable("no C++ compiler (install g++)")

    monkeypatch.setattr(cpu_ops, "build_and_load", unavailable)
    layer = Conv2D(3, 5, 3, 1, 1)
    x = paddle.randn([2, 3, 6, 7])
    for _ in range(2):
        np.testing.assert_array_equal(layer(x).numpy(), F.conv2d(x, layer.weight, layer.bias, 1, 1).numpy())
    err = capsys.readouterr().err
    assert err.count("convolutions, padding, warps, window means, upsampling and photometric errors run on "
                     "Paddle's own CPU kernels") == 1
    assert err.strip().endswith("no C++ compiler (install g++)")


def test_monodepth2_cpu_ops_paddle_keeps_paddles_kernels(monkeypatch, fresh_state):
    monkeypatch.setenv("MONODEPTH2_CPU_OPS", "paddle")
    monkeypatch.setattr(cpu_ops, "build_and_load", lambda: pytest.fail("built although turned off"))
    assert cpu_ops.operators() is None


def test_another_onednn_version_is_refused_by_name(monkeypatch, tmp_path):
    build_here(monkeypatch, tmp_path)
    monkeypatch.setattr(cpu_ops, "library_version", lambda: (3, 9, 1))
    with pytest.raises(cpu_ops.Unavailable, match=r"Paddle links oneDNN 3\.9\.1, these headers are for 3\.6"):
        cpu_ops.build_and_load()


def test_headers_are_taken_only_with_the_pinned_hash(monkeypatch, tmp_path):
    """A wheel of the right name and other contents (a changed mirror) is refused; without an
    index nothing is fetched. Neither is remembered as a failure: the next run tries again."""
    offered = tmp_path / "offered"
    offered.mkdir()
    with zipfile.ZipFile(str(offered / "onednn_devel-2025.0.1-py2.py3-none-manylinux_2_28_x86_64.whl"), "w") as wheel:
        wheel.writestr("onednn_devel-2025.0.1.data/data/include/oneapi/dnnl/dnnl.hpp", "#error planted\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(offered))
    with pytest.raises(cpu_ops.Unavailable, match="does not have the SHA-256 pinned in"):
        cpu_ops.fetch_headers(str(tmp_path))
    assert not (tmp_path / "include").exists()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing"))
    with pytest.raises(cpu_ops.Unavailable, match="pip could not download onednn-devel==2025.0.1 .*PIP_FIND_LINKS"):
        cpu_ops.fetch_headers(str(tmp_path))
    build_here(monkeypatch, tmp_path / "cache")
    with pytest.raises(cpu_ops.Unavailable, match="pip could not download"):
        cpu_ops.build_and_load()
    assert not (tmp_path / "cache" / "FAILED").exists()


def build_here(monkeypatch, folder):
    """build_and_load as on a Linux x86_64 machine with Paddle's oneDNN and a compiler, into `folder`."""
    monkeypatch.setattr(cpu_ops, "library_version", lambda: (3, 6, 2))
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_ops.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(cpu_ops, "cache_folder", lambda: str(folder))


def test_a_failed_compile_is_remembered_with_its_reason(monkeypatch, tmp_path):
    build_here(monkeypatch, tmp_path / "build")

    def fails(folder):
        raise cpu_ops.CompileFailed("building kernels failed (error: ...)")

    monkeypatch.setattr(cpu_ops, "compile_in", fails)
    with pytest.raises(cpu_ops.Unavailable, match=r"^building kernels failed \(error: ...\)$"):
        cpu_ops.build_and_load()
    monkeypatch.setattr(cpu_ops, "compile_in", lambda folder: pytest.fail("compiled again"))
    with pytest.raises(cpu_ops.Unavailable, match="failed .*delete .*build to try again"):
        cpu_ops.build_and_load()


def test_an_unwritable_cache_is_named(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    build_here(monkeypatch, blocked / "build")
    with pytest.raises(cpu_ops.Unavailable, match="cannot build in .*file/build .*MONODEPTH2_CACHE"):
        cpu_ops.build_and_load()
