// What the kernels share (cpu_ops.py hashes this folder's headers with the sources).
#pragma once

#include <vector>

#include "paddle/extension.h"

namespace kernels {

// The tensor itself, or a contiguous copy of a strided view. By value: Paddle 3.0's
// Tensor::contiguous() is not const.
inline paddle::Tensor dense(paddle::Tensor t) { return t.is_contiguous() ? t : t.contiguous(); }

// An output of the first input's dtype.
inline std::vector<paddle::DataType> same_dtype(const paddle::DataType& x) { return {x}; }

}  // namespace kernels
