// CPU kernel of quantize_fp8: amax, finiteness check, saturating round to FP8.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "../plans.h"
#include "s_ste/fp8.cuh"

namespace s_ste {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_fp8_cpu(const at::Tensor& x_in, c10::ScalarType dtype) {
  QuantizePlan p = plan_quantize(x_in, dtype);
  const fp8::Format fmt = p.e4m3 ? fp8::kE4M3 : fp8::kE5M2;
  const int64_t n = p.x.numel();
  float scale = 1.0f;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "quantize_fp8_cpu", [&] {
    const scalar_t* x = p.x.data_ptr<scalar_t>();
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(x[i]);
      finite = finite && std::isfinite(v);
      amax = std::max(amax, std::fabs(v));
    }
    TORCH_CHECK_VALUE(finite, "quantize_fp8: x contains NaN or Inf; FP8 scaling needs a finite amax "
                      "(check for overflow before quantizing)");
    scale = fp8::scale_for_amax(amax, fmt);
    uint8_t* q = reinterpret_cast<uint8_t*>(p.q.data_ptr());
    at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) q[i] = fp8::encode(mul_rn(static_cast<float>(x[i]), scale), fmt);
    });
  });
  return {p.q, at::scalar_tensor(1.0f / scale, p.x.options().dtype(at::kFloat))};
}

// quantize_fp8_scaled: the cast with a given scale, the transposed copy and amax, no sync
// needed (the CUDA kernel does it in one pass; here, plain loops).
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_fp8_scaled_cpu(const at::Tensor& x_in, const at::Tensor& scale_in,
                                                                       c10::ScalarType dtype, bool transpose) {
  QuantizeScaledPlan p = plan_quantize_scaled(x_in, scale_in, dtype, transpose);
  const fp8::Format fmt = p.e4m3 ? fp8::kE4M3 : fp8::kE5M2;
  const float scale = p.scale.item<float>();
  const int64_t n = p.x.numel(), R = p.R, C = p.C;
  uint32_t amax_bits = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "quantize_fp8_scaled_cpu", [&] {
    const scalar_t* x = p.x.data_ptr<scalar_t>();
    uint8_t* q = reinterpret_cast<uint8_t*>(p.q.data_ptr());
    amax_bits = at::parallel_reduce(
        0, n, 4096, uint32_t(0),
        [&](int64_t b, int64_t e, uint32_t acc) {
          for (int64_t i = b; i < e; ++i) {
            const float v = static_cast<float>(x[i]);
            acc = std::max(acc, abs_bits(v));
            q[i] = fp8::encode(mul_rn(v, scale), fmt);
          }
          return acc;
        },
        [](uint32_t a, uint32_t b) { return std::max(a, b); });
    if (p.transpose) {
      uint8_t* qt = reinterpret_cast<uint8_t*>(p.q_t.data_ptr());
      at::parallel_for(0, C, 16, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c)
          for (int64_t r = 0; r < R; ++r) qt[c * R + r] = q[r * C + c];
      });
    }
  });
  *p.amax.data_ptr<float>() = bits_float(amax_bits);  // bit for bit, NaN payload included
  return {p.q, p.q_t, p.amax};
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) {
  m.impl("quantize_fp8", &quantize_fp8_cpu);
  m.impl("quantize_fp8_scaled", &quantize_fp8_scaled_cpu);
}

}  // namespace s_ste
