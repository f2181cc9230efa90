// CPU kernels of the pruning ops: loops over groups / metadata units calling the shared
// per-element math (the oracle the CUDA kernels are compared with, bit for bit).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../plans.h"
#include "s_ste/compress.cuh"

namespace s_ste {
namespace {

constexpr int64_t kGrain = 2048;

template <bool Soft>
std::tuple<at::Tensor, at::Tensor> threshold_cpu(const at::Tensor& w_in) {
  PrunePlan p = plan_prune(Soft ? "soft_threshold_24" : "hard_threshold_24", w_in);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.w.scalar_type(), "threshold_cpu", [&] {
    const scalar_t* w = p.w.data_ptr<scalar_t>();
    scalar_t* out = p.pruned.data_ptr<scalar_t>();
    bool* mask = p.mask.data_ptr<bool>();
    at::parallel_for(0, p.groups, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        float v[4];
        for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(w[4 * g + i]);
        const Pruned24 r = prune_group(v, Soft);
        for (int i = 0; i < 4; ++i) {
          out[4 * g + i] = to_value<scalar_t>(r.value[i]);
          mask[4 * g + i] = i == r.i0 || i == r.i1;
        }
      }
    });
  });
  return {p.pruned, p.mask};
}

std::tuple<at::Tensor, at::Tensor> prune_and_compress_cpu(const at::Tensor& w_in, const at::Tensor& scale,
                                                          c10::string_view layout,
                                                          std::optional<c10::ScalarType> out_dtype) {
  CompressPlan p = plan_compress(w_in, scale, layout, out_dtype);
  const float beta = p.scale.item<float>();
  dispatch_compress(p.w.scalar_type(), p.values.scalar_type(), p.layout, [&](auto in_tag, auto out_tag, auto sm80, auto fp8) {
    using In = decltype(in_tag);
    using Out = decltype(out_tag);
    constexpr bool kSm80 = decltype(sm80)::value;
    const In* w = p.w.data_ptr<In>();
    Out* values = static_cast<Out*>(p.values.data_ptr());
    void* meta = p.meta.data_ptr();
    at::parallel_for(0, p.rows * p.K / kUnitCols<kSm80>, kGrain / 4, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) compress_unit<kSm80, decltype(fp8)::value>(w, values, meta, p.rows, p.K, u, beta);
    });
  });
  return {p.values, p.meta};
}

// Counts the metadata units with an illegal code and the non-zero SM90 padding bytes.
void validate_cpu(const char* op, const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  const ValidatePlan p = plan_validate(op, values, meta, layout);
  int64_t bad = 0, first = -1, padding = 0;
  with_layout(p.layout, [&](auto sm80) {
    constexpr bool kSm80 = decltype(sm80)::value;
    const int64_t units = p.rows * p.K / kUnitCols<kSm80>;
    std::vector<uint8_t> is_data(kSm80 ? 0 : p.meta.numel(), 0);
    for (int64_t u = 0; u < units; ++u) {
      int64_t offset;
      if (!meta_unit_legal<kSm80>(p.meta.data_ptr(), p.rows, p.K, p.elem_bits, u, offset)) {
        first = bad++ == 0 ? u : first;
      }
      if constexpr (!kSm80) is_data[size_t(offset)] = 1;
    }
    if constexpr (!kSm80) {
      const uint8_t* m = p.meta.data_ptr<uint8_t>();
      for (int64_t i = 0; i < p.meta.numel(); ++i) padding += !is_data[size_t(i)] && m[i] != 0;
    }
  });
  report_invalid_meta(op, p, bad, first, padding);
}

void validate_compressed_cpu(const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  validate_cpu("validate_compressed", values, meta, layout);
}

at::Tensor decompress_cpu(const at::Tensor& values_in, const at::Tensor& meta_in, c10::string_view layout,
                          bool validate) {
  DecompressPlan p = plan_decompress(values_in, meta_in, layout);
  if (validate) validate_cpu("decompress", values_in, meta_in, layout);
  dispatch_value_type(p.values.scalar_type(), [&](auto value_tag, auto) {
    using scalar_t = decltype(value_tag);
    with_layout(p.layout, [&](auto sm80) {
      constexpr bool kSm80 = decltype(sm80)::value;
      const scalar_t* values = static_cast<const scalar_t*>(p.values.data_ptr());
      const void* meta = p.meta.data_ptr();
      scalar_t* out = static_cast<scalar_t*>(p.dense.data_ptr());
      at::parallel_for(0, p.rows * p.K / kUnitCols<kSm80>, kGrain / 4, [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) decompress_unit<kSm80>(values, meta, out, p.rows, p.K, u);
      });
    });
  });
  return p.dense;
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) {
  m.impl("soft_threshold_24", &threshold_cpu<true>);
  m.impl("hard_threshold_24", &threshold_cpu<false>);
  m.impl("prune_and_compress", &prune_and_compress_cpu);
  m.impl("decompress", &decompress_cpu);
  m.impl("validate_compressed", &validate_compressed_cpu);
}

}  // namespace s_ste
