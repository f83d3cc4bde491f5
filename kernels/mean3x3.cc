// The mean of every 3x3 window (stride 1, no padding) of float32 NCHW images, for Paddle's eager
// mode on the CPU: SSIM's local statistics, over reflection-padded images. Built and loaded by
// cpu_ops.py. Paddle's pool2d took 38 ms forward and 52 ms backward for the 15 full-size
// channels of one SSIM (2x15x194x642, AMD EPYC VM, 2 threads), a fifth of a training step; a
// direct sum per output is a few ms. The sums go in PyTorch's avg_pool2d order and are divided
// by 9 as there: SSIM's variances cancel most digits, so the order shows in its output.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "paddle/extension.h"

namespace {

using kernels::dense;

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x_in) {
  const paddle::Tensor x = dense(x_in);
  const auto& s = x.shape();
  PD_CHECK(s.size() == 4 && s[2] >= 3 && s[3] >= 3, "mean3x3: needs N x C x H x W with H, W >= 3");
  const int64_t planes = s[0] * s[1], h = s[2], w = s[3], oh = h - 2, ow = w - 2;
  auto out = paddle::empty({s[0], s[1], oh, ow}, paddle::DataType::FLOAT32, x.place());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = src + p * h * w;
    float* o = dst + p * oh * ow;
    for (int64_t i = 0; i < oh; ++i) {
      const float *a = in + i * w, *b = a + w, *c = b + w;
      float* orow = o + i * ow;
      for (int64_t j = 0; j < ow; ++j) {  // row by row, left to right, as PyTorch adds them
        float sum = a[j] + a[j + 1] + a[j + 2];
        sum = sum + b[j] + b[j + 1] + b[j + 2];
        sum = sum + c[j] + c[j + 1] + c[j + 2];
        orow[j] = sum / 9.f;
      }
    }
  }
  return {out};
}

// The adjoint: every input pixel collects a ninth of the gradient of each window holding it,
// window by window in the order PyTorch visits them (row by row, left to right).
// Only the output's gradient comes in: the input is not kept alive for the backward.
std::vector<paddle::Tensor> Backward(const paddle::Tensor& dout_in) {
  const paddle::Tensor dout = dense(dout_in);
  const auto& o = dout.shape();
  const std::vector<int64_t> s = {o[0], o[1], o[2] + 2, o[3] + 2};
  const int64_t planes = s[0] * s[1], h = s[2], w = s[3], oh = h - 2, ow = w - 2;
  auto dx = paddle::empty(s, paddle::DataType::FLOAT32, dout.place());
  const float* src = dout.data<float>();
  float* dst = dx.data<float>();
#pragma omp parallel
  {
    std::vector<float> ninths(ow + 4, 0.f);  // one row of gradients / 9, two zeros either side
#pragma omp for
    for (int64_t p = 0; p < planes; ++p) {
      const float* g = src + p * oh * ow;
      float* d = dst + p * h * w;
      for (int64_t r = 0; r < h; ++r) {  // input row r is in the windows of output rows r-2..r
        float* drow = d + r * w;
        std::fill(drow, drow + w, 0.f);
        for (int64_t i = std::max<int64_t>(0, r - 2); i <= std::min<int64_t>(oh - 1, r); ++i) {
          const float* grow = g + i * ow;
          float* n = ninths.data() + 2;
          for (int64_t j = 0; j < ow; ++j) n[j] = grow[j] / 9.f;
          for (int64_t q = 0; q < w; ++q) drow[q] = drow[q] + n[q - 2] + n[q - 1] + n[q];
        }
      }
    }
  }
  return {dx};
}

std::vector<std::vector<int64_t>> InferShape(const std::vector<int64_t>& x) {
  return {{x[0], x[1], x[2] - 2, x[3] - 2}};
}

}  // namespace

PD_BUILD_OP(mean3x3)
    .Inputs({"X"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(kernels::same_dtype));

PD_BUILD_GRAD_OP(mean3x3)
    .Inputs({paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(Backward));
