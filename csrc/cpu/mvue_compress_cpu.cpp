// CPU kernel of mvue_24_t_compress: for each output row n (a column of g) and each chunk of
// 32 tokens, gather the chunk, run the shared chunk body (MVUE + compress) and store its
// values and metadata. The CUDA kernel runs the same body on a shared-memory transpose.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../plans.h"
#include "s_ste/chunk.cuh"

namespace s_ste {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> mvue_24_t_compress_cpu(
    const at::Tensor& g_in, int64_t seed, int64_t offset, c10::string_view layout,
    std::optional<c10::ScalarType> out_dtype, const std::optional<at::Tensor>& scale_in) {
  MvueCompressPlan p = plan_mvue_compress(g_in, seed, offset, layout, out_dtype, scale_in);
  const float scale = p.scale.item<float>();
  const int64_t T = p.T, N = p.N, chunks = (T + kChunkCols - 1) / kChunkCols;
  uint32_t amax_bits = 0;
  dispatch_compress(p.g.scalar_type(), p.values.scalar_type(), p.layout, [&](auto in_tag, auto out_tag, auto sm80, auto fp8) {
    using In = decltype(in_tag);
    using Out = decltype(out_tag);
    const In* g = p.g.data_ptr<In>();
    Out* values = static_cast<Out*>(p.values.data_ptr());
    void* meta = p.meta.data_ptr();
    amax_bits = at::parallel_reduce(
        0, N * chunks, 256, uint32_t(0),
        [&](int64_t b, int64_t e, uint32_t acc) {
          for (int64_t u = b; u < e; ++u) {
            const int64_t n = u / chunks, col0 = (u % chunks) * kChunkCols;
            const int ncols = int(std::min<int64_t>(kChunkCols, T - col0));
            float x[kChunkCols] = {};
            for (int i = 0; i < ncols; ++i) x[i] = static_cast<float>(g[(col0 + i) * N + n]);
            Out v[kChunkCols / 2];
            const uint32_t packed = mvue_compress_chunk<decltype(fp8)::value, In>(
                x, ncols / 4, p.seed, p.offset, uint64_t(n * (T / 4) + col0 / 4), scale, v, acc);
            std::copy(v, v + ncols / 2, values + n * (T / 2) + col0 / 2);
            store_meta_chunk<decltype(sm80)::value, int(8 * sizeof(Out))>(meta, N, T, n, col0, ncols, packed);
          }
          return acc;
        },
        [](uint32_t a, uint32_t b) { return std::max(a, b); });
  });
  *p.amax.data_ptr<float>() = bits_float(amax_bits);  // bit for bit, NaN payload included
  return {p.values, p.meta, p.amax};
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) { m.impl("mvue_24_t_compress", &mvue_24_t_compress_cpu); }

}  // namespace s_ste
