// Per-device GEMM tuning tables: which kernel and knobs won, per problem, on one kind of GPU.
// bench/tune_gemm.py measures them on the device and writes one file per device; the package
// ships them in s_ste/gemm_tables/ and installs them at import (s_ste/gemm_tables/__init__.py ->
// s_ste_cuda.gemm_install_tables -> install_tables). choose_kernel (select.cpp) reads the
// installed table whose device name and SM count are the GPU's, and only if its fingerprint is
// this build's. Plain C++: no CUDA call, no torch.
//
// The format (text, one record per line; '#' starts a comment, blank lines are skipped; fields
// are separated by spaces):
//   s_ste_gemm_table 1                  first record: the format and its version
//   device <name...>                    cudaDeviceProp::name, the rest of the line (e.g. NVIDIA H200)
//   sm_count <int>                      the device's SMs
//   fingerprint <16 hex digits>         gemm_fingerprint() of the build the table was measured with
//   weight <kernel> <float>             optional: the kernel's measured throughput relative to the
//                                       default kernel of its dtypes (the heuristic's weight)
//   row <a> <b> <M> <K_lo> <K_hi> <N_lo> <N_hi> <kernel> <raster> <swizzle> <promotion> [<us> ...]
//       a problem D[M, N] = A[M, K] B[K, N] with values of dtype a, x of dtype b (element_name
//       spelling), M exact, K_lo <= K <= K_hi, N_lo <= N <= N_hi: run <kernel> with the knobs
//       (raster: heuristic / along_m / along_n; swizzle and promotion: integers, 0 = default);
//       trailing fields (the measured time, the runner-up) are informative and ignored.
//   anything else under another first word, e.g. "note ...": ignored (room for additions).
// The first matching row wins. A table whose header is incomplete, or any malformed record,
// is rejected as a whole with the line and the reason.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sparse_gemm.h"

namespace s_ste::gemm {

inline constexpr const char* kTableMagic = "s_ste_gemm_table";
inline constexpr int kTableVersion = 1;

// The raster spelling of the tables and the bindings ("heuristic", "along_m", "along_n").
const char* raster_name(int raster);
bool parse_raster(std::string_view name, int* raster);

struct TableRow {
  Element a, b;
  int64_t m, k_lo, k_hi, n_lo, n_hi;
  std::string kernel_name;
  GemmKnobs knobs;
  int line;                                // in the table's text, from 1
  const SparseGemmKernel* base = nullptr;  // the registry entry named kernel_name (install_tables)
  SparseGemmKernel entry{};                // base with the row's knobs: what choose_kernel returns
};

struct TuningTable {
  std::string source;       // where it came from (a file path), for messages
  std::string device;
  int sm_count = 0;
  std::string fingerprint;
  std::vector<std::pair<std::string, double>> weights;
  std::vector<TableRow> rows;
  std::string status;       // "" usable; else why it is ignored (a parse error, another build, ...)
};

// The fingerprint of this build's kernels: FNV-1a (64 bit) over their names, sorted, each
// followed by '\n', as 16 lower-case hex digits. A table names kernels and knobs of one build;
// another set of kernels (one added, removed or renamed) makes it another build's table.
std::string build_fingerprint();

// Parses `text`; a malformed table comes back with its status set ("<source>:<line>: why").
TuningTable parse_table(std::string_view text, std::string source);

// Replaces the installed tables by `tables`: each row is resolved against kernels(), and a table
// of another build (fingerprint), or naming a kernel this build does not have, gets its status
// set and is never used. Thread-safe; tables replaced earlier stay allocated (selections made
// from them may still be running), so install rarely (at import, in tests).
void install_tables(std::vector<TuningTable> tables);

// The installed tables (with their status), in installation order.
std::vector<const TuningTable*> installed_tables();

// The first usable installed table of the GPU named `device` with `sm_count` SMs, or nullptr;
// when tables for that device exist but none is usable, *why says why (else it is left empty).
const TuningTable* table_for(const char* device, int sm_count, std::string* why);

// The first row of `table` for the problem, or nullptr.
const TableRow* find_row(const TuningTable& table, Element a, Element b, int64_t M, int64_t N, int64_t K);

// The weight the table gives `kernel` (1 when it names none).
double table_weight(const TuningTable* table, const SparseGemmKernel& kernel);

}  // namespace s_ste::gemm
