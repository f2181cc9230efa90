// CPU kernels of the pruning ops, calling the shared per-element math (the oracle the CUDA
// kernels are compared with, bit for bit). prune_and_compress(_dense) runs the CUDA kernel's
// body: per (row, 32-column chunk), prune_compress_chunk + store_meta_chunk (s_ste/chunk.cuh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../op_checks.h"
#include "../plans.h"
#include "s_ste/chunk.cuh"

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

// values + meta (+ dense ŵ when the plan holds it) of w, chunk by chunk.
void compress_cpu(CompressPlan& p, bool soft) {
  const float beta = p.scale.item<float>();
  const int64_t chunks = (p.K + kChunkCols - 1) / kChunkCols;
  dispatch_compress(p.w.scalar_type(), p.values.scalar_type(), p.layout, [&](auto in_tag, auto out_tag, auto sm80, auto fp8) {
    using In = decltype(in_tag);
    using Out = decltype(out_tag);
    const In* w = p.w.data_ptr<In>();
    Out* values = static_cast<Out*>(p.values.data_ptr());
    Out* dense = p.dense.defined() ? static_cast<Out*>(p.dense.data_ptr()) : nullptr;
    void* meta = p.meta.data_ptr();
    at::parallel_for(0, p.rows * chunks, kGrain / 8, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        const int64_t r = u / chunks, col0 = (u % chunks) * kChunkCols;
        const int ncols = int(std::min<int64_t>(kChunkCols, p.K - col0));
        float x[kChunkCols] = {};
        for (int i = 0; i < ncols; ++i) x[i] = static_cast<float>(w[r * p.K + col0 + i]);
        Out v[kChunkCols / 2];
        const uint32_t packed = prune_compress_chunk<decltype(fp8)::value>(x, ncols / 4, beta, v, soft);
        std::copy(v, v + ncols / 2, values + r * (p.K / 2) + col0 / 2);
        store_meta_chunk<decltype(sm80)::value, int(8 * sizeof(Out))>(meta, p.rows, p.K, r, col0, ncols, packed);
        if (dense) {
          Out d[kChunkCols];
          dense_chunk(v, packed, ncols / 4, d);
          std::copy(d, d + ncols, dense + r * p.K + col0);
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor> prune_and_compress_cpu(const at::Tensor& w, const at::Tensor& scale,
                                                          c10::string_view layout,
                                                          std::optional<c10::ScalarType> out_dtype) {
  CompressPlan p = plan_compress("prune_and_compress", w, scale, layout, out_dtype, /*write_dense=*/false);
  compress_cpu(p, /*soft=*/true);
  return {p.values, p.meta};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> prune_and_compress_dense_cpu(const at::Tensor& w, const at::Tensor& scale,
                                                                            c10::string_view layout,
                                                                            std::optional<c10::ScalarType> out_dtype,
                                                                            bool hard) {
  CompressPlan p = plan_compress("prune_and_compress_dense", w, scale, layout, out_dtype, /*write_dense=*/true);
  compress_cpu(p, /*soft=*/!hard);
  return {p.values, p.meta, p.dense};
}

// Counts the metadata units with an illegal code and the non-zero SM90 padding bytes.
void validate_cpu(const char* op, const CompressedPlan& p) {
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
  check_validated_meta(op, p.layout, p.K, bad, first, padding);
}

void validate_compressed_cpu(const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  constexpr const char* op = "validate_compressed";
  validate_cpu(op, plan_validate(op, values, meta, layout));
}

at::Tensor decompress_cpu(const at::Tensor& values_in, const at::Tensor& meta_in, c10::string_view layout,
                          bool validate) {
  const CompressedPlan p = plan_decompress(values_in, meta_in, layout);
  if (validate) validate_cpu("decompress", p);
  dispatch_value_type(p.values.scalar_type(), [&](auto value_tag, auto) {
    using scalar_t = decltype(value_tag);
    with_layout(p.layout, [&](auto sm80) {
      constexpr bool kSm80 = decltype(sm80)::value;
      const scalar_t* values = static_cast<const scalar_t*>(p.values.data_ptr());
      const void* meta = p.meta.data_ptr();
      scalar_t* out = static_cast<scalar_t*>(p.dense.data_ptr());
      at::parallel_for(0, p.rows * p.K / kUnitCols<kSm80>, kGrain / 4, [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) decompress_meta_unit<kSm80>(values, meta, out, p.rows, p.K, u);
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
  m.impl("prune_and_compress_dense", &prune_and_compress_dense_cpu);
  m.impl("decompress", &decompress_cpu);
  m.impl("validate_compressed", &validate_compressed_cpu);
}

}  // namespace s_ste
