// Host-only proof that s_ste/layout_sm90.cuh is bit-for-bit CUTLASS's SM90 sparse layout.
//
// For each element type and many (M, K), CuTe's own layouts from
// cutlass::Sm90GemmSparseConfig<sparse_elem<2,T>, K-major, sparse_elem<8,uint8_t>, MinTileK>
// (the config the collective builds for itself) are evaluated at every coordinate and
// compared with our closed-form offsets:
//   values:   fill_layoutA through the same sparse-pointer/recast the CUTLASS compressor
//             uses must be plain row-major m*(K/2) + j;
//   metadata: fill_layoutE through the compressor's recast to uint8 must give
//             meta_byte_offset() for every (m, k8) (padding included); the 8 logical k of a
//             byte must be consecutive inside it (so the lower group is the low nibble);
//             the map must be a bijection onto [0, meta_bytes());
//   compressor: the compressor's shared-memory staging tile (recast to uint4_t chunks) and
//             its local_tile of the global metadata must land chunk (m, g) in byte
//             meta_byte_offset(m, g/2) at nibble meta_nibble_shift(g);
//   size:     meta_bytes() equals cosize(fill_layoutE)/8 and the compressor utility's
//             get_tensor_E_bytes() (what example 62 allocates).
// At compile time, the mainloops the SM90 sparse CollectiveBuilder makes for tiles with
// TileK >= 128 use exactly the config tested here (so can_implement's layout equality holds),
// and a 16-bit TileK = 64 mainloop does not.
// No kernel is launched: nvcc only compiles host code here.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "cute/tensor.hpp"
#include "cutlass/gemm/collective/builders/sm90_sparse_config.inl"
// Only the SM90 sparse mainloops and their builder (collective_builder.hpp would pull in
// every architecture); the collectives must come before the builder.
#include "cutlass/gemm/collective/collective_mma_decl.hpp"
#include "cutlass/gemm/collective/sm90_sparse_mma_tma_gmma_ss_warpspecialized.hpp"
#include "cutlass/gemm/collective/sm90_sparse_mma_tma_gmma_ss_warpspecialized_fp8.hpp"
#include "cutlass/gemm/collective/collective_builder_decl.hpp"
#include "cutlass/gemm/collective/builders/sm90_sparse_gmma_builder.inl"
#include "cutlass/numeric_types.h"
#include "cutlass/transform/kernel/sparse_gemm_compressor.hpp"
#include "cutlass/util/packed_stride.hpp"

#include "s_ste/layout_sm90.cuh"

using namespace cute;

namespace {

int g_failures = 0;
int64_t g_checks = 0;

#define CHECK_EQ(a, b, ...)                                                        \
  do {                                                                             \
    ++g_checks;                                                                    \
    const long long va_ = static_cast<long long>(a), vb_ = static_cast<long long>(b); \
    if (va_ != vb_) {                                                              \
      if (g_failures < 20) {                                                       \
        std::printf("  MISMATCH %s = %lld vs %s = %lld at ", #a, va_, #b, vb_);    \
        std::printf(__VA_ARGS__);                                                  \
        std::printf("\n");                                                         \
      }                                                                            \
      ++g_failures;                                                                \
    }                                                                              \
  } while (0)

using ElemE = sparse_elem<8, uint8_t>;  // ValTypeE of every SM90 sparse GMMA atom

template <class T, int MinTileK>
using Config = cutlass::Sm90GemmSparseConfig<sparse_elem<2, T>, GMMA::Major::K, ElemE, Int<MinTileK>>;

// ---- compile time: the collective's own config ------------------------------------------
template <class T, int TM, int TN, int TK, class Schedule>
using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp,
    T, cutlass::layout::RowMajor, 16 / sizeof(T),
    T, cutlass::layout::ColumnMajor, 16 / sizeof(T), float,
    Shape<Int<TM>, Int<TN>, Int<TK>>, Shape<_1, _2, _1>,
    cutlass::gemm::collective::StageCountAuto, Schedule>::CollectiveOp;

template <class Op, class Cfg>
constexpr bool kSameLayouts = std::is_same_v<typename Op::SparseConfig, Cfg> &&
                              std::is_same_v<typename Op::LayoutE, decltype(Cfg::deduce_layoutE())>;

using bf16 = cutlass::bfloat16_t;
using e4m3 = cutlass::float_e4m3_t;
using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using Pingpong = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using CoopFP8Fast = cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum;
static_assert(kSameLayouts<Mainloop<bf16, 128, 128, 128, Coop>, Config<bf16, s_ste::sm90::kMinTileK16>>);
static_assert(kSameLayouts<Mainloop<bf16, 64, 128, 128, Pingpong>, Config<bf16, s_ste::sm90::kMinTileK16>>);
static_assert(kSameLayouts<Mainloop<e4m3, 128, 128, 128, Coop>, Config<e4m3, s_ste::sm90::kMinTileK8>>);
static_assert(kSameLayouts<Mainloop<e4m3, 128, 128, 256, CoopFP8Fast>, Config<e4m3, s_ste::sm90::kMinTileK8>>);
// A 64-wide K tile builds MinTileK = 64: a different LayoutE type, so it cannot take our buffers.
static_assert(!kSameLayouts<Mainloop<bf16, 128, 128, 64, Coop>, Config<bf16, s_ste::sm90::kMinTileK16>>);
static_assert(kSameLayouts<Mainloop<bf16, 128, 128, 64, Coop>, Config<bf16, 64>>);

template <class T>
constexpr int kMinTileK = sizeof_bits_v<T> == 8 ? s_ste::sm90::kMinTileK8 : s_ste::sm90::kMinTileK16;

template <class T>
void check_shape(const char* name, int M, int K) {
  constexpr int bits = sizeof_bits_v<T>;
  using Cfg = Config<T, kMinTileK<T>>;
  using UintA = cute::uint_bit_t<bits>;
  namespace l = s_ste::sm90;
  const int64_t before = g_failures;
  static_assert(int(typename Cfg::TensorEAtomK{}) == l::atom_k(bits), "AtomK");
  static_assert(int(typename Cfg::TensorEAtomM{}) == l::kAtomM, "AtomM");
  static_assert(int(typename Cfg::TensorAAlignmentK{}) == l::values_k_align(bits), "A align");

  auto problem = cute::make_tuple(M, 1, K, 1);

  // ---- values (fill_layoutA), through the compressor's view -----------------------------
  auto layout_a = Cfg::fill_layoutA(problem);
  std::vector<UintA> a_buf(size_t(M) * K / 2 + 1);
  auto gAC_sparse = make_tensor(make_gmem_ptr(recast_ptr<sparse_elem<2, UintA>>(a_buf.data())), layout_a);
  auto gAC = recast<UintA>(gAC_sparse);  // (M, K/2) physical, as the compressor writes it
  CHECK_EQ(size<0>(gAC), M, "%s M=%d K=%d", name, M, K);
  CHECK_EQ(size<1>(gAC), K / 2, "%s M=%d K=%d", name, M, K);
  CHECK_EQ(cosize(layout_a) / 2, int64_t(M) * K / 2, "%s M=%d K=%d (values size)", name, M, K);
  for (int m = 0; m < M; ++m) {
    for (int j = 0; j < K / 2; ++j) {
      CHECK_EQ(&gAC(m, j, 0) - a_buf.data(), int64_t(m) * (K / 2) + j, "%s M=%d K=%d values m=%d j=%d",
               name, M, K, m, j);
      // logical coordinate k = 2j (kept slot 0 of the pair) -> physical j
      CHECK_EQ(layout_a(m, 2 * j, 0) / 2, int64_t(m) * (K / 2) + j, "%s M=%d K=%d layoutA m=%d j=%d",
               name, M, K, m, j);
    }
  }

  // ---- metadata (fill_layoutE) -----------------------------------------------------------
  auto layout_e = Cfg::fill_layoutE(problem);
  const int64_t nbytes = l::meta_bytes(M, K, bits);
  const int Mp = int(l::round_up(M, l::kAtomM));
  const int Kp = int(l::round_up(K, l::atom_k(bits)));
  CHECK_EQ(cosize(layout_e), nbytes * 8, "%s M=%d K=%d (cosize E)", name, M, K);
  CHECK_EQ(size(layout_e), nbytes * 8, "%s M=%d K=%d (size E)", name, M, K);
  using Util = cutlass::transform::kernel::StructuredSparseCompressorUtility<
      decltype(problem), T, cutlass::layout::RowMajor, Cfg>;
  Util util(problem, cutlass::make_cute_packed_stride(typename Util::StrideA{}, cute::make_shape(M, K, 1)));
  CHECK_EQ(util.get_tensor_E_bytes(), nbytes, "%s M=%d K=%d (compressor E bytes)", name, M, K);
  CHECK_EQ(util.get_compressed_tensor_A_bytes(), int64_t(M) * K / 2 * bits / 8,
           "%s M=%d K=%d (compressor A bytes)", name, M, K);
  CHECK_EQ(util.get_metadata_m_physical(), Mp, "%s M=%d K=%d", name, M, K);
  CHECK_EQ(util.get_metadata_k_physical(), Kp / 8, "%s M=%d K=%d", name, M, K);

  std::vector<uint8_t> e_buf(nbytes);
  auto gE_sparse = make_tensor(make_gmem_ptr(recast_ptr<ElemE>(e_buf.data())), layout_e);
  auto gE = recast<uint8_t>(gE_sparse);  // (Mp, Kp/8, 1) bytes, as the compressor writes them
  CHECK_EQ(size<0>(gE), Mp, "%s M=%d K=%d", name, M, K);
  CHECK_EQ(size<1>(gE), Kp / 8, "%s M=%d K=%d", name, M, K);
  std::vector<int> hits(nbytes, 0);
  for (int m = 0; m < Mp; ++m) {
    for (int k8 = 0; k8 < Kp / 8; ++k8) {
      const int64_t ours = l::meta_byte_offset(m, k8, M, K, bits);
      CHECK_EQ(&gE(m, k8, 0) - e_buf.data(), ours, "%s M=%d K=%d meta m=%d k8=%d", name, M, K, m, k8);
      // The 8 logical k of one byte are consecutive: lower k = lower bits = low nibble.
      for (int i = 0; i < 8; ++i) {
        CHECK_EQ(layout_e(m, 8 * k8 + i, 0), ours * 8 + i, "%s M=%d K=%d meta m=%d k=%d", name, M, K, m,
                 8 * k8 + i);
      }
      if (ours >= 0 && ours < nbytes) ++hits[ours];
    }
  }
  int64_t not_once = 0;
  for (int h : hits) not_once += (h != 1);
  CHECK_EQ(not_once, 0, "%s M=%d K=%d (bytes not hit exactly once)", name, M, K);

  // ---- the compressor's own write path ---------------------------------------------------
  // It stages a 64 x AtomK block of codes as uint4_t chunks in a row-major byte tile, then
  // copies byte (r, j) of the tile to local_tile(gE, tile, (bx, by, 0))(r, j).
  using AtomM = typename Cfg::TensorEAtomM;
  using AtomK = typename Cfg::TensorEAtomK;
  auto tile_layout = make_layout(make_shape(AtomM{}, AtomK{} / Int<8>{}), LayoutRight{});
  std::vector<uint8_t> smem(size(tile_layout));
  auto cEsE = make_tensor(smem.data(), tile_layout);
  auto cEsE_chunk = recast<cute::uint4_t>(cEsE);
  for (int bx = 0; bx < Mp / AtomM{}; ++bx) {
    for (int by = 0; by < Kp / AtomK{}; ++by) {
      auto cEgE = local_tile(gE, shape(tile_layout), make_coord(bx, by, 0));
      for (int r = 0; r < AtomM{}; ++r) {
        for (int c = 0; c < AtomK{} / 4; ++c) {  // chunk = group of 4 logical k
          std::fill(smem.begin(), smem.end(), 0);
          cEsE_chunk(r, c) = cute::uint4_t(0xA);
          int j = -1, shift = -1;
          for (int jj = 0; jj < AtomK{} / 8; ++jj) {
            uint8_t v = cEsE(r, jj);
            if (v) { j = jj; shift = (v == 0x0A) ? 0 : (v == 0xA0) ? 4 : -2; }
          }
          const int m = bx * AtomM{} + r;
          const int g = (by * AtomK{}) / 4 + c;  // global group column
          CHECK_EQ(shift, l::meta_nibble_shift(g), "%s M=%d K=%d compressor m=%d g=%d", name, M, K, m, g);
          CHECK_EQ(&cEgE(r, j) - e_buf.data(), l::meta_byte_offset(m, g / 2, M, K, bits),
                   "%s M=%d K=%d compressor m=%d g=%d", name, M, K, m, g);
        }
      }
    }
  }
  std::printf("  %-8s M=%4d K=%4d  meta_bytes=%7lld  %s\n", name, M, K, (long long)nbytes,
              g_failures == before ? "ok" : "FAIL");
}

// How many metadata bytes of the MinTileK=64 layout differ from ours (informational: shows
// that a kernel with a 64-wide K tile could not consume our buffers).
template <class T>
int64_t count_diff_vs_mintilek64(int M, int K) {
  constexpr int bits = sizeof_bits_v<T>;
  auto layout_e = Config<T, 64>::fill_layoutE(cute::make_tuple(M, 1, K, 1));
  int64_t diff = 0;
  for (int m = 0; m < M; ++m)
    for (int k8 = 0; k8 < K / 8; ++k8)
      diff += layout_e(m, 8 * k8, 0) / 8 != s_ste::sm90::meta_byte_offset(m, k8, M, K, bits);
  return diff;
}

template <class T>
void check_type(const char* name, std::initializer_list<int> Ms, std::initializer_list<int> Ks) {
  for (int M : Ms)
    for (int K : Ks) check_shape<T>(name, M, K);
}

}  // namespace

int main() {
  // K must be a multiple of 16 (16-bit) / 32 (8-bit); M is free.
  const auto Ms = {1, 8, 63, 64, 72, 130, 256};
  check_type<cutlass::bfloat16_t>("bf16", Ms, {16, 48, 128, 160, 272, 512});
  check_type<cutlass::half_t>("fp16", Ms, {16, 96, 256});
  check_type<cutlass::float_e4m3_t>("e4m3", Ms, {32, 96, 128, 160, 288, 512});
  check_type<cutlass::float_e5m2_t>("e5m2", Ms, {32, 224, 256});

  std::printf("info: bytes placed differently by a MinTileK=64 layout (M=128, K=256): bf16 %lld of %d, "
              "e4m3 %lld of %d\n",
              (long long)count_diff_vs_mintilek64<cutlass::bfloat16_t>(128, 256), 128 * 256 / 8,
              (long long)count_diff_vs_mintilek64<cutlass::float_e4m3_t>(128, 256), 128 * 256 / 8);
  std::printf("layout_sm90: %lld checks, %d mismatches\n", (long long)g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
