// Tuning tables: parsing, the build fingerprint, the installed set and the row lookup
// (tuning_table.h has the format). Plain C++, no CUDA call.
#include "tuning_table.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

namespace s_ste::gemm {

const char* element_name(Element e) {
  switch (e) {
    case Element::kBF16: return "bfloat16";
    case Element::kF16: return "float16";
    case Element::kE4M3: return "float8_e4m3fn";
    case Element::kE5M2: return "float8_e5m2";
  }
  return "?";
}

bool parse_element(const char* name, Element* out) {
  for (Element e : {Element::kBF16, Element::kF16, Element::kE4M3, Element::kE5M2}) {
    if (std::strcmp(name, element_name(e)) == 0) {
      *out = e;
      return true;
    }
  }
  return false;
}

const char* raster_name(int raster) {
  switch (raster) {
    case kRasterDefault: return "heuristic";
    case kRasterAlongM: return "along_m";
    case kRasterAlongN: return "along_n";
  }
  return "?";
}

bool parse_raster(std::string_view name, int* raster) {
  for (int r : {kRasterDefault, kRasterAlongM, kRasterAlongN}) {
    if (name == raster_name(r)) {
      *raster = r;
      return true;
    }
  }
  return false;
}

std::string build_fingerprint() {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) names.emplace_back(all[i]->name);
  std::sort(names.begin(), names.end());
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  for (const std::string& name : names) {
    for (unsigned char c : name + '\n') h = (h ^ c) * 0x100000001b3ull;  // FNV-1a 64 prime
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

namespace {

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) fields.push_back(line.substr(i, j - i));
    i = j;
  }
  return fields;
}

template <class T>
bool parse_number(std::string_view s, T* out) {
  const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return err == std::errc() && end == s.data() + s.size();
}

bool parse_float(std::string_view s, double* out) {
  // std::from_chars for double is not in every libstdc++ this builds with: strtod on a copy.
  const std::string copy(s);
  char* end = nullptr;
  *out = std::strtod(copy.c_str(), &end);
  return !copy.empty() && end == copy.c_str() + copy.size();
}

// The rest of `line` after its first field (the device name may hold spaces).
std::string_view rest_after_key(std::string_view line, std::string_view key) {
  std::string_view rest = line.substr(line.find(key) + key.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t' || rest.back() == '\r')) rest.remove_suffix(1);
  return rest;
}

// nullptr if `fields` (a "row" record) is well formed; fills *row.
const char* parse_row(const std::vector<std::string_view>& f, TableRow* row) {
  if (f.size() < 12) return "a row needs a b M K_lo K_hi N_lo N_hi kernel raster swizzle promotion";
  const std::string a(f[1]), b(f[2]);
  if (!parse_element(a.c_str(), &row->a) || !parse_element(b.c_str(), &row->b)) return "unknown dtype";
  if (!parse_number(f[3], &row->m) || !parse_number(f[4], &row->k_lo) || !parse_number(f[5], &row->k_hi) ||
      !parse_number(f[6], &row->n_lo) || !parse_number(f[7], &row->n_hi))
    return "M, K_lo, K_hi, N_lo and N_hi must be integers";
  if (row->m <= 0 || row->k_lo <= 0 || row->n_lo <= 0 || row->k_lo > row->k_hi || row->n_lo > row->n_hi)
    return "sizes must be positive and the ranges ordered (K_lo <= K_hi, N_lo <= N_hi)";
  row->kernel_name = std::string(f[8]);
  row->knobs = GemmKnobs{};
  if (!parse_raster(f[9], &row->knobs.raster)) return "raster must be heuristic, along_m or along_n";
  if (!parse_number(f[10], &row->knobs.swizzle) || !parse_number(f[11], &row->knobs.promotion))
    return "swizzle and promotion must be integers";
  return nullptr;
}

}  // namespace

TuningTable parse_table(std::string_view text, std::string source) {
  TuningTable table;
  table.source = std::move(source);
  auto fail = [&table](int line, const char* why) {
    table.status = table.source + ":" + std::to_string(line) + ": " + why;
    table.rows.clear();
    return table;
  };
  bool magic = false, has_sm_count = false;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t eol = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    const std::vector<std::string_view> f = split_fields(line);
    if (f.empty()) continue;
    if (!magic) {
      if (f[0] != kTableMagic) return fail(line_no, "not a GEMM tuning table (the first record must be 's_ste_gemm_table 1')");
      int version = 0;
      if (f.size() != 2 || !parse_number(f[1], &version) || version != kTableVersion)
        return fail(line_no, "unsupported table version (this build reads version 1)");
      magic = true;
    } else if (f[0] == "device") {
      table.device = std::string(rest_after_key(line, "device"));
    } else if (f[0] == "sm_count") {
      if (f.size() != 2 || !parse_number(f[1], &table.sm_count) || table.sm_count <= 0)
        return fail(line_no, "sm_count must be a positive integer");
      has_sm_count = true;
    } else if (f[0] == "fingerprint") {
      if (f.size() != 2 || f[1].size() != 16) return fail(line_no, "fingerprint must be 16 hex digits");
      table.fingerprint = std::string(f[1]);
    } else if (f[0] == "weight") {
      double w = 0;
      if (f.size() != 3 || !parse_float(f[2], &w) || !(w > 0)) return fail(line_no, "weight needs a kernel and a positive number");
      table.weights.emplace_back(std::string(f[1]), w);
    } else if (f[0] == "row") {
      TableRow row;
      row.line = line_no;
      if (const char* why = parse_row(f, &row)) return fail(line_no, why);
      table.rows.push_back(std::move(row));
    }
    // Any other record is informative (e.g. "note", "measured"): ignored.
  }
  if (!magic) return fail(line_no, "empty table");
  if (table.device.empty() || !has_sm_count || table.fingerprint.empty())
    return fail(line_no, "incomplete header (device, sm_count and fingerprint are required)");
  return table;
}

namespace {

// The installed set. Replaced wholesale; earlier sets are kept alive (never freed) because a
// selection made from one may still hold a pointer to one of its rows.
struct TableSet {
  std::vector<TuningTable> tables;
};
std::mutex g_install_mutex;
std::vector<std::unique_ptr<TableSet>> g_all_sets;  // guarded by g_install_mutex
std::atomic<const TableSet*> g_active{nullptr};

const SparseGemmKernel* registry_entry(const std::string& name) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  for (int i = 0; i < count; ++i)
    if (name == all[i]->name) return all[i];
  return nullptr;
}

void resolve(TuningTable& table, const std::string& fingerprint) {
  if (!table.status.empty()) return;
  if (table.fingerprint != fingerprint) {
    table.status = table.source + ": measured with another build's kernels (fingerprint " + table.fingerprint +
                   ", this build " + fingerprint + "): ignored; rerun bench/tune_gemm.py";
    return;
  }
  for (TableRow& row : table.rows) {
    row.base = registry_entry(row.kernel_name);
    if (row.base == nullptr) {
      table.status = table.source + ":" + std::to_string(row.line) + ": no kernel named " + row.kernel_name +
                     " in this build";
      return;
    }
    row.entry = *row.base;
    row.entry.knobs = row.knobs;
  }
}

}  // namespace

void install_tables(std::vector<TuningTable> tables) {
  const std::string fingerprint = build_fingerprint();
  auto set = std::make_unique<TableSet>();
  set->tables = std::move(tables);
  for (TuningTable& t : set->tables) resolve(t, fingerprint);
  const std::lock_guard<std::mutex> lock(g_install_mutex);
  g_active.store(set.get(), std::memory_order_release);
  g_all_sets.push_back(std::move(set));
}

std::vector<const TuningTable*> installed_tables() {
  std::vector<const TuningTable*> out;
  if (const TableSet* set = g_active.load(std::memory_order_acquire))
    for (const TuningTable& t : set->tables) out.push_back(&t);
  return out;
}

const TuningTable* table_for(const char* device, int sm_count, std::string* why) {
  const TableSet* set = g_active.load(std::memory_order_acquire);
  if (set == nullptr || device == nullptr || *device == '\0') return nullptr;
  std::string reasons;
  for (const TuningTable& t : set->tables) {
    if (t.device != device) continue;
    if (t.sm_count != sm_count) {
      reasons += (reasons.empty() ? "" : "; ") + t.source + ": measured on " + std::to_string(t.sm_count) +
                 " SMs, this GPU has " + std::to_string(sm_count);
      continue;
    }
    if (!t.status.empty()) {
      reasons += (reasons.empty() ? "" : "; ") + t.status;
      continue;
    }
    return &t;
  }
  if (why) *why = reasons;
  return nullptr;
}

const TableRow* find_row(const TuningTable& table, Element a, Element b, int64_t M, int64_t N, int64_t K) {
  for (const TableRow& row : table.rows) {
    if (row.a == a && row.b == b && row.m == M && row.k_lo <= K && K <= row.k_hi && row.n_lo <= N && N <= row.n_hi)
      return &row;
  }
  return nullptr;
}

double table_weight(const TuningTable* table, const SparseGemmKernel& kernel) {
  if (table != nullptr)
    for (const auto& [name, w] : table->weights)
      if (name == kernel.name) return w;
  return 1.0;
}

}  // namespace s_ste::gemm
