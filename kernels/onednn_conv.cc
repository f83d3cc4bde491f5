// 2-D convolution (float32, NCHW, groups 1, dilation 1) for Paddle's eager mode on the CPU,
// run by the oneDNN library inside Paddle's wheel (paddle/libs/libdnnl.so.3). Built and loaded
// by cpu_ops.py, which says why.
//
// Each shape gets its forward, backward-data and backward-weights primitives once, in the
// layouts oneDNN prefers (format_tag::any); tensors are reordered from and to NCHW around each
// call, which is still faster than the primitives on plain NCHW (those fall back to im2col +
// GEMM, or to a reference kernel for one output channel).

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "common.h"
#include "paddle/extension.h"

namespace {

using kernels::dense;

using dnnl::memory;
using tag = memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine cpu(dnnl::engine::kind::cpu, 0);
  return cpu;
}

dnnl::stream& stream() {
  static dnnl::stream cpu(engine());
  return cpu;
}

memory::desc plain(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, dims.size() == 4 ? tag::nchw : tag::x);
}

memory::desc preferred(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, tag::any);
}

// Blocked copies live in buffers that only grow, one per role; the eager mode runs one
// operator at a time, and the mutex below keeps two threads from sharing them.
enum Role { kSrc, kWeights, kDst, kDiffDst, kDiffSrc, kDiffWeights, kRoles };

void* buffer(Role role, size_t bytes) {
  static void* data[kRoles] = {nullptr};
  static size_t size[kRoles] = {0};
  if (bytes > size[role]) {
    size_t rounded = (bytes + 4095) / 4096 * 4096;
    void* grown = std::aligned_alloc(4096, rounded);
    PD_CHECK(grown != nullptr, "onednn_conv2d: out of memory (", rounded, " bytes)");
    std::free(data[role]);
    data[role] = grown;
    size[role] = rounded;
  }
  return data[role];
}

// A tensor in NCHW and the layout a primitive wants, with the reorders between them.
struct Layout {
  memory::desc outside, inside;
  dnnl::reorder in, out;

  Layout() = default;
  Layout(const memory::desc& nchw, const memory::desc& wanted) : outside(nchw), inside(wanted) {
    if (outside != inside) {
      in = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), outside, engine(), inside));
      out = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), inside, engine(), outside));
    }
  }

  memory read(const float* data, Role role) {
    memory given(outside, engine(), const_cast<float*>(data));
    if (outside == inside) return given;
    memory copy(inside, engine(), buffer(role, inside.get_size()));
    in.execute(stream(), given, copy);
    return copy;
  }

  memory target(float* data, Role role) {
    if (outside == inside) return memory(outside, engine(), data);
    return memory(inside, engine(), buffer(role, inside.get_size()));
  }

  void write(memory& produced, float* data) {
    if (outside == inside) return;
    memory result(outside, engine(), data);
    out.execute(stream(), produced, result);
  }
};

struct Shape {
  int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw;
  bool bias;
  bool operator<(const Shape& r) const {
    return std::tie(n, c, h, w, o, kh, kw, sh, sw, ph, pw, bias) <
           std::tie(r.n, r.c, r.h, r.w, r.o, r.kh, r.kw, r.sh, r.sw, r.ph, r.pw, r.bias);
  }
  memory::dims src() const { return {n, c, h, w}; }
  memory::dims weights() const { return {o, c, kh, kw}; }
  memory::dims dst() const { return {n, o, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1}; }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims padding() const { return {ph, pw}; }
};

struct Plan {
  memory::desc bias;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  Layout src, weights, dst;

  bool backward_ready = false;
  dnnl::convolution_backward_data backward_data;
  Layout bd_diff_dst, bd_weights, bd_diff_src;
  dnnl::convolution_backward_weights backward_weights;
  Layout bw_src, bw_diff_dst, bw_diff_weights;
};

std::mutex& lock() {
  static std::mutex m;
  return m;
}

Plan& plan_for(const Shape& s) {
  static std::map<Shape, std::unique_ptr<Plan>> plans;
  auto found = plans.find(s);
  if (found != plans.end()) return *found->second;
  auto p = std::make_unique<Plan>();
  p->bias = s.bias ? plain({s.o}) : memory::desc();
  p->forward_pd = dnnl::convolution_forward::primitive_desc(
      engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      preferred(s.src()), preferred(s.weights()), p->bias, preferred(s.dst()), s.strides(),
      s.padding(), s.padding());
  p->forward = dnnl::convolution_forward(p->forward_pd);
  p->src = Layout(plain(s.src()), p->forward_pd.src_desc());
  p->weights = Layout(plain(s.weights()), p->forward_pd.weights_desc());
  p->dst = Layout(plain(s.dst()), p->forward_pd.dst_desc());
  return *plans.emplace(s, std::move(p)).first->second;
}

void prepare_backward(const Shape& s, Plan& p) {
  if (p.backward_ready) return;
  dnnl::convolution_backward_data::primitive_desc data_pd(
      engine(), dnnl::algorithm::convolution_direct, preferred(s.src()), preferred(s.weights()),
      preferred(s.dst()), s.strides(), s.padding(), s.padding(), p.forward_pd);
  p.backward_data = dnnl::convolution_backward_data(data_pd);
  p.bd_diff_dst = Layout(plain(s.dst()), data_pd.diff_dst_desc());
  p.bd_weights = Layout(plain(s.weights()), data_pd.weights_desc());
  p.bd_diff_src = Layout(plain(s.src()), data_pd.diff_src_desc());
  dnnl::convolution_backward_weights::primitive_desc weights_pd(
      engine(), dnnl::algorithm::convolution_direct, preferred(s.src()), preferred(s.weights()),
      p.bias, preferred(s.dst()), s.strides(), s.padding(), s.padding(), p.forward_pd);
  p.backward_weights = dnnl::convolution_backward_weights(weights_pd);
  p.bw_src = Layout(plain(s.src()), weights_pd.src_desc());
  p.bw_diff_dst = Layout(plain(s.dst()), weights_pd.diff_dst_desc());
  p.bw_diff_weights = Layout(plain(s.weights()), weights_pd.diff_weights_desc());
  p.backward_ready = true;
}

Shape shape_of(const paddle::Tensor& x, const paddle::Tensor& w, bool bias,
               const std::vector<int>& stride, const std::vector<int>& padding) {
  PD_CHECK(x.is_cpu() && w.is_cpu(), "onednn_conv2d: CPU tensors only");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 && w.dtype() == paddle::DataType::FLOAT32,
           "onednn_conv2d: float32 only");
  auto xs = x.shape();
  auto ws = w.shape();
  PD_CHECK(xs.size() == 4 && ws.size() == 4, "onednn_conv2d: 4-D input and weights");
  PD_CHECK(xs[1] == ws[1], "onednn_conv2d: the input has ", xs[1], " channels, the weights ", ws[1]);
  PD_CHECK(stride.size() == 2 && padding.size() == 2, "onednn_conv2d: two strides and paddings");
  Shape s{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], stride[0], stride[1], padding[0], padding[1], bias};
  PD_CHECK(s.dst()[2] > 0 && s.dst()[3] > 0, "onednn_conv2d: a ", ws[2], "x", ws[3], " kernel does not fit a ",
           xs[2], "x", xs[3], " input padded by ", padding[0], "x", padding[1]);
  return s;
}

std::string text(const std::vector<int64_t>& dims) {
  std::string out;
  for (auto d : dims) out += (out.empty() ? "" : "x") + std::to_string(d);
  return out;
}

paddle::Tensor empty(const memory::dims& dims) {
  return paddle::empty(std::vector<int64_t>(dims.begin(), dims.end()), paddle::DataType::FLOAT32,
                       paddle::CPUPlace());
}

}  // namespace

std::vector<paddle::Tensor> ForwardImpl(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                                    const paddle::optional<paddle::Tensor>& b,
                                    const std::vector<int>& stride, const std::vector<int>& padding,
                                    bool need_dx) {
  auto x = dense(x_in);
  auto w = dense(w_in);
  Shape s = shape_of(x, w, b.is_initialized(), stride, padding);
  std::lock_guard<std::mutex> guard(lock());
  Plan& p = plan_for(s);
  auto y = empty(s.dst());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.src.read(x.data<float>(), kSrc)},
                                       {DNNL_ARG_WEIGHTS, p.weights.read(w.data<float>(), kWeights)}};
  paddle::Tensor bias;
  if (s.bias) {
    bias = dense(*b);
    args[DNNL_ARG_BIAS] = memory(p.bias, engine(), const_cast<float*>(bias.data<float>()));
  }
  memory dst = p.dst.target(y.data<float>(), kDst);
  args[DNNL_ARG_DST] = dst;
  p.forward.execute(stream(), args);
  p.dst.write(dst, y.data<float>());
  stream().wait();
  return {y};
}

std::vector<paddle::Tensor> BackwardImpl(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                                     const paddle::optional<paddle::Tensor>& b,
                                     const paddle::Tensor& dy_in, const std::vector<int>& stride,
                                     const std::vector<int>& padding, bool need_dx) {
  auto x = dense(x_in);
  auto w = dense(w_in);
  auto dy = dense(dy_in);
  Shape s = shape_of(x, w, b.is_initialized(), stride, padding);
  std::lock_guard<std::mutex> guard(lock());
  Plan& p = plan_for(s);
  prepare_backward(s, p);
  // Paddle wants every gradient output allocated, even the input's when it has none to take.
  auto dx = empty(s.src());
  if (need_dx) {
    memory diff_src = p.bd_diff_src.target(dx.data<float>(), kDiffSrc);
    p.backward_data.execute(stream(), {{DNNL_ARG_DIFF_DST, p.bd_diff_dst.read(dy.data<float>(), kDiffDst)},
                                       {DNNL_ARG_WEIGHTS, p.bd_weights.read(w.data<float>(), kWeights)},
                                       {DNNL_ARG_DIFF_SRC, diff_src}});
    p.bd_diff_src.write(diff_src, dx.data<float>());
  }
  auto dw = empty(s.weights());
  memory diff_weights = p.bw_diff_weights.target(dw.data<float>(), kDiffWeights);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.bw_src.read(x.data<float>(), kSrc)},
                                       {DNNL_ARG_DIFF_DST, p.bw_diff_dst.read(dy.data<float>(), kDiffDst)},
                                       {DNNL_ARG_DIFF_WEIGHTS, diff_weights}};
  paddle::Tensor db;
  if (s.bias) {
    db = empty({s.o});
    args[DNNL_ARG_DIFF_BIAS] = memory(p.bias, engine(), db.data<float>());
  }
  p.backward_weights.execute(stream(), args);
  p.bw_diff_weights.write(diff_weights, dw.data<float>());
  stream().wait();
  return {dx, dw, db};
}

// oneDNN reports failures as dnnl::error, which would end the process inside Paddle's kernel call.
std::vector<paddle::Tensor> Forward(const paddle::Tensor& x, const paddle::Tensor& w,
                                    const paddle::optional<paddle::Tensor>& b, const std::vector<int>& stride,
                                    const std::vector<int>& padding, bool need_dx) {
  try {
    return ForwardImpl(x, w, b, stride, padding, need_dx);
  } catch (const dnnl::error& e) {
    PD_THROW("onednn_conv2d forward on input ", text(x.shape()), ", weights ", text(w.shape()), ": ", e.what());
  }
}

std::vector<paddle::Tensor> Backward(const paddle::Tensor& x, const paddle::Tensor& w,
                                     const paddle::optional<paddle::Tensor>& b, const paddle::Tensor& dy,
                                     const std::vector<int>& stride, const std::vector<int>& padding, bool need_dx) {
  try {
    return BackwardImpl(x, w, b, dy, stride, padding, need_dx);
  } catch (const dnnl::error& e) {
    PD_THROW("onednn_conv2d backward on input ", text(x.shape()), ", weights ", text(w.shape()), ": ", e.what());
  }
}

std::vector<std::vector<int64_t>> InferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                             const paddle::optional<std::vector<int64_t>>& b,
                                             const std::vector<int>& stride, const std::vector<int>& padding,
                                             bool need_dx) {
  return {{x[0], w[0], (x[2] + 2 * padding[0] - w[2]) / stride[0] + 1,
           (x[3] + 2 * padding[1] - w[3]) / stride[1] + 1}};
}

std::vector<paddle::DataType> InferDtype(const paddle::DataType& x, const paddle::DataType& w,
                                         const paddle::optional<paddle::DataType>& b) {
  return {x};
}

PD_BUILD_OP(onednn_conv2d)
    .Inputs({"X", "W", paddle::Optional("B")})
    .Outputs({"Out"})
    .Attrs({"stride: std::vector<int>", "padding: std::vector<int>", "need_dx: bool"})
    .SetKernelFn(PD_KERNEL(Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(InferDtype));

PD_BUILD_GRAD_OP(onednn_conv2d)
    .Inputs({"X", "W", paddle::Optional("B"), paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad(paddle::Optional("B"))})
    .Attrs({"stride: std::vector<int>", "padding: std::vector<int>", "need_dx: bool"})
    .SetKernelFn(PD_KERNEL(Backward));
