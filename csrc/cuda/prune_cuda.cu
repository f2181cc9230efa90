// CUDA kernels of the pruning ops, calling the same per-element math as the CPU kernels
// (csrc/cpu/prune_cpu.cpp), so the results are identical bit for bit. prune_and_compress is
// the fused one-pass kernel (read w once, write values + metadata once); the threshold ops
// and decompress are simple one-thread-per-group kernels (the training step does not run
// them on the GPU).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "../op_checks.h"
#include "../plans.h"
#include "chunk_io.cuh"
#include "kernel_image.h"
#include "launch.cuh"
#include "s_ste/chunk.cuh"
#include "s_ste/compress.cuh"

namespace s_ste {
namespace {

template <typename T, bool Soft>
__global__ void threshold_kernel(const T* __restrict__ w, T* __restrict__ out, bool* __restrict__ mask,
                                 int64_t groups) {
  S_STE_GRID_STRIDE(g, groups) {
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(w[4 * g + i]);
    const Pruned24 r = prune_group(v, Soft);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[4 * g + i] = to_value<T>(r.value[i]);
      mask[4 * g + i] = i == r.i0 || i == r.i1;
    }
  }
}

// One block per tile of 64 rows x 128 columns; thread t takes row t/4 of the tile and the
// 32-column chunk t%4 of it: 16-byte loads that four neighbouring threads make contiguous,
// a 32- or 16-byte store of its 16 values, and its metadata. No intermediate in memory.
// WriteDense (prune_and_compress_dense) also stores the chunk's dense ŵ, the bytes
// decompress would write, with 16-byte stores; prune_and_compress is this kernel without it.
constexpr int kPruneTileRows = 64, kPruneTileCols = 4 * kChunkCols, kPruneThreads = 256;

template <bool Sm80, int Fp8, typename In, typename Out, bool WriteDense>
__global__ void __launch_bounds__(kPruneThreads, 4)  // <= 64 registers: no spills on sm_80 or sm_90a
    prune_compress_kernel(const In* __restrict__ w, const float* __restrict__ scale, Out* __restrict__ values,
                          void* __restrict__ meta, Out* __restrict__ dense, int64_t rows, int64_t K, bool soft) {
  const int64_t r = int64_t(blockIdx.x) * kPruneTileRows + threadIdx.x / 4;
  const int64_t col0 = int64_t(blockIdx.y) * kPruneTileCols + (threadIdx.x % 4) * kChunkCols;
  if (r >= rows || col0 >= K) return;
  const int ncols = int(K - col0 < kChunkCols ? K - col0 : kChunkCols);
  float x[kChunkCols];
  cuda::load_chunk(w + r * K + col0, ncols, x);
  Out v[kChunkCols / 2];
  const uint32_t packed = prune_compress_chunk<Fp8>(x, ncols / 4, __ldg(scale), v, soft);
  cuda::store_values(values + r * (K / 2) + col0 / 2, ncols / 2, v);
  store_meta_chunk<Sm80, int(8 * sizeof(Out))>(meta, rows, K, r, col0, ncols, packed);
  if constexpr (WriteDense) {
    Out d[kChunkCols];
    dense_chunk(v, packed, ncols / 4, d);
    cuda::store_values(dense + r * K + col0, ncols, d);
  }
}

template <bool Sm80, typename T>
__global__ void decompress_kernel(const T* __restrict__ values, const void* __restrict__ meta, T* __restrict__ out,
                                  int64_t rows, int64_t K) {
  S_STE_GRID_STRIDE(u, rows * K / kUnitCols<Sm80>) { decompress_meta_unit<Sm80>(values, meta, out, rows, K, u); }
}

template <bool Soft>
std::tuple<at::Tensor, at::Tensor> threshold_cuda(const at::Tensor& w_in) {
  PrunePlan p = plan_prune(Soft ? "soft_threshold_24" : "hard_threshold_24", w_in);
  const c10::cuda::CUDAGuard guard(p.w.device());
  cuda::require_kernel_image(Soft ? "soft_threshold_24" : "hard_threshold_24");
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.w.scalar_type(), "threshold_cuda", [&] {
    threshold_kernel<scalar_t, Soft><<<cuda::grid_for(p.groups), cuda::kThreads, 0, stream>>>(
        p.w.data_ptr<scalar_t>(), p.pruned.data_ptr<scalar_t>(), p.mask.data_ptr<bool>(), p.groups);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.pruned, p.mask};
}

// values + meta (+ dense ŵ when the plan holds it) of w, in one pass.
void compress_cuda(const CompressPlan& p, bool soft) {
  const c10::cuda::CUDAGuard guard(p.w.device());
  const char* op = p.dense.defined() ? "prune_and_compress_dense" : "prune_and_compress";
  cuda::require_kernel_image(op);
  // The 16-byte loads need an aligned row start (K*sizeof(In) % 16 == 0 follows from the
  // layouts' K alignment); a view at an odd storage offset is copied once.
  const at::Tensor w = reinterpret_cast<uintptr_t>(p.w.data_ptr()) % 16 ? p.w.clone() : p.w;
  const int64_t row_tiles = (p.rows + kPruneTileRows - 1) / kPruneTileRows;
  const int64_t col_tiles = (p.K + kPruneTileCols - 1) / kPruneTileCols;
  TORCH_CHECK_VALUE(row_tiles < (int64_t(1) << 31) && col_tiles <= 65535, op, ": w of shape ",
                    p.w.sizes(), " exceeds the launch grid (K must be at most ", 65535 * kPruneTileCols, ")");
  const dim3 grid{unsigned(row_tiles), unsigned(col_tiles)};
  auto stream = at::cuda::getCurrentCUDAStream();
  dispatch_compress(w.scalar_type(), p.values.scalar_type(), p.layout, [&](auto in_tag, auto out_tag, auto sm80, auto fp8) {
    using In = decltype(in_tag);
    using Out = decltype(out_tag);
    auto launch = [&](auto write_dense) {
      prune_compress_kernel<decltype(sm80)::value, decltype(fp8)::value, In, Out, decltype(write_dense)::value>
          <<<grid, kPruneThreads, 0, stream>>>(w.data_ptr<In>(), p.scale.data_ptr<float>(),
                                               static_cast<Out*>(p.values.data_ptr()), p.meta.data_ptr(),
                                               write_dense ? static_cast<Out*>(p.dense.data_ptr()) : nullptr, p.rows,
                                               p.K, soft);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (p.dense.defined()) launch(std::true_type{});
    else launch(std::false_type{});
  });
}

std::tuple<at::Tensor, at::Tensor> prune_and_compress_cuda(const at::Tensor& w, const at::Tensor& scale,
                                                           c10::string_view layout,
                                                           std::optional<c10::ScalarType> out_dtype) {
  const CompressPlan p = plan_compress("prune_and_compress", w, scale, layout, out_dtype, /*write_dense=*/false);
  compress_cuda(p, /*soft=*/true);
  return {p.values, p.meta};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> prune_and_compress_dense_cuda(const at::Tensor& w,
                                                                             const at::Tensor& scale,
                                                                             c10::string_view layout,
                                                                             std::optional<c10::ScalarType> out_dtype,
                                                                             bool hard) {
  const CompressPlan p = plan_compress("prune_and_compress_dense", w, scale, layout, out_dtype, /*write_dense=*/true);
  compress_cuda(p, /*soft=*/!hard);
  return {p.values, p.meta, p.dense};
}

// One thread per metadata unit: counts the units with an illegal code (and the first of
// them) and marks, for SM90, which metadata bytes hold data; the rest is padding.
template <bool Sm80>
__global__ void validate_kernel(const void* __restrict__ meta, int64_t rows, int64_t K, int elem_bits,
                                unsigned long long* __restrict__ counts, uint8_t* __restrict__ is_data) {
  S_STE_GRID_STRIDE(u, rows * K / kUnitCols<Sm80>) {
    int64_t offset;
    if (!meta_unit_legal<Sm80>(meta, rows, K, elem_bits, u, offset)) {
      atomicAdd(&counts[0], 1ull);
      atomicMin(&counts[1], static_cast<unsigned long long>(u));
    }
    if (!Sm80) is_data[offset] = 1;
  }
}

// The check of validate_compressed / decompress(validate=True): one host sync to read the counts.
void validate_cuda(const char* op, const CompressedPlan& p) {
  const c10::cuda::CUDAGuard guard(p.values.device());
  cuda::require_kernel_image(op);
  auto stream = at::cuda::getCurrentCUDAStream();
  auto opts = p.meta.options();
  at::Tensor counts = at::tensor({int64_t(0), int64_t(-1)}, opts.dtype(at::kLong));  // -1: atomicMin's +inf
  const bool sm80 = p.layout == Layout::kSm80;
  at::Tensor is_data = at::zeros({sm80 ? 0 : p.meta.numel()}, opts.dtype(at::kByte));
  auto* c = reinterpret_cast<unsigned long long*>(counts.data_ptr<int64_t>());
  with_layout(p.layout, [&](auto sm80_tag) {
    constexpr bool kSm80 = decltype(sm80_tag)::value;
    validate_kernel<kSm80><<<cuda::grid_for(p.rows * p.K / kUnitCols<kSm80>), cuda::kThreads, 0, stream>>>(
        p.meta.data_ptr(), p.rows, p.K, p.elem_bits, c, is_data.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t padding = sm80 ? 0 : p.meta.ne(0).logical_and(is_data.eq(0)).sum().item<int64_t>();
  const at::Tensor host = counts.cpu();
  check_validated_meta(op, p.layout, p.K, host[0].item<int64_t>(), host[1].item<int64_t>(), padding);
}

void validate_compressed_cuda(const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  constexpr const char* op = "validate_compressed";
  validate_cuda(op, plan_validate(op, values, meta, layout));
}

at::Tensor decompress_cuda(const at::Tensor& values_in, const at::Tensor& meta_in, c10::string_view layout,
                           bool validate) {
  const CompressedPlan p = plan_decompress(values_in, meta_in, layout);
  if (validate) validate_cuda("decompress", p);
  const c10::cuda::CUDAGuard guard(p.values.device());
  cuda::require_kernel_image("decompress");
  auto stream = at::cuda::getCurrentCUDAStream();
  dispatch_value_type(p.values.scalar_type(), [&](auto value_tag, auto) {
    using scalar_t = decltype(value_tag);
    with_layout(p.layout, [&](auto sm80) {
      constexpr bool kSm80 = decltype(sm80)::value;
      decompress_kernel<kSm80, scalar_t><<<cuda::grid_for(p.rows * p.K / kUnitCols<kSm80>), cuda::kThreads, 0, stream>>>(
          static_cast<const scalar_t*>(p.values.data_ptr()), p.meta.data_ptr(),
          static_cast<scalar_t*>(p.dense.data_ptr()), p.rows, p.K);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return p.dense;
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) {
  m.impl("soft_threshold_24", &threshold_cuda<true>);
  m.impl("hard_threshold_24", &threshold_cuda<false>);
  m.impl("prune_and_compress", &prune_and_compress_cuda);
  m.impl("prune_and_compress_dense", &prune_and_compress_dense_cuda);
  m.impl("decompress", &decompress_cuda);
  m.impl("validate_compressed", &validate_compressed_cuda);
}

}  // namespace s_ste
