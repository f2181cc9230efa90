// The op schemas of the s_ste namespace (defined once here; each backend registers its
// kernels beside them: csrc/cpu/, csrc/cuda/, composite_ops.cpp), and the Python module
// s_ste_cuda, whose import loads the registrations.
#include <Python.h>
#include <torch/library.h>

#include "check_args_py.h"
#include "layout_rules.h"
#include "s_ste/layout_sm90.cuh"

#include <cstring>
#include <utility>

#ifdef S_STE_WITH_CUDA
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

namespace {
// sm90_meta_bytes(rows, K, elem_bits): size of the SM90 metadata buffer, for the fake
// kernels (one formula, in layout_sm90.cuh).
PyObject* sm90_meta_bytes(PyObject*, PyObject* args) {
  long long rows, K;
  int bits;
  if (!PyArg_ParseTuple(args, "LLi", &rows, &K, &bits)) return nullptr;
  return PyLong_FromLongLong(s_ste::sm90::meta_bytes(rows, K, bits));
}

// layout_rules(): {layout: {rule: value}}, the table of layout_rules.cpp; per-width rules
// are {value bits: alignment} for the widths the layout holds.
PyObject* layout_rules(PyObject*, PyObject*) {
  PyObject* table = PyDict_New();
  auto set = [](PyObject* d, const char* key, PyObject* v) {
    PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
  };
  auto per_bits = [](int align16, int align8) {
    PyObject* d = PyDict_New();
    for (auto [bits, align] : {std::pair{16, align16}, std::pair{8, align8}}) {
      if (align == 0) continue;
      PyObject *k = PyLong_FromLong(bits), *v = PyLong_FromLong(align);
      PyDict_SetItem(d, k, v);
      Py_DECREF(k);
      Py_DECREF(v);
    }
    return d;
  };
  for (const s_ste::LayoutRules& r : s_ste::all_layout_rules()) {
    PyObject* row = PyDict_New();
    set(row, "row_align", PyLong_FromLong(r.row_align));
    set(row, "k_align", per_bits(r.k_align16, r.k_align8));
    set(row, "gemm_row_align", PyLong_FromLong(r.gemm_row_align));
    set(row, "gemm_k_align", per_bits(r.gemm_k_align16, r.gemm_k_align8));
    set(row, "gemm_token_align", PyLong_FromLong(r.gemm_token_align));
    set(row, "wgrad_token_pad", PyLong_FromLong(r.wgrad_token_pad));
    set(row, "meta_dtype", PyUnicode_FromString(r.meta_dtype == c10::kShort ? "int16" : "uint8"));
    set(table, r.name, row);
  }
  return table;
}

// meta_shape(layout, rows, K, elem_bits): the shape of the metadata the kernels allocate
// for a compressed [rows, K] operand, for the fake kernels.
PyObject* meta_shape(PyObject*, PyObject* args) {
  const char* layout;
  long long rows, K;
  int bits;
  if (!PyArg_ParseTuple(args, "sLLi", &layout, &rows, &K, &bits)) return nullptr;
  const auto lay = std::strcmp(layout, "sm80") == 0 ? s_ste::Layout::kSm80 : s_ste::Layout::kSm90;
  const auto shape = s_ste::meta_shape(lay, rows, K, bits == 8 ? c10::kByte : c10::kHalf);
  PyObject* out = PyTuple_New(Py_ssize_t(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) PyTuple_SET_ITEM(out, Py_ssize_t(i), PyLong_FromLongLong(shape[i]));
  return out;
}

PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef S_STE_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

#ifdef S_STE_WITH_CUDA
const char* element_name(s_ste::gemm::Element e) {
  switch (e) {
    case s_ste::gemm::Element::kBF16: return "bfloat16";
    case s_ste::gemm::Element::kF16: return "float16";
    case s_ste::gemm::Element::kE4M3: return "float8_e4m3fn";
    case s_ste::gemm::Element::kE5M2: return "float8_e5m2";
  }
  return "?";
}

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
                                  element_name(k->a), element_name(k->b), element_name(k->out),
                                  k->has_bias ? Py_True : Py_False, k->out_is_transposed ? Py_True : Py_False,
                                  k->tile_m, k->tile_n, k->tile_k));
  }
  return list;
}

// Host-only arguments for a problem (no GPU needed): dummy pointers with the alignment real
// tensors have.
s_ste::gemm::SparseLinearArgs dummy_args(long long N, long long M, long long K, bool bias) {
  s_ste::gemm::SparseLinearArgs a{};
  a.N = N, a.M = M, a.K = K;
  a.x = reinterpret_cast<const void*>(0x10000);
  a.values = reinterpret_cast<const void*>(0x20000);
  a.meta = reinterpret_cast<const void*>(0x30000);
  a.bias = bias ? reinterpret_cast<const void*>(0x40000) : nullptr;
  a.out = reinterpret_cast<void*>(0x50000);
  return a;
}

bool parse_element(const char* name, s_ste::gemm::Element* out) {
  for (auto e : {s_ste::gemm::Element::kBF16, s_ste::gemm::Element::kF16, s_ste::gemm::Element::kE4M3,
                 s_ste::gemm::Element::kE5M2}) {
    if (std::strcmp(name, element_name(e)) == 0) {
      *out = e;
      return true;
    }
  }
  PyErr_Format(PyExc_ValueError, "gemm_select: unknown dtype '%s' (bfloat16, float16, float8_e4m3fn, float8_e5m2)",
               name);
  return false;
}

// gemm_select(layout, values_dtype, sm_major, N, M, K, bias[, x_dtype[, sm_count]]) ->
// (kernel name or None, reasons): what sparse_linear would run on a GPU of that compute
// capability and SM count (default 132, an H100 SXM). x_dtype defaults to values_dtype
// (float8_e4m3fn for FP8 values).
PyObject* gemm_select(PyObject*, PyObject* args) {
  const char *layout, *a_name, *b_name = nullptr;
  int sm_major, bias, sm_count = 132;
  long long N, M, K;
  if (!PyArg_ParseTuple(args, "ssiLLLp|zi", &layout, &a_name, &sm_major, &N, &M, &K, &bias, &b_name, &sm_count))
    return nullptr;
  s_ste::gemm::Element a, b;
  if (!parse_element(a_name, &a)) return nullptr;
  if (b_name == nullptr) b = a == s_ste::gemm::Element::kE5M2 ? s_ste::gemm::Element::kE4M3 : a;
  else if (!parse_element(b_name, &b)) return nullptr;
  std::string why;
  const auto* k = s_ste::gemm::select_kernel(dummy_args(N, M, K, bias), std::strcmp(layout, "sm90") == 0, a, b,
                                             sm_major, sm_count, &why);
  if (k) return Py_BuildValue("(ss)", k->name, "");
  return Py_BuildValue("(Os)", Py_None, why.c_str());
}

// gemm_can_implement(name, N, M, K, bias): None if that kernel takes the problem, else why.
PyObject* gemm_can_implement(PyObject*, PyObject* args) {
  const char* name;
  long long N, M, K;
  int bias;
  if (!PyArg_ParseTuple(args, "sLLLp", &name, &N, &M, &K, &bias)) return nullptr;
  int count = 0;
  const s_ste::gemm::SparseGemmKernel* const* all = s_ste::gemm::kernels(&count);
  for (int i = 0; i < count; ++i) {
    if (std::strcmp(all[i]->name, name) != 0) continue;
    const s_ste::gemm::Status s = all[i]->can_implement(dummy_args(N, M, K, bias));
    if (s == nullptr) Py_RETURN_NONE;
    return PyUnicode_FromString(s);
  }
  PyErr_Format(PyExc_KeyError, "no GEMM kernel named %s", name);
  return nullptr;
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
    {"gemm_can_implement", gemm_can_implement, METH_VARARGS, "None if a GEMM takes (N, M, K, bias), else why"},
    {"gemm_select", gemm_select, METH_VARARGS, "the kernel sparse_linear picks for a problem, or (None, why)"},
#endif
    {"check_args", s_ste::check_args, METH_VARARGS,
     "check_args(op, *specs): the real kernels' argument checks, for the fake kernels"},
    {"check_same_device", s_ste::check_same_device_py, METH_VARARGS,
     "check_same_device(op, name, device, ref_name, ref_device): the checks' error when the devices differ"},
    {"layout_rules", layout_rules, METH_NOARGS, "the alignment rules of the layouts and their GEMMs"},
    {"meta_shape", meta_shape, METH_VARARGS, "shape of the metadata for (layout, rows, K, elem_bits)"},
    {"sm90_meta_bytes", sm90_meta_bytes, METH_VARARGS, "bytes of SM90 metadata for (rows, K, elem_bits)"},
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "whether the CUDA kernels were compiled in"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "s_ste_cuda",
                          "s-ste kernels; the ops live under torch.ops.s_ste", -1, methods};
}  // namespace

PyMODINIT_FUNC PyInit_s_ste_cuda(void) { return PyModule_Create(&module_def); }
