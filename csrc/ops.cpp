// The op schemas of the s_ste namespace (defined once here; each backend registers its
// kernels beside them: csrc/cpu/, csrc/cuda/, composite_ops.cpp), and the Python module
// s_ste_cuda, whose import loads the registrations.
#include <Python.h>
#include <torch/library.h>

#include "check_args_py.h"
#include "s_ste/layout_sm90.cuh"

#include <cstring>

#ifdef S_STE_WITH_CUDA
#include "cuda/gemm_tuning_py.h"
#include "gemm/sparse_gemm.h"
#endif

TORCH_LIBRARY(s_ste, m) {
  // The fake (meta) kernels are registered in Python: point torch at them.
  m.set_python_module("s_ste.ops");
  m.def("soft_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("hard_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("scale_factor(Tensor w) -> Tensor");
  m.def(
      "prune_and_compress(Tensor w, Tensor scale, str layout=\"sm80\", ScalarType? out_dtype=None)"
      " -> (Tensor values, Tensor meta)");
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
      " Tensor? alpha=None) -> Tensor");
}

namespace {
// sm90_meta_bytes(rows, K, elem_bits): size of the SM90 metadata buffer, for the fake
// kernels (one formula, in layout_sm90.cuh).
PyObject* sm90_meta_bytes(PyObject*, PyObject* args) {
  long long rows, K;
  int bits;
  if (!PyArg_ParseTuple(args, "LLi", &rows, &K, &bits)) return nullptr;
  return PyLong_FromLongLong(s_ste::sm90::meta_bytes(rows, K, bits));
}

PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef S_STE_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

#ifdef S_STE_WITH_CUDA
// gemm_kernels(): the CUTLASS sparse GEMMs compiled in, as tuples
// (name, sm, layout, a, b, out, has_bias, out_is_transposed, tile_m, tile_n, tile_k).
PyObject* gemm_kernels(PyObject*, PyObject*) {
  int count = 0;
  const s_ste::gemm::SparseGemmKernel* const* all = s_ste::gemm::kernels(&count);
  PyObject* list = PyList_New(count);
  for (int i = 0; i < count; ++i) {
    const auto* k = all[i];
    PyList_SET_ITEM(list, i,
                    Py_BuildValue("(sissssOOiii)", k->name, k->sm, k->sm90_layout ? "sm90" : "sm80",
                                  s_ste::gemm::element_name(k->a), s_ste::gemm::element_name(k->b),
                                  s_ste::gemm::element_name(k->out),
                                  k->has_bias ? Py_True : Py_False, k->out_is_transposed ? Py_True : Py_False,
                                  k->tile_m, k->tile_n, k->tile_k));
  }
  return list;
}

PyObject* last_sparse_linear_kernel(PyObject*, PyObject*) {
  const char* name = s_ste::gemm::last_kernel();
  if (name == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(name);
}
#endif

PyMethodDef methods[] = {
#ifdef S_STE_WITH_CUDA
    {"last_sparse_linear_kernel", last_sparse_linear_kernel, METH_NOARGS,
     "the GEMM the latest CUDA sparse_linear ran ('fallback': decompress + dense), or None"},
    {"gemm_kernels", gemm_kernels, METH_NOARGS, "the CUTLASS sparse GEMMs compiled in"},
#endif
    {"check_args", s_ste::check_args, METH_VARARGS,
     "check_args(op, *specs): the real kernels' argument checks, for the fake kernels"},
    {"sm90_meta_bytes", sm90_meta_bytes, METH_VARARGS, "bytes of SM90 metadata for (rows, K, elem_bits)"},
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "whether the CUDA kernels were compiled in"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "s_ste_cuda",
                          "s-ste kernels; the ops live under torch.ops.s_ste", -1, methods};
}  // namespace

PyMODINIT_FUNC PyInit_s_ste_cuda(void) {
  PyObject* module = PyModule_Create(&module_def);
#ifdef S_STE_WITH_CUDA
  // gemm_select, gemm_can_implement and the tuning entries (csrc/cuda/gemm_tuning_py.cpp).
  if (module != nullptr && PyModule_AddFunctions(module, s_ste::gemm_tuning_methods()) < 0) Py_CLEAR(module);
#endif
  return module;
}
