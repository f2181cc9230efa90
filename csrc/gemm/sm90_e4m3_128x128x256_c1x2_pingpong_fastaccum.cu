// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16, FP8 FastAccum, fused per-row bias and alpha: the
// FP8 forward product with tile 128x128x256, cluster 1x2x1, Pingpong (torchao's tuned sparse FP8
// default for more than 128 tokens, 1.43-1.51 PFLOP/s effective in pytorch/ao #4730). A tuning
// candidate (issue 19).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// FastAccum (no promotion: all of K in the tensor core's FP8 accumulator): never chosen by the
// heuristic, only by a measured table row that passed the FP8 accuracy rule, and e4m3 x e4m3
// (forward) only; see sm90_e4m3_128x256x128_coop_fastaccum.cu and csrc/gemm/README.md.
// Pingpong: each consumer warpgroup owns a whole 128x128 tile (with promotion it would spill
// 836 bytes; FastAccum: 0, 4 stages) and one tile's epilogue overlaps the other's mainloop.
// Cluster 1x2x1 (torchao's): the two CTAs share the A (weight) tile along N = tokens by TMA
// multicast; with N <= 128 tokens the second CTA of each cluster idles, a case only a table
// row measured at that N would choose it for. TileK = 256 keeps MinTileK = 128, the metadata
// layout of layout_sm90.cuh.
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_128, cute::_128, cute::_256>, cute::Shape<cute::_1, cute::_2, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8FastAccum,
                              cutlass::epilogue::TmaWarpSpecialized>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E4M3E4M3_SS_TN");
static_assert(Gemm::kFastAccum && !Gemm::kPromotes, "a FastAccum kernel");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 4, "fewer mainloop stages than the compile probe's 4");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3FastPingpong128x128x256 =
    sm90::make_sm90_kernel<Gemm>("sm90_e4m3_128x128x256_c1x2_pingpong_fastaccum");

}  // namespace s_ste::gemm
