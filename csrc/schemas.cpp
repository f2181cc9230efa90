// The op schemas of the s_ste namespace, defined once here: the one TORCH_LIBRARY. Each
// backend registers its kernels beside them (csrc/cpu/, csrc/cuda/, scale_factor.cpp); the
// fake kernels and autograd formulas are in s_ste/ops.py; the Python module is module.cpp.
#include <torch/library.h>

TORCH_LIBRARY(s_ste, m) {
  // The fake (meta) kernels are registered in Python: point torch at them.
  m.set_python_module("s_ste.ops");
  m.def("soft_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("hard_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("scale_factor(Tensor w) -> Tensor");
  m.def(
      "prune_and_compress(Tensor w, Tensor scale, str layout=\"sm80\", ScalarType? out_dtype=None)"
      " -> (Tensor values, Tensor meta)");
  // prune_and_compress's values and meta, plus the dense ŵ [rows, K] they encode (the bytes
  // decompress would write), in the same pass. hard: top-2 magnitudes instead of the soft
  // threshold (the STE recipes), the bytes of compressing hard_threshold_24(w).
  m.def(
      "prune_and_compress_dense(Tensor w, Tensor scale, str layout=\"sm80\", ScalarType? out_dtype=None,"
      " bool hard=False) -> (Tensor values, Tensor meta, Tensor dense)");
  // validate: reject metadata no compressor writes (an illegal 2:4 code, non-zero SM90 padding).
  // Free on the CPU; on CUDA it reads one count back (a host sync), so the layer's own
  // decompress of a weight it just compressed passes validate=False.
  m.def("decompress(Tensor values, Tensor meta, str layout=\"sm80\", bool validate=True) -> Tensor");
  m.def("validate_compressed(Tensor values, Tensor meta, str layout=\"sm80\") -> ()");
  m.def("mvue_24(Tensor g, int seed, int offset=0) -> Tensor");
  m.def("quantize_fp8(Tensor x, ScalarType dtype) -> (Tensor q, Tensor scale_inv)");
  m.def(
      "quantize_fp8_scaled(Tensor x, Tensor scale, ScalarType dtype, bool transpose=False)"
      " -> (Tensor q, Tensor q_t, Tensor amax)");
  m.def(
      "mvue_24_t_compress(Tensor g, int seed, int offset=0, str layout=\"sm90\", ScalarType? out_dtype=None,"
      " Tensor? scale=None) -> (Tensor values, Tensor meta, Tensor amax)");
  m.def(
      "sparse_linear(Tensor x, Tensor values, Tensor meta, Tensor? bias=None, str layout=\"sm80\","
      " Tensor? alpha=None, bool out_transposed=False) -> Tensor");
}
