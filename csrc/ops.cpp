// The op schemas of the s_ste namespace (defined once here; each backend registers its
// kernels beside them: csrc/cpu/, csrc/cuda/, composite_ops.cpp), and the Python module
// s_ste_cuda, whose import loads the registrations.
#include <Python.h>
#include <torch/library.h>

#include "s_ste/layout_sm90.cuh"

TORCH_LIBRARY(s_ste, m) {
  // The fake (meta) kernels are registered in Python: point torch at them.
  m.set_python_module("s_ste.ops");
  m.def("soft_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("hard_threshold_24(Tensor w) -> (Tensor pruned, Tensor mask)");
  m.def("scale_factor(Tensor w) -> Tensor");
  m.def(
      "prune_and_compress(Tensor w, Tensor scale, str layout=\"sm80\", ScalarType? out_dtype=None)"
      " -> (Tensor values, Tensor meta)");
  m.def("decompress(Tensor values, Tensor meta, str layout=\"sm80\") -> Tensor");
  m.def("mvue_24(Tensor g, int seed, int offset=0) -> Tensor");
  m.def("quantize_fp8(Tensor x, ScalarType dtype) -> (Tensor q, Tensor scale_inv)");
  m.def(
      "sparse_linear(Tensor x, Tensor values, Tensor meta, Tensor? bias=None, str layout=\"sm80\")"
      " -> Tensor");
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

PyMethodDef methods[] = {
    {"sm90_meta_bytes", sm90_meta_bytes, METH_VARARGS, "bytes of SM90 metadata for (rows, K, elem_bits)"},
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "whether the CUDA kernels were compiled in"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "s_ste_cuda",
                          "s-ste kernels; the ops live under torch.ops.s_ste", -1, methods};
}  // namespace

PyMODINIT_FUNC PyInit_s_ste_cuda(void) { return PyModule_Create(&module_def); }
