// Index map of the compressed 2:4 operand A consumed by CUTLASS's SM90 sparse GEMM
// (collective sm90_sparse_mma_tma_gmma_ss_warpspecialized*, A K-major, metadata uint8).
// It reproduces Sm90GemmSparseConfig<T, GMMA::Major::K, sparse_elem<8,uint8_t>, MinTileK>
// ::fill_layoutA / fill_layoutE of nvidia-cutlass 4.2 without including CUTLASS; the C++
// test tests/cpp/test_layout_sm90.cu checks every (m, k) against CuTe's own layouts.
//
// Values: fill_layoutA (K-major) is plain row-major [M, K/2] with row pitch
// round_up(K, values_k_align)/2. With K % values_k_align == 0 (the TMA 16-byte rule, which
// we require) that is exactly K/2: no padding, no pitch, and M is free. So compressed
// value j of row m sits at m*(K/2) + j; no values_offset() is needed.
//
// Metadata: one 4-bit code per group of 4 logical k, two groups per byte, the group at the
// lower k in the low nibble (CuTe's sub-byte order, used by CUTLASS's compressor). The
// bytes are laid out in atoms of 64 rows x AtomK logical columns (64*AtomK/8 bytes), the
// atoms stacked first along M (M padded to 64), then along K (K padded to AtomK); padding
// bytes are zero. Within an atom:
//  - 8-bit A: plain row-major, AtomK/8 bytes per row.
//  - 16-bit A: interleaved. TMA copies an atom to shared memory unchanged; the atom is
//    the wgmma 16-bit metadata block (16 rows x 32 k) stacked 4x along M and AtomK/32 times
//    along K, reordered offline so the mainloop can read each thread's metadata from shared
//    memory with vectorized loads (that is the stated purpose in sm90_sparse_config.inl).
//    With m = m0 + 8*m1 + 16*m2 (m0 < 8, m1 < 2, m2 < 4) and k = k0 + 16*k1 + 32*k2
//    (k0 < 16, k1 < 2, k2 < AtomK/32), the byte inside the atom is, for AtomK = 128,
//      k0/8 + 2*m1 + 4*k2 + 16*m0 + 128*k1 + 256*m2
//    (the two 8-k bytes, then the two 8-row halves of a 16-row slab, then the 32-k blocks,
//    then the 8 rows, then the two 16-k halves of a 32-k block, then the 16-row slabs).
#pragma once

#include <cstdint>

#include "hd.cuh"

namespace s_ste::sm90 {

// MinTileK (= the metadata atom's K extent, AtomK). The stock collective computes its own
// SparseConfig with MinTileK = min(TileK, 128) and can_implement() requires the layout we
// pass to equal that config's fill_layoutE(), so one weight buffer serves exactly the
// kernels whose K tile gives the same min(TileK, 128). We fix 128 for both widths: every
// tile we ship has TileK >= 128 (16-bit: 128; 8-bit: 128 or 256), which all map to 128.
// A 16-bit kernel with TileK = 64 would need AtomK = 64 (a different byte order) and
// cannot consume these buffers. 128 is also the largest value the collective ever uses.
constexpr int kMinTileK16 = 128;  // multiple of the 16-bit block K (512/16 = 32)
constexpr int kMinTileK8 = 128;   // multiple of the 8-bit block K (512/8 = 64)
constexpr int kAtomK16 = kMinTileK16;
constexpr int kAtomK8 = kMinTileK8;
constexpr int kAtomM = 64;  // one wgmma M extent: rows are padded to a multiple of it

// The alignment rules of layout "sm90" (csrc/layout_rules.cpp exports them as
// s_ste_cuda.layout_rules(); csrc/gemm/sm90_sparse_gemm.cuh static_asserts the GEMM's).
// A compressed operand [rows, K]: any positive number of rows (the metadata pads them to
// kAtomM), and K such that a compressed row is whole 16-byte TMA vectors: 16 for 16-bit
// values, 32 for 8-bit.
constexpr int kRowAlign = 1;
S_STE_HD constexpr int values_k_align(int elem_bits) { return 256 / elem_bits; }
constexpr int kMetaCols = 8;  // logical columns per metadata byte
// What CUTLASS 3.x's SM90 sparse GEMMs need of the product out = x · Âᵀ:
//  M = out_features: out [N, M] (16-bit in every kernel) is TMA-stored in 16-byte rows;
//  K: Â's compressed rows and x's rows are whole 16-byte vectors (x's rule, 8 elements of
//     a 16-bit or 16 of an 8-bit x, is weaker than Â's);
//  N = tokens: free.
constexpr int kGemmRowAlign = 8;
S_STE_HD constexpr int gemm_k_align(int elem_bits) { return values_k_align(elem_bits); }
constexpr int kGemmTokenAlign = 1;
// The weight-gradient GEMM's K is the tokens: one zero-padding that serves its 16-bit and
// its FP8 operand.
constexpr int kWgradTokenPad = gemm_k_align(8);

S_STE_HD constexpr int atom_k(int elem_bits) { return elem_bits == 8 ? kAtomK8 : kAtomK16; }

S_STE_HD constexpr int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// Total metadata bytes, padding included: round_up(M, 64) * round_up(K, AtomK) / 8.
S_STE_HD constexpr int64_t meta_bytes(int64_t M, int64_t K, int elem_bits) {
  return round_up(M, kAtomM) * round_up(K, atom_k(elem_bits)) / 8;
}

// Byte holding the codes of the two groups covering logical columns [8*k8, 8*k8 + 8) of
// row m (low nibble: columns 8*k8..8*k8+3). elem_bits is 16 (bf16/fp16) or 8 (e4m3/e5m2).
// K is not needed (the atoms are stacked along M first); it is kept for a uniform signature.
S_STE_HD constexpr int64_t meta_byte_offset(int64_t m, int64_t k8, int64_t M, int64_t K,
                                            int elem_bits) {
  (void)K;
  const int64_t atom_k8 = atom_k(elem_bits) / 8;           // bytes per atom row
  const int64_t panel = (k8 / atom_k8) * round_up(M, kAtomM) * atom_k8;  // AtomK-wide column panel
  const int64_t block = (m / kAtomM) * (kAtomM * atom_k8);  // 64-row atom inside the panel
  const int64_t kb = k8 % atom_k8;                          // byte column inside the atom
  const int64_t mm = m % kAtomM;
  if (elem_bits == 8) return panel + block + mm * atom_k8 + kb;
  // 16-bit: m = m0 + 8*m1 + 16*m2 (m0 < 8, m1 < 2, m2 < 4),
  //         k = k0 + 16*k1 + 32*k2 (k0 < 16, k1 < 2, k2 < AtomK/32), in bytes k0/8 = kb % 2.
  const int64_t num_k = atom_k8 / 4;  // AtomK / 32
  const int64_t m0 = mm % 8, m1 = (mm / 8) % 2, m2 = mm / 16;
  const int64_t b0 = kb % 2, k1 = (kb / 2) % 2, k2 = kb / 4;
  return panel + block + b0 + 2 * m1 + 4 * k2 + 4 * num_k * m0 + 32 * num_k * k1 +
         64 * num_k * m2;
}

// Shift of the code of group g (logical columns [4g, 4g+4)) inside its byte.
S_STE_HD constexpr int meta_nibble_shift(int64_t g) { return (g & 1) ? 4 : 0; }

}  // namespace s_ste::sm90
