// Bilinear sampling with border padding and align_corners=True (what layers.warp does to every
// source frame at every scale) for float32 tensors in Paddle's eager mode on the CPU. Built and
// loaded by cpu_ops.py. Paddle's grid_sample took 10x PyTorch's time forward and 4x forward +
// backward (AMD EPYC VM, 2 threads, bench_ops.py), and its backward crashes when only the grid
// wants a gradient (DEVELOPERS.md); training never needs the image's: `image_grad` false skips it.
//
// Coordinates follow PyTorch's convention: x = (g + 1) / 2 * (W - 1), clamped to [0, W - 1];
// a coordinate on or beyond the border passes no gradient back to the grid.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "paddle/extension.h"

namespace {

using kernels::dense;

// Where one output pixel reads: its corner (x0, y0), the fractions towards x0 + 1 and y0 + 1,
// and d(coordinate)/d(grid value) for x and y (0 where clamped). The corner stays one pixel
// inside the far border (a fraction of 1 there) so that all four neighbours always exist.
struct Tap {
  int64_t x0, y0;
  float fx, fy, dx, dy;
};

inline float unnormalize(float g, int64_t size, float* slope) {
  const float limit = static_cast<float>(size - 1);
  const float c = (g + 1.f) / 2.f * limit;
  if (std::isnan(c)) {  // a diverged depth or pose: NaN out, as in Paddle's and PyTorch's kernels
    *slope = c;
    return c;
  }
  if (c <= 0.f) {
    *slope = 0.f;
    return 0.f;
  }
  if (c >= limit) {
    *slope = 0.f;
    return limit;
  }
  *slope = limit / 2.f;
  return c;
}

inline void corner(float c, int64_t size, int64_t* at, float* fraction) {
  // c >= 0, so truncation floors; a NaN reads pixel 0 with NaN weights, never outside the image
  const int64_t i = size > 1 && !std::isnan(c) ? std::min(static_cast<int64_t>(c), size - 2) : 0;
  *at = i;
  *fraction = c - static_cast<float>(i);
}

inline Tap tap_at(const float* g, int64_t wi, int64_t hi) {
  Tap t;
  corner(unnormalize(g[0], wi, &t.dx), wi, &t.x0, &t.fx);
  corner(unnormalize(g[1], hi, &t.dy), hi, &t.y0, &t.fy);
  return t;
}

struct Shape {
  int64_t n, c, hi, wi, h, w;
  int64_t right() const { return wi > 1 ? 1 : 0; }  // offsets of the x0 + 1 and y0 + 1 neighbours
  int64_t down() const { return hi > 1 ? wi : 0; }
};

Shape shape_of(const paddle::Tensor& x, const paddle::Tensor& grid) {
  const auto& s = x.shape();
  const auto& g = grid.shape();
  PD_CHECK(s.size() == 4 && g.size() == 4 && g[3] == 2 && g[0] == s[0] && s[2] > 0 && s[3] > 0,
           "grid_sample_border: needs an N x C x H x W image and an N x H x W x 2 grid");
  return {s[0], s[1], s[2], s[3], g[1], g[2]};
}

// Calls visit(n, tap, offset of its corner in an image plane, pixel index p over n, h, w, and
// q over h, w) for every output pixel, rows spread over the threads.
template <typename Visit>
void each_pixel(const Shape& s, const float* grid, Visit visit) {
  const int64_t pixels = s.h * s.w;
#pragma omp parallel for
  for (int64_t row = 0; row < s.n * s.h; ++row) {
    const int64_t n = row / s.h;
    for (int64_t j = 0; j < s.w; ++j) {
      const int64_t p = row * s.w + j;
      const Tap t = tap_at(grid + 2 * p, s.wi, s.hi);
      visit(n, t, t.y0 * s.wi + t.x0, p, p - n * pixels);
    }
  }
}

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x_in, const paddle::Tensor& grid_in, bool) {
  const paddle::Tensor x = dense(x_in), grid = dense(grid_in);
  const Shape s = shape_of(x, grid);
  auto out = paddle::empty({s.n, s.c, s.h, s.w}, paddle::DataType::FLOAT32, x.place());
  const float* img = x.data<float>();
  float* o = out.data<float>();
  const int64_t plane = s.hi * s.wi, pixels = s.h * s.w, r = s.right(), d = s.down();
  each_pixel(s, grid.data<float>(), [&](int64_t n, const Tap& t, int64_t at, int64_t, int64_t q) {
    const float w00 = (1.f - t.fx) * (1.f - t.fy), w01 = t.fx * (1.f - t.fy);
    const float w10 = (1.f - t.fx) * t.fy, w11 = t.fx * t.fy;
    for (int64_t c = 0; c < s.c; ++c) {
      const float* v = img + (n * s.c + c) * plane + at;
      o[(n * s.c + c) * pixels + q] = v[0] * w00 + v[r] * w01 + v[d] * w10 + v[r + d] * w11;
    }
  });
  return {out};
}

std::vector<paddle::Tensor> Backward(const paddle::Tensor& x_in, const paddle::Tensor& grid_in,
                                     const paddle::Tensor& dout_in, bool image_grad) {
  const paddle::Tensor x = dense(x_in), grid = dense(grid_in), dout = dense(dout_in);
  const Shape s = shape_of(x, grid);
  // Paddle wants every gradient output allocated, even the image's when it takes none.
  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto dgrid = paddle::empty(grid.shape(), paddle::DataType::FLOAT32, x.place());
  const float* img = x.data<float>();
  const float* gr = grid.data<float>();
  const float* go = dout.data<float>();
  float* dg = dgrid.data<float>();
  const int64_t plane = s.hi * s.wi, pixels = s.h * s.w, r = s.right(), d = s.down();
  each_pixel(s, gr, [&](int64_t n, const Tap& t, int64_t at, int64_t p, int64_t q) {
    float gx = 0.f, gy = 0.f;
    for (int64_t c = 0; c < s.c; ++c) {
      const float* v = img + (n * s.c + c) * plane + at;
      const float g = go[(n * s.c + c) * pixels + q];
      const float v00 = v[0], v01 = v[r], v10 = v[d], v11 = v[r + d];
      gx += g * ((v01 - v00) * (1.f - t.fy) + (v11 - v10) * t.fy);
      gy += g * ((v10 - v00) * (1.f - t.fx) + (v11 - v01) * t.fx);
    }
    dg[2 * p] = gx * t.dx;
    dg[2 * p + 1] = gy * t.dy;
  });
  if (image_grad) {
    float* di = dx.data<float>();
    std::memset(di, 0, sizeof(float) * s.n * s.c * plane);
    // One plane per thread, so no two threads add to one value; the taps are recomputed per
    // plane rather than stored (the image gradient is not what training asks for).
#pragma omp parallel for
    for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
      const int64_t n = nc / s.c;
      float* di_plane = di + nc * plane;
      const float* g = go + nc * pixels;
      for (int64_t q = 0; q < pixels; ++q) {
        const Tap t = tap_at(gr + 2 * (n * pixels + q), s.wi, s.hi);
        if (std::isnan(t.fx) || std::isnan(t.fy)) continue;  // as Paddle's: no NaN into the image's
        float* v = di_plane + t.y0 * s.wi + t.x0;
        v[0] += g[q] * (1.f - t.fx) * (1.f - t.fy);
        v[r] += g[q] * t.fx * (1.f - t.fy);
        v[d] += g[q] * (1.f - t.fx) * t.fy;
        v[r + d] += g[q] * t.fx * t.fy;
      }
    }
  }
  return {dx, dgrid};
}

std::vector<std::vector<int64_t>> InferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& grid) {
  return {{x[0], x[1], grid[1], grid[2]}};
}

std::vector<paddle::DataType> InferDtype(const paddle::DataType& x, const paddle::DataType&) { return {x}; }

}  // namespace

PD_BUILD_OP(grid_sample_border)
    .Inputs({"X", "Grid"})
    .Outputs({"Out"})
    .Attrs({"image_grad: bool"})
    .SetKernelFn(PD_KERNEL(Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(InferDtype));

PD_BUILD_GRAD_OP(grid_sample_border)
    .Inputs({"X", "Grid", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Grid")})
    .Attrs({"image_grad: bool"})
    .SetKernelFn(PD_KERNEL(Backward));
