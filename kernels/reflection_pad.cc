// One-pixel reflection padding of float32 NCHW images for Paddle's eager mode on the CPU (the
// decoder pads before every 3x3 convolution, SSIM before every pooling). Built and loaded by
// cpu_ops.py. Paddle's pad3d kernel and the slices + concat that layers.reflection_pad falls
// back to each cost several times PyTorch's reflection_pad2d; this is one pass over memory each way.

#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "paddle/extension.h"

namespace {

using kernels::dense;

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x_in) {
  const paddle::Tensor x = dense(x_in);
  const auto& s = x.shape();
  PD_CHECK(s.size() == 4 && s[2] >= 2 && s[3] >= 2,
           "reflection_pad1: needs N x C x H x W with H, W >= 2, got ", s.size(), " dims");
  const int64_t planes = s[0] * s[1], h = s[2], w = s[3], pw = w + 2;
  auto out = paddle::empty({s[0], s[1], h + 2, pw}, paddle::DataType::FLOAT32, x.place());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = src + p * h * w;
    float* o = dst + p * (h + 2) * pw;
    for (int64_t i = 0; i < h + 2; ++i) {
      const int64_t r = i == 0 ? 1 : (i == h + 1 ? h - 2 : i - 1);
      const float* row = in + r * w;
      float* orow = o + i * pw;
      orow[0] = row[1];
      std::memcpy(orow + 1, row, w * sizeof(float));
      orow[w + 1] = row[w - 2];
    }
  }
  return {out};
}

// The adjoint: each padded value goes back to the pixel it was copied from.
// Only the output's gradient comes in: the input is not kept alive for the backward.
std::vector<paddle::Tensor> Backward(const paddle::Tensor& dout_in) {
  const paddle::Tensor dout = dense(dout_in);
  const auto& o = dout.shape();
  const std::vector<int64_t> s = {o[0], o[1], o[2] - 2, o[3] - 2};
  const int64_t planes = s[0] * s[1], h = s[2], w = s[3], pw = w + 2;
  auto dx = paddle::empty(s, paddle::DataType::FLOAT32, dout.place());
  const float* src = dout.data<float>();
  float* dst = dx.data<float>();
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p) {
    const float* g = src + p * (h + 2) * pw;
    float* d = dst + p * h * w;
    for (int64_t i = 0; i < h; ++i) {  // rows 1..h of the padded gradient, their columns folded
      const float* row = g + (i + 1) * pw;
      float* drow = d + i * w;
      std::memcpy(drow, row + 1, w * sizeof(float));
      drow[1] += row[0];
      drow[w - 2] += row[w + 1];
    }
    for (int k = 0; k < 2; ++k) {  // the padded top row goes to row 1, the bottom one to row h-2
      const float* row = g + (k == 0 ? 0 : h + 1) * pw;
      float* drow = d + (k == 0 ? 1 : h - 2) * w;
      for (int64_t j = 0; j < w; ++j) drow[j] += row[j + 1];
      drow[1] += row[0];
      drow[w - 2] += row[w + 1];
    }
  }
  return {dx};
}

std::vector<std::vector<int64_t>> InferShape(const std::vector<int64_t>& x) {
  return {{x[0], x[1], x[2] + 2, x[3] + 2}};
}

}  // namespace

PD_BUILD_OP(reflection_pad1)
    .Inputs({"X"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(kernels::same_dtype));

PD_BUILD_GRAD_OP(reflection_pad1)
    .Inputs({paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(Backward));
