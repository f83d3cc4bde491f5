// The photometric error of training, 0.85 * SSIM + 0.15 * L1 averaged over the colour channels,
// as one operator for float32 tensors in Paddle's eager mode on the CPU. Built and loaded by
// cpu_ops.py. Composed of Paddle's elementwise operators (padding, window means, a dozen
// products and sums, clip, two channel means) it took 64 ms forward and backward per source
// image at 640x192, batch 2, on the AMD EPYC VM: 0.8 s of a training step, most of it writing and
// re-reading full-size temporaries. Here each pixel is computed once forward and once backward.
//
// The target's statistics come in precomputed (layers.SSIM.target_stats: the padded target, its
// window mean and the window mean of its square); the target takes no gradient. The forward
// follows the composed version's order of operations (layers.composed_photometric_error), so
// the two agree bit for bit, channel means included, where Paddle's division is IEEE 754's.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "paddle/extension.h"

namespace {

using kernels::dense;

const float kC1 = static_cast<float>(0.01 * 0.01);
const float kC2 = static_cast<float>(0.03 * 0.03);

// The padded row index (or column) of a one-pixel reflection pad, mapped to the source's.
inline int64_t reflected(int64_t p, int64_t size) { return p == 0 ? 1 : (p == size + 1 ? size - 2 : p - 1); }

// A source row, reflection-padded by one pixel on either side.
inline void pad_row(const float* src, int64_t w, float* dst) {
  dst[0] = src[1];
  std::copy(src, src + w, dst + 1);
  dst[w + 1] = src[w - 2];
}

// SSIM's terms at one pixel from its 3x3 windows: rows a, b, c of the padded image and ya, yb,
// yc of the padded target, starting at column j. The sums go in mean3x3's (PyTorch's) order.
struct Terms {
  float mu_x, mu_y, A, B, E, F, n, d, v;
};

inline Terms terms_at(const float* a, const float* b, const float* c, const float* ya, const float* yb,
                      const float* yc, int64_t j, float mu_y, float yy) {
  float s = a[j] + a[j + 1] + a[j + 2];
  s = s + b[j] + b[j + 1] + b[j + 2];
  s = s + c[j] + c[j + 1] + c[j + 2];
  float sq = a[j] * a[j] + a[j + 1] * a[j + 1] + a[j + 2] * a[j + 2];
  sq = sq + b[j] * b[j] + b[j + 1] * b[j + 1] + b[j + 2] * b[j + 2];
  sq = sq + c[j] * c[j] + c[j + 1] * c[j + 1] + c[j + 2] * c[j + 2];
  float pr = a[j] * ya[j] + a[j + 1] * ya[j + 1] + a[j + 2] * ya[j + 2];
  pr = pr + b[j] * yb[j] + b[j + 1] * yb[j + 1] + b[j + 2] * yb[j + 2];
  pr = pr + c[j] * yc[j] + c[j + 1] * yc[j + 1] + c[j + 2] * yc[j + 2];
  Terms t;
  t.mu_x = s / 9.f;
  t.mu_y = mu_y;
  const float xx = sq / 9.f, xy = pr / 9.f;
  const float mu_x2 = t.mu_x * t.mu_x, mu_y2 = mu_y * mu_y;
  t.A = 2.f * t.mu_x * mu_y + kC1;
  t.B = 2.f * (xy - t.mu_x * mu_y) + kC2;
  t.E = mu_x2 + mu_y2 + kC1;
  t.F = (xx - mu_x2) + (yy - mu_y2) + kC2;
  t.n = t.A * t.B;
  t.d = t.E * t.F;
  t.v = (1.f - t.n / t.d) / 2.f;
  return t;
}

// SSIM's loss clamped to [0, 1]; NaN stays NaN (and passes no gradient: NaN != NaN).
inline float clamped(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

struct Shape {
  int64_t n, c, h, w;
};

Shape checked(const paddle::Tensor& x, const paddle::Tensor& ypad, const paddle::Tensor& mu_y,
              const paddle::Tensor& yy) {
  const auto& s = x.shape();
  PD_CHECK(s.size() == 4 && s[2] >= 2 && s[3] >= 2, "photometric_error: needs N x C x H x W with H, W >= 2");
  PD_CHECK(ypad.shape() == std::vector<int64_t>({s[0], s[1], s[2] + 2, s[3] + 2}),
           "photometric_error: the padded target must be the image's size plus 2");
  PD_CHECK(mu_y.shape() == s && yy.shape() == s, "photometric_error: the target's means must be the image's size");
  return {s[0], s[1], s[2], s[3]};
}

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x_in, const paddle::Tensor& ypad_in,
                                    const paddle::Tensor& mu_y_in, const paddle::Tensor& yy_in) {
  const paddle::Tensor x = dense(x_in), ypad = dense(ypad_in), mu_y = dense(mu_y_in), yy = dense(yy_in);
  const Shape s = checked(x, ypad, mu_y, yy);
  const int64_t h = s.h, w = s.w, pw = w + 2;
  auto out = paddle::empty({s.n, 1, h, w}, paddle::DataType::FLOAT32, x.place());
  const float *px = x.data<float>(), *py = ypad.data<float>(), *pm = mu_y.data<float>(), *pyy = yy.data<float>();
  float* po = out.data<float>();
#pragma omp parallel
  {
    std::vector<float> rows(3 * pw), ssim(w), l1(w);
#pragma omp for
    for (int64_t ni = 0; ni < s.n * h; ++ni) {  // one output row of one image per step
      const int64_t b = ni / h, i = ni % h;
      std::fill(ssim.begin(), ssim.end(), 0.f);
      std::fill(l1.begin(), l1.end(), 0.f);
      for (int64_t c = 0; c < s.c; ++c) {
        const int64_t plane = b * s.c + c;
        const float* xs = px + plane * h * w;
        for (int64_t k = 0; k < 3; ++k) pad_row(xs + reflected(i + k, h) * w, w, rows.data() + k * pw);
        const float* yrow = py + plane * (h + 2) * pw + i * pw;
        const float* m = pm + plane * h * w + i * w;
        const float* q = pyy + plane * h * w + i * w;
        const float* xrow = xs + i * w;
        for (int64_t j = 0; j < w; ++j) {
          const Terms t = terms_at(rows.data(), rows.data() + pw, rows.data() + 2 * pw, yrow, yrow + pw,
                                   yrow + 2 * pw, j, m[j], q[j]);
          const float v = clamped(t.v);
          const float e = std::fabs(yrow[pw + j + 1] - xrow[j]);
          ssim[j] += v;
          l1[j] += e;
        }
      }
      float* o = po + b * h * w + i * w;
      const float channels = static_cast<float>(s.c);
      for (int64_t j = 0; j < w; ++j) o[j] = 0.85f * (ssim[j] / channels) + 0.15f * (l1[j] / channels);
    }
  }
  return {out};
}

// The image's gradient, one channel plane per step: SSIM's gradient with respect to each
// window's three means, spread back over the window (the adjoint of the 3x3 mean), folded back
// through the reflection pad, plus L1's. Clamped values pass gradient at 0 and 1, as PyTorch's
// clamp does.
std::vector<paddle::Tensor> Backward(const paddle::Tensor& x_in, const paddle::Tensor& ypad_in,
                                     const paddle::Tensor& mu_y_in, const paddle::Tensor& yy_in,
                                     const paddle::Tensor& dout_in) {
  const paddle::Tensor x = dense(x_in), ypad = dense(ypad_in), mu_y = dense(mu_y_in), yy = dense(yy_in),
                       dout = dense(dout_in);
  const Shape s = checked(x, ypad, mu_y, yy);
  const int64_t h = s.h, w = s.w, pw = w + 2, ph = h + 2;
  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  const float *px = x.data<float>(), *py = ypad.data<float>(), *pm = mu_y.data<float>(), *pyy = yy.data<float>(),
              *pg = dout.data<float>();
  float* pd = dx.data<float>();
  const float channels = static_cast<float>(s.c);
#pragma omp parallel
  {
    const int64_t sw = w + 4;
    std::vector<float> xpad(ph * pw), g_mu(h * w), g_xx(h * w), g_xy(h * w), sums(3 * sw), dpad(pw);
#pragma omp for
    for (int64_t plane = 0; plane < s.n * s.c; ++plane) {
      const int64_t b = plane / s.c;
      const float* xs = px + plane * h * w;
      const float* yp = py + plane * ph * pw;
      const float* g = pg + b * h * w;
      float* d = pd + plane * h * w;
      for (int64_t r = 0; r < ph; ++r) pad_row(xs + reflected(r, h) * w, w, xpad.data() + r * pw);
      for (int64_t i = 0; i < h; ++i) {
        const float *a = xpad.data() + i * pw, *ya = yp + i * pw;
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = i * w + j;
          const Terms t = terms_at(a, a + pw, a + 2 * pw, ya, ya + pw, ya + 2 * pw, j, pm[plane * h * w + k],
                                   pyy[plane * h * w + k]);
          const float gs = 0.85f * g[k] / channels, gv = clamped(t.v) == t.v ? gs : 0.f;
          const float gq = -gv / 2.f;  // v = (1 - n / d) / 2
          const float gn = gq / t.d, gd = -gq * t.n / (t.d * t.d);
          const float gA = gn * t.B, gB = gn * t.A, gE = gd * t.F, gF = gd * t.E;
          g_xx[k] = gF;
          g_xy[k] = 2.f * gB;
          g_mu[k] = 2.f * t.mu_y * gA + 2.f * t.mu_x * gE - 2.f * t.mu_x * gF - t.mu_y * g_xy[k];
        }
      }
      std::fill(d, d + h * w, 0.f);
      for (int64_t r = 0; r < ph; ++r) {  // padded row r is in the windows of output rows r-2..r
        // Column sums of those rows, two zeros either side: padded column q is in the windows of
        // output columns q-2..q, which are sums[q..q+2] here.
        std::fill(sums.begin(), sums.end(), 0.f);
        for (int64_t i = std::max<int64_t>(0, r - 2); i <= std::min<int64_t>(h - 1, r); ++i) {
          for (int64_t j = 0; j < w; ++j) {
            sums[j + 2] += g_mu[i * w + j];
            sums[sw + j + 2] += g_xx[i * w + j];
            sums[2 * sw + j + 2] += g_xy[i * w + j];
          }
        }
        const float *smu = sums.data(), *sxx = smu + sw, *sxy = sxx + sw, *xr = xpad.data() + r * pw,
                    *yr = yp + r * pw;
        for (int64_t q = 0; q < pw; ++q) {
          const float mu = smu[q] + smu[q + 1] + smu[q + 2], xx = sxx[q] + sxx[q + 1] + sxx[q + 2],
                      xy = sxy[q] + sxy[q + 1] + sxy[q + 2];
          dpad[q] = (mu + 2.f * xr[q] * xx + yr[q] * xy) / 9.f;
        }
        float* drow = d + reflected(r, h) * w;  // folded back through the reflection pad
        for (int64_t j = 0; j < w; ++j) drow[j] += dpad[j + 1];
        drow[1] += dpad[0];
        drow[w - 2] += dpad[w + 1];
      }
      const float gl = 0.15f / channels;
      for (int64_t i = 0; i < h; ++i) {  // L1: d|y - x| / dx = sign(x - y), 0 where equal
        const float* yrow = yp + (i + 1) * pw + 1;
        for (int64_t j = 0; j < w; ++j) {
          const float diff = xs[i * w + j] - yrow[j];
          const float sign = diff > 0.f ? 1.f : (diff < 0.f ? -1.f : 0.f);
          d[i * w + j] += gl * g[i * w + j] * sign;
        }
      }
    }
  }
  return {dx};
}

std::vector<std::vector<int64_t>> InferShape(const std::vector<int64_t>& x, const std::vector<int64_t>&,
                                             const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {{x[0], 1, x[2], x[3]}};
}

std::vector<paddle::DataType> InferDtype(const paddle::DataType& x, const paddle::DataType&,
                                         const paddle::DataType&, const paddle::DataType&) {
  return {x};
}

}  // namespace

PD_BUILD_OP(photometric_error)
    .Inputs({"X", "YPad", "MuY", "YY"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(InferDtype));

PD_BUILD_GRAD_OP(photometric_error)
    .Inputs({"X", "YPad", "MuY", "YY", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(Backward));
