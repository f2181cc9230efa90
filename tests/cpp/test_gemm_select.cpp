// Host-only test of csrc/gemm/select.cpp and tuning_table.cpp with a made-up registry, made-up
// GPU names and made-up tables: the architecture rules (no GEMM on compute capability 10.x /
// 12.x, SM90 kernels on 9.x only), image_verdict on images a wrong-architecture build produces,
// image_status's per-device cache, the wave-efficiency heuristic, the knob rules, and the
// tuning table (parsing, fingerprint, device match, fall-through to the heuristic).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "knobs.h"
#include "sparse_gemm.h"
#include "tuning_table.h"

namespace s_ste::gemm {
namespace {

// The image each fake kernel reports, and how often it was asked.
KernelImage g_sm90_image{cudaSuccess, 90, 90};
KernelImage g_sm80_image{cudaSuccess, 90, 90};
KernelImage g_small_image{cudaSuccess, 90, 90};
int g_sm90_queries = 0;

// The fake SM90 kernels check the knobs as the real ones do (promotion_step 2 for the FP8 one).
Status accept(const SparseLinearArgs& a) { return check_knobs(a.knobs, true, 0); }
Status accept_fp8(const SparseLinearArgs& a) { return check_knobs(a.knobs, true, 2); }
Status accept_sm80(const SparseLinearArgs& a) { return check_knobs(a.knobs, false, 0); }
size_t no_workspace(const SparseLinearArgs&) { return 0; }
Status no_run(const SparseLinearArgs&) { return "not run in this test"; }
KernelImage sm90_image() { ++g_sm90_queries; return g_sm90_image; }
KernelImage sm80_image() { return g_sm80_image; }
KernelImage small_image() { return g_small_image; }
KernelImage good_image() { return {cudaSuccess, 90, 90}; }

constexpr Element kB = Element::kBF16, kE4 = Element::kE4M3;

// bf16: a 128-row cooperative tile (the default), then a 64-row Pingpong tile, clusters 2x1.
const SparseGemmKernel kFakeSm90{"fake_sm90", 90, true, kB, kB, kB, true, false, 128, 128, 128, &accept,
                                 &no_workspace, &no_run, &sm90_image, 2, 1, Accumulation::kF32, true, 0};
const SparseGemmKernel kFakeSm90Small{"fake_sm90_64", 90, true, kB, kB, kB, true, false, 64, 128, 128, &accept,
                                      &no_workspace, &no_run, &small_image, 2, 1, Accumulation::kF32, true, 0};
// e4m3: a FastAccum kernel first in the registry (the heuristic must skip it), then a promoting one.
const SparseGemmKernel kFakeFast{"fake_e4m3_fast", 90, true, kE4, kE4, kB, true, false, 128, 256, 128, &accept,
                                 &no_workspace, &no_run, &good_image, 2, 1, Accumulation::kFp8FastAccum, true, 0};
const SparseGemmKernel kFakePromoted{"fake_e4m3", 90, true, kE4, kE4, kB, true, false, 128, 128, 128, &accept_fp8,
                                     &no_workspace, &no_run, &good_image, 2, 1, Accumulation::kFp8Promoted, true, 2};
const SparseGemmKernel kFakeSm80{"fake_sm80", 80, false, kB, kB, kB, false, true, 128, 128, 64, &accept_sm80,
                                 &no_workspace, &no_run, &sm80_image};

// GPU names the fake device_name reports, per device index.
const char* g_device_names[8] = {"", "", "", "", "", "", "", ""};
}  // namespace

const SparseGemmKernel* const* kernels(int* count) {
  static const SparseGemmKernel* const all[] = {&kFakeSm90, &kFakeSm90Small, &kFakeFast, &kFakePromoted, &kFakeSm80};
  *count = 5;
  return all;
}

const char* device_name(int device) { return device >= 0 && device < 8 ? g_device_names[device] : ""; }

}  // namespace s_ste::gemm

using namespace s_ste::gemm;

static int failures = 0;

static void expect(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::printf("FAIL: %s %s\n", what, detail.c_str());
    ++failures;
  }
}

static bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
static bool near(double a, double b) { return std::fabs(a - b) < 1e-9; }

static const char* select(bool sm90, int sm_major, std::string* why, int device = -1) {
  SparseLinearArgs args{};
  args.N = args.M = args.K = 4096;
  const SparseGemmKernel* k = select_kernel(args, sm90, Element::kBF16, Element::kBF16, sm_major, 132, why, device);
  return k ? k->name : nullptr;
}

static Selection choose(Element a, int64_t N, int64_t M, int64_t K, const char* device_name = nullptr,
                        int sm_count = 132, int device = -1) {
  SelectQuery q{};
  q.args.N = N, q.args.M = M, q.args.K = K;
  q.sm90_layout = true;
  q.a = q.b = a;
  q.sm_major = 9;
  q.sm_count = sm_count;
  q.device = device;
  q.device_name = device_name;
  return choose_kernel(q);
}

static std::string name_of(const Selection& s) { return s.kernel ? s.kernel->name : "(none)"; }

static void test_architecture_and_images() {
  std::string why;
  // Architecture rules, host only (device = -1: no image query).
  expect(select(true, 9, &why) == std::string("fake_sm90"), "sm90 kernel on 9.x");
  expect(select(false, 8, &why) == std::string("fake_sm80"), "sm80 kernel on 8.x");
  expect(select(false, 9, &why) == std::string("fake_sm80"), "sm80 kernel on 9.x (its sm_90a image)");
  for (int major : {10, 12}) {
    why.clear();
    expect(select(true, major, &why) == nullptr && contains(why, "needs an SM90 (Hopper) GPU"), "sm90 kernel on 10/12", why);
    why.clear();
    expect(select(false, major, &why) == nullptr && contains(why, "10.x"), "sm80 kernel on 10/12 has no image", why);
  }
  why.clear();
  expect(select(false, 7, &why) == nullptr && contains(why, ">= 8.0"), "sm80 kernel on 7.x", why);
  expect(g_sm90_queries == 0, "no image query without a device");

  // image_verdict on the images builds produce.
  expect(image_verdict(kFakeSm90, {cudaSuccess, 90, 90}) == nullptr, "sm_90a image accepted");
  Status s = image_verdict(kFakeSm90, {cudaSuccess, 80, 90});
  expect(s != nullptr && contains(s, "not sm_90a code"), "sm90 kernel JIT from sm_80 PTX rejected");
  expect(image_verdict(kFakeSm90, {cudaSuccess, 100, 100}) != nullptr, "sm90 kernel built for sm_100 rejected");
  s = image_verdict(kFakeSm90, {cudaErrorNoKernelImageForDevice, 0, 0});
  expect(s != nullptr && contains(s, "no image"), "missing image rejected");
  expect(image_verdict(kFakeSm80, {cudaErrorInvalidDeviceFunction, 0, 0}) != nullptr, "invalid device function rejected");
  expect(image_verdict(kFakeSm80, {cudaSuccess, 80, 90}) == nullptr, "sm80 kernel JIT from sm_80 PTX computes: accepted");
  expect(image_verdict(kFakeSm80, {cudaSuccess, 80, 80}) == nullptr, "sm80 kernel on its sm_80 image");
  expect(image_verdict(kFakeSm80, {cudaSuccess, 75, 75}) != nullptr, "sm80 kernel from sm_75 code (a trap) rejected");

  // select with a device: a JIT-from-PTX SM90 image falls back with the reason, and the
  // answer is cached per device (one query), so a later good image on device 0 is not seen.
  // (Both bf16 SM90 kernels' images are bad here, so nothing else can take the problem.)
  g_sm90_image = g_small_image = {cudaSuccess, 80, 90};
  why.clear();
  expect(select(true, 9, &why, 0) == nullptr && contains(why, "fake_sm90: its image is not sm_90a code"),
         "wrong-architecture image falls back", why);
  g_sm90_image = g_small_image = {cudaSuccess, 90, 90};
  why.clear();
  expect(select(true, 9, &why, 0) == nullptr, "verdict cached per kernel and device");
  expect(g_sm90_queries == 1, "one image query per kernel and device", std::to_string(g_sm90_queries));
  expect(select(true, 9, &why, 1) == std::string("fake_sm90"), "another device is checked on its own");
  expect(g_sm90_queries == 2, "device 1 queried once", std::to_string(g_sm90_queries));
  // An error that says nothing about the image (e.g. a sticky context error) is not cached.
  g_sm90_image = g_small_image = {cudaErrorLaunchFailure, 0, 0};
  expect(select(true, 9, &why, 2) == nullptr, "query error: fall back");
  g_sm90_image = g_small_image = {cudaSuccess, 90, 90};
  expect(select(true, 9, &why, 2) == std::string("fake_sm90"), "query error not cached");
}

static void test_wave_efficiency_heuristic() {
  // 4096 x 8192 on 132 SMs: 32 x 64 = 2048 tiles of 128x128 in 16 waves.
  expect(near(wave_efficiency(kFakeSm90, 4096, 8192, 132), 2048.0 / (16 * 132)), "wave efficiency, full tiles");
  // M = 1000, N = 100: 8 x 1 tiles (rounded to the 2x1 cluster: 8), one wave, ragged edges count.
  expect(near(wave_efficiency(kFakeSm90, 1000, 100, 132), 1000.0 * 100 / (132 * 128 * 128)), "ragged edge tiles");
  // M = 384 with a 2x1 cluster: 3 M tiles rounded up to 4 CTAs.
  expect(near(wave_efficiency(kFakeSm90, 384, 128, 132), 384.0 * 128 / (132 * 128 * 128)), "cluster rounding");
  expect(near(wave_efficiency(kFakeSm90, 384, 128, 4), 384.0 * 128 / (4 * 128 * 128)), "one full wave on 4 SMs");
  // An odd SM count: slots are whole clusters (131 SMs hold 65 clusters of 2).
  expect(near(wave_efficiency(kFakeSm90, 4096, 8192, 131), 4096.0 * 8192 / (16 * 130 * 128 * 128)), "whole clusters");
  expect(wave_efficiency(kFakeSm90, 0, 8192, 132) == 0.0, "empty problem");

  // Small problems take the smaller tile (8 tiles of 128 rows leave most SMs idle), a GPU they
  // fill keeps the first (default) kernel, and a large problem keeps it too.
  Selection s = choose(kB, 128, 1024, 1024);
  expect(name_of(s) == "fake_sm90_64" && s.rule == Rule::kHeuristic && s.why.empty(), "small problem: 64-row tile",
         name_of(s));
  expect(name_of(choose(kB, 128, 1024, 1024, nullptr, 4)) == "fake_sm90", "4 SMs: the default tile fills them");
  expect(name_of(choose(kB, 8192, 4096, 4096)) == "fake_sm90", "large problem: the default tile");
  // Within the margin the earlier kernel stays: M = 11008, N = 16384 is 0.993 vs 0.999.
  expect(wave_efficiency(kFakeSm90Small, 11008, 16384, 132) > wave_efficiency(kFakeSm90, 11008, 16384, 132),
         "the 64-row tile is (slightly) more wave-efficient at 11008 x 16384");
  expect(name_of(choose(kB, 16384, 11008, 4096)) == "fake_sm90", "a tie within kHeuristicMargin keeps the default");
  // 4096 x 640: 160 tiles of 128 rows (2 waves, 0.61) against 320 of 64 rows (3 waves, 0.81).
  expect(name_of(choose(kB, 640, 4096, 4096)) == "fake_sm90_64", "a clear wave-efficiency gain wins");

  // FastAccum is never the heuristic's pick, even first in the registry and more efficient.
  s = choose(kE4, 8192, 4096, 4096);
  expect(name_of(s) == "fake_e4m3" && s.rule == Rule::kHeuristic, "FastAccum skipped by the heuristic", name_of(s));
}

static void test_knob_rules() {
  GemmKnobs k{};
  expect(check_knobs(k, true, 2) == nullptr && check_knobs(k, false, 0) == nullptr, "zero knobs are always taken");
  k = {kRasterAlongN, 8, 4};
  expect(check_knobs(k, true, 2) == nullptr, "along N, swizzle 8, promotion 4 on a promoting kernel");
  k = {3, 0, 0};
  expect(contains(check_knobs(k, true, 0), "raster must be"), "raster 3 rejected");
  k = {0, 3, 0};
  expect(contains(check_knobs(k, true, 0), "swizzle must be"), "swizzle 3 rejected");
  k = {0, 16, 0};
  expect(check_knobs(k, true, 0) != nullptr, "swizzle 16 rejected");
  k = {0, 0, 4};
  expect(contains(check_knobs(k, true, 0), "does not promote"), "promotion on a kernel that does not promote");
  k = {0, 0, 6};
  expect(contains(check_knobs(k, true, 4), "positive multiple"), "promotion 6 with step 4 rejected");
  k = {0, 0, -4};
  expect(check_knobs(k, true, 4) != nullptr, "negative promotion rejected");
  k = {kRasterAlongM, 0, 0};
  expect(contains(check_knobs(k, false, 0), "no persistent tile scheduler"), "knobs on an SM80 kernel rejected");

  // args_for: the entry's knobs fill in where the arguments have none; the caller's win.
  SparseGemmKernel tuned = kFakePromoted;
  tuned.knobs = {kRasterAlongM, 2, 8};
  SparseLinearArgs a{};
  a.bias = &a;
  SparseLinearArgs b = args_for(tuned, a);
  expect(b.knobs.raster == kRasterAlongM && b.knobs.swizzle == 2 && b.knobs.promotion == 8 && b.bias == &a,
         "args_for applies the entry's knobs");
  a.knobs.swizzle = 4;
  expect(args_for(tuned, a).knobs.swizzle == 4, "the caller's knob wins");
  expect(args_for(kFakeSm80, a).bias == nullptr, "no bias for a kernel that does not fuse it");
}

static std::string table_text(const std::string& fingerprint, const std::string& rows,
                              const std::string& device = "Made-up GPU 9000", int sm_count = 132) {
  return "# made up\ns_ste_gemm_table 1\ndevice " + device + "\nsm_count " + std::to_string(sm_count) +
         "\nfingerprint " + fingerprint + "\nnote anything\n" + rows;
}

static void test_table_parsing() {
  const std::string fp = build_fingerprint();
  expect(fp.size() == 16 && fp.find_first_not_of("0123456789abcdef") == std::string::npos, "fingerprint: 16 hex", fp);
  expect(fp == build_fingerprint(), "fingerprint is deterministic");

  TuningTable t = parse_table(
      table_text(fp, "row bfloat16 bfloat16 4096 4096 4096 8193 32768 fake_sm90_64 along_n 4 0 123.4 fake_sm90\n"
                     "weight fake_sm90_64 1.25\n"),
      "good.txt");
  expect(t.status.empty(), "a good table parses", t.status);
  expect(t.device == "Made-up GPU 9000" && t.sm_count == 132 && t.fingerprint == fp, "header fields");
  expect(t.rows.size() == 1 && t.rows[0].line == 7 && t.rows[0].m == 4096 && t.rows[0].n_lo == 8193 &&
             t.rows[0].knobs.raster == kRasterAlongN && t.rows[0].knobs.swizzle == 4,
         "row fields");
  expect(t.weights.size() == 1 && near(t.weights[0].second, 1.25), "weights");

  struct Bad {
    std::string text;
    const char* why;
  };
  const Bad bad[] = {
      {"s_ste_gemm_table 2\n", "good.txt:1: unsupported table version"},
      {"hello\n", "good.txt:1: not a GEMM tuning table"},
      {"", "empty table"},
      {"s_ste_gemm_table 1\ndevice X\nfingerprint " + fp + "\n", "incomplete header"},
      {table_text(fp, "row bfloat16 bfloat16 4096 4096\n"), "good.txt:7: a row needs"},
      {table_text(fp, "row bfloat16 int8 4096 4096 4096 1 2 k heuristic 0 0\n"), "good.txt:7: unknown dtype"},
      {table_text(fp, "row bfloat16 bfloat16 4096 4096 4096 9 2 k heuristic 0 0\n"), "ranges ordered"},
      {table_text(fp, "row bfloat16 bfloat16 4096 4096 4096 1 2 k diagonal 0 0\n"), "raster must be"},
      {table_text(fp, "row bfloat16 bfloat16 4096 4096 4096 1 2 k heuristic x 0\n"), "must be integers"},
      {table_text("12345", ""), "fingerprint must be 16 hex digits"},
  };
  for (const Bad& b : bad) {
    const TuningTable bt = parse_table(b.text, "good.txt");
    expect(contains(bt.status, b.why) && bt.rows.empty(), "malformed table rejected", bt.status + " / " + b.why);
  }
}

static void test_table_selection() {
  const std::string fp = build_fingerprint();
  const std::string rows =
      "row bfloat16 bfloat16 4096 4096 4096 8193 32768 fake_sm90_64 along_n 4 0\n"
      "row bfloat16 bfloat16 4096 4096 4096 1 131072 fake_sm90 heuristic 0 0\n"        // shadowed above 8192
      "row float8_e4m3fn float8_e4m3fn 4096 4096 4096 1 131072 fake_e4m3_fast along_m 2 0\n"
      "row bfloat16 bfloat16 2048 2048 2048 1 131072 fake_sm90 heuristic 0 4\n"        // knob the kernel refuses
      "row bfloat16 bfloat16 1024 1024 1024 1 131072 fake_sm80 heuristic 0 0\n";       // another family
  std::vector<TuningTable> tables;
  tables.push_back(parse_table(table_text(fp, rows), "gpu9000.txt"));
  tables.push_back(parse_table(table_text("0000000000000000", rows, "Other GPU"), "other.txt"));
  install_tables(std::move(tables));
  expect(installed_tables().size() == 2 && installed_tables()[0]->status.empty(), "installed",
         installed_tables().empty() ? "" : installed_tables()[0]->status);
  expect(contains(installed_tables()[1]->status, "another build"), "a table of another build is marked",
         installed_tables()[1]->status);

  // The row's kernel with the row's knobs; the rule says so, the entry keeps the kernel's name.
  Selection s = choose(kB, 16384, 4096, 4096, "Made-up GPU 9000");
  expect(name_of(s) == "fake_sm90_64" && s.rule == Rule::kTable && s.table == "gpu9000.txt:7", "table row chosen",
         name_of(s) + " " + rule_name(s.rule) + " " + s.table);
  expect(s.kernel && s.kernel->knobs.raster == kRasterAlongN && s.kernel->knobs.swizzle == 4, "row knobs in the entry");
  expect(s.kernel && args_for(*s.kernel, SparseLinearArgs{}).knobs.swizzle == 4, "args_for carries the row's knobs");
  // Range bounds: N = 8192 is below the first row's range, so the second row.
  s = choose(kB, 8192, 4096, 4096, "Made-up GPU 9000");
  expect(name_of(s) == "fake_sm90" && s.rule == Rule::kTable && s.table == "gpu9000.txt:8", "N range bounds", s.table);
  // No row for this K: the heuristic, saying why.
  s = choose(kB, 16384, 4096, 8192, "Made-up GPU 9000");
  expect(s.rule == Rule::kHeuristic && contains(s.why, "no row of gpu9000.txt"), "no row: heuristic", s.why);
  // A FastAccum kernel from a table row (the only way it is chosen).
  s = choose(kE4, 16384, 4096, 4096, "Made-up GPU 9000");
  expect(name_of(s) == "fake_e4m3_fast" && s.rule == Rule::kTable && s.kernel->knobs.raster == kRasterAlongM,
         "FastAccum through its table row", name_of(s));
  // A row whose knobs the kernel refuses, and a row of another family: the heuristic, with why.
  s = choose(kB, 4096, 2048, 2048, "Made-up GPU 9000");
  expect(s.rule == Rule::kHeuristic && name_of(s) == "fake_sm90" && contains(s.why, "gpu9000.txt:10") &&
             contains(s.why, "does not promote"),
         "row refused by can_implement", s.why);
  s = choose(kB, 4096, 1024, 1024, "Made-up GPU 9000");
  expect(s.rule == Rule::kHeuristic && contains(s.why, "does not take this problem"), "row of another family", s.why);

  // Another device name: no table, no reason (tables of other GPUs are normal).
  s = choose(kB, 16384, 4096, 4096, "NVIDIA H200");
  expect(s.rule == Rule::kHeuristic && s.why.empty(), "other device: heuristic", s.why);
  // No name at all (host-only, no device): no table.
  expect(choose(kB, 16384, 4096, 4096).rule == Rule::kHeuristic, "no device name: heuristic");
  // The same device with another SM count, and a table of another build: ignored with the reason.
  s = choose(kB, 16384, 4096, 4096, "Made-up GPU 9000", 114);
  expect(s.rule == Rule::kHeuristic && contains(s.why, "measured on 132 SMs"), "SM count mismatch", s.why);
  s = choose(kB, 16384, 4096, 4096, "Other GPU");
  expect(s.rule == Rule::kHeuristic && contains(s.why, "fingerprint") && name_of(s) == "fake_sm90",
         "fingerprint mismatch: the heuristic", s.why);

  // With a device index, its name picks the table; the row's kernel must also pass its image
  // check on that device. (Devices 4-6 are fresh in image_status's cache.)
  g_device_names[4] = g_device_names[5] = "Made-up GPU 9000";
  s = choose(kB, 16384, 4096, 4096, nullptr, 132, 4);
  expect(s.rule == Rule::kTable && name_of(s) == "fake_sm90_64", "device 4's name picks the table", name_of(s));
  expect(choose(kB, 16384, 4096, 4096, nullptr, 132, 6).rule == Rule::kHeuristic, "a device without a name: heuristic");
  g_small_image = {cudaErrorNoKernelImageForDevice, 0, 0};
  s = choose(kB, 16384, 4096, 4096, nullptr, 132, 5);
  expect(s.rule == Rule::kHeuristic && name_of(s) == "fake_sm90" && contains(s.why, "does not take this problem"),
         "table row whose kernel has no image: the heuristic", name_of(s) + " / " + s.why);
  g_small_image = {cudaSuccess, 90, 90};

  // A table naming a kernel this build lacks is refused as a whole.
  std::vector<TuningTable> unknown;
  unknown.push_back(parse_table(table_text(fp, "row bfloat16 bfloat16 1 1 1 1 1 no_such_kernel heuristic 0 0\n"), "u.txt"));
  install_tables(std::move(unknown));
  expect(contains(installed_tables()[0]->status, "u.txt:7: no kernel named no_such_kernel"), "unknown kernel",
         installed_tables()[0]->status);
  s = choose(kB, 1, 1, 1, "Made-up GPU 9000");
  expect(s.rule == Rule::kHeuristic && contains(s.why, "no_such_kernel"), "refused table: heuristic with why", s.why);
  install_tables({});
  expect(installed_tables().empty(), "uninstalled");
}

int main() {
  test_architecture_and_images();
  test_wave_efficiency_heuristic();
  test_knob_rules();
  test_table_parsing();
  test_table_selection();
  if (failures == 0) std::printf("test_gemm_select: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
