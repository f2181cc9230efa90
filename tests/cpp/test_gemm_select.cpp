// Host-only test of csrc/gemm/select.cpp with a made-up registry: the architecture rules
// (no GEMM on compute capability 10.x / 12.x, SM90 kernels on 9.x only), image_verdict on
// images a wrong-architecture build produces, and image_status's per-device cache.
#include <cstdio>
#include <cstring>
#include <string>

#include "sparse_gemm.h"

namespace s_ste::gemm {
namespace {

// The image each fake kernel reports, and how often it was asked.
KernelImage g_sm90_image{cudaSuccess, 90, 90};
KernelImage g_sm80_image{cudaSuccess, 90, 90};
int g_sm90_queries = 0;

Status accept(const SparseLinearArgs&) { return nullptr; }
size_t no_workspace(const SparseLinearArgs&) { return 0; }
Status no_run(const SparseLinearArgs&) { return "not run in this test"; }
KernelImage sm90_image() { ++g_sm90_queries; return g_sm90_image; }
KernelImage sm80_image() { return g_sm80_image; }

const SparseGemmKernel kFakeSm90{"fake_sm90", 90, true, Element::kBF16, Element::kBF16, Element::kBF16, true, false,
                                 128, 128, 128, &accept, &no_workspace, &no_run, &sm90_image};
const SparseGemmKernel kFakeSm80{"fake_sm80", 80, false, Element::kBF16, Element::kBF16, Element::kBF16, false, true,
                                 128, 128, 64, &accept, &no_workspace, &no_run, &sm80_image};
}  // namespace

const SparseGemmKernel* const* kernels(int* count) {
  static const SparseGemmKernel* const all[] = {&kFakeSm90, &kFakeSm80};
  *count = 2;
  return all;
}

}  // namespace s_ste::gemm

using namespace s_ste::gemm;

static int failures = 0;

static void expect(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::printf("FAIL: %s %s\n", what, detail.c_str());
    ++failures;
  }
}

static const char* select(bool sm90, int sm_major, std::string* why, int device = -1) {
  SparseLinearArgs args{};
  args.N = args.M = args.K = 4096;
  const SparseGemmKernel* k = select_kernel(args, sm90, Element::kBF16, Element::kBF16, sm_major, 132, why, device);
  return k ? k->name : nullptr;
}

static bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int main() {
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
  g_sm90_image = {cudaSuccess, 80, 90};
  why.clear();
  expect(select(true, 9, &why, 0) == nullptr && contains(why, "fake_sm90: its image is not sm_90a code"),
         "wrong-architecture image falls back", why);
  g_sm90_image = {cudaSuccess, 90, 90};
  why.clear();
  expect(select(true, 9, &why, 0) == nullptr, "verdict cached per kernel and device");
  expect(g_sm90_queries == 1, "one image query per kernel and device", std::to_string(g_sm90_queries));
  expect(select(true, 9, &why, 1) == std::string("fake_sm90"), "another device is checked on its own");
  expect(g_sm90_queries == 2, "device 1 queried once", std::to_string(g_sm90_queries));
  // An error that says nothing about the image (e.g. a sticky context error) is not cached.
  g_sm90_image = {cudaErrorLaunchFailure, 0, 0};
  expect(select(true, 9, &why, 2) == nullptr, "query error: fall back");
  g_sm90_image = {cudaSuccess, 90, 90};
  expect(select(true, 9, &why, 2) == std::string("fake_sm90"), "query error not cached");

  if (failures == 0) std::printf("test_gemm_select: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
