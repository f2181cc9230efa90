// Python entries of the GEMM selection and tuning (csrc/gemm/select.cpp, tuning_table.h):
//   gemm_select(layout, values_dtype, sm_major, N, M, K, bias, x_dtype=None, sm_count=132,
//               device_name=None, detail=False)
//       what sparse_linear runs for a problem on a GPU of that compute capability, SM count and
//       name: (kernel name or None, reasons), or with detail=True a dict
//       {kernel, rule ('table' / 'heuristic' / 'fallback'), why, table, raster, swizzle, promotion}.
//       device_name None: the current CUDA device's name, as sparse_linear sees it ('' if there
//       is none); '' never matches a table.
//   gemm_can_implement(name, N, M, K, bias, raster='heuristic', swizzle=0, promotion=0)
//       None if that kernel takes the problem with those knobs, else why (host only).
//   gemm_kernel_info()       every kernel of the build as a dict (tiles, cluster, accumulation,
//                            knobs it takes, stages, shared memory).
//   gemm_fingerprint()       the build's kernel fingerprint (a table must carry it).
//   gemm_install_tables(tables)  replaces the installed tuning tables by `tables`, a list of
//                            (source, text); returns gemm_tables().
//   gemm_tables()            the installed tables: dicts {source, device, sm_count, fingerprint,
//                            rows, status} (status None = usable).
//   gemm_run(name, x, values, meta, bias=None, alpha=None, raster='heuristic', swizzle=0, promotion=0)
//       runs that kernel (SM90 layout) with those knobs on CUDA tensors, as sparse_linear would,
//       and returns y [N, M]; ValueError with can_implement's reason if it does not take them.
#include "gemm_tuning_py.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "../gemm/sparse_gemm.h"
#include "../gemm/tuning_table.h"
#include "../plans.h"
#include "gemm_args.h"

namespace s_ste {
namespace {

namespace gemm = s_ste::gemm;

// Host-only arguments for a problem (no GPU needed): dummy pointers with the alignment real
// tensors have.
gemm::SparseLinearArgs host_args(long long N, long long M, long long K, bool bias, const gemm::GemmKnobs& knobs) {
  gemm::SparseLinearArgs a{};
  a.N = N, a.M = M, a.K = K;
  a.x = reinterpret_cast<const void*>(0x10000);
  a.values = reinterpret_cast<const void*>(0x20000);
  a.meta = reinterpret_cast<const void*>(0x30000);
  a.bias = bias ? reinterpret_cast<const void*>(0x40000) : nullptr;
  a.out = reinterpret_cast<void*>(0x50000);
  a.knobs = knobs;
  return a;
}

bool element_arg(const char* name, gemm::Element* out) {
  if (gemm::parse_element(name, out)) return true;
  PyErr_Format(PyExc_ValueError, "gemm_select: unknown dtype '%s' (bfloat16, float16, float8_e4m3fn, float8_e5m2)",
               name);
  return false;
}

bool knobs_arg(const char* raster, int swizzle, int promotion, gemm::GemmKnobs* out) {
  out->swizzle = swizzle;
  out->promotion = promotion;
  if (gemm::parse_raster(raster, &out->raster)) return true;
  PyErr_Format(PyExc_ValueError, "unknown raster '%s' (heuristic, along_m, along_n)", raster);
  return false;
}

const gemm::SparseGemmKernel* kernel_named(const char* name) {
  int count = 0;
  const gemm::SparseGemmKernel* const* all = gemm::kernels(&count);
  for (int i = 0; i < count; ++i)
    if (std::strcmp(all[i]->name, name) == 0) return all[i];
  PyErr_Format(PyExc_KeyError, "no GEMM kernel named %s", name);
  return nullptr;
}

// The current CUDA device's name ("" without one): what sparse_linear's selection reads.
const char* current_device_name() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return gemm::device_name(device);
}

PyObject* gemm_select(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"layout", "values_dtype", "sm_major", "N", "M", "K", "bias", "x_dtype",
                                   "sm_count", "device_name", "detail", nullptr};
  const char *layout, *a_name, *b_name = nullptr, *device = nullptr;
  int sm_major, bias, sm_count = 132, detail = 0;
  long long N, M, K;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssiLLLp|zizp", const_cast<char**>(keywords), &layout, &a_name,
                                   &sm_major, &N, &M, &K, &bias, &b_name, &sm_count, &device, &detail))
    return nullptr;
  gemm::Element a, b;
  if (!element_arg(a_name, &a)) return nullptr;
  if (b_name == nullptr) b = a == gemm::Element::kE5M2 ? gemm::Element::kE4M3 : a;
  else if (!element_arg(b_name, &b)) return nullptr;
  gemm::SelectQuery q{};
  q.args = host_args(N, M, K, bias, gemm::GemmKnobs{});
  q.sm90_layout = std::strcmp(layout, "sm90") == 0;
  q.a = a, q.b = b;
  q.sm_major = sm_major;
  q.sm_count = sm_count;
  q.device_name = device ? device : current_device_name();
  const gemm::Selection s = gemm::choose_kernel(q);
  if (!detail) {
    if (s.kernel) return Py_BuildValue("(ss)", s.kernel->name, "");
    return Py_BuildValue("(Os)", Py_None, s.why.c_str());
  }
  const gemm::GemmKnobs knobs = s.kernel ? gemm::args_for(*s.kernel, q.args).knobs : gemm::GemmKnobs{};
  return Py_BuildValue("{s:z,s:s,s:s,s:z,s:s,s:i,s:i}", "kernel", s.kernel ? s.kernel->name : nullptr, "rule",
                       gemm::rule_name(s.rule), "why", s.why.c_str(), "table",
                       s.table.empty() ? nullptr : s.table.c_str(), "raster", gemm::raster_name(knobs.raster),
                       "swizzle", knobs.swizzle, "promotion", knobs.promotion);
}

PyObject* gemm_can_implement(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "N", "M", "K", "bias", "raster", "swizzle", "promotion", nullptr};
  const char *name, *raster = "heuristic";
  long long N, M, K;
  int bias, swizzle = 0, promotion = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sLLLp|sii", const_cast<char**>(keywords), &name, &N, &M, &K, &bias,
                                   &raster, &swizzle, &promotion))
    return nullptr;
  const gemm::SparseGemmKernel* k = kernel_named(name);
  gemm::GemmKnobs knobs{};
  if (k == nullptr || !knobs_arg(raster, swizzle, promotion, &knobs)) return nullptr;
  const gemm::Status s = k->can_implement(host_args(N, M, K, bias, knobs));
  if (s == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(s);
}

const char* accumulation_name(gemm::Accumulation a) {
  switch (a) {
    case gemm::Accumulation::kF32: return "f32";
    case gemm::Accumulation::kFp8Promoted: return "fp8_promoted";
    case gemm::Accumulation::kFp8FastAccum: return "fp8_fastaccum";
  }
  return "?";
}

PyObject* gemm_kernel_info(PyObject*, PyObject*) {
  int count = 0;
  const gemm::SparseGemmKernel* const* all = gemm::kernels(&count);
  PyObject* list = PyList_New(count);
  for (int i = 0; i < count; ++i) {
    const gemm::SparseGemmKernel* k = all[i];
    PyObject* d = Py_BuildValue(
        "{s:s,s:i,s:s,s:s,s:s,s:s,s:O,s:O,s:(iii),s:(ii),s:s,s:O,s:i,s:i,s:i}", "name", k->name, "sm", k->sm, "layout",
        k->sm90_layout ? "sm90" : "sm80", "a", gemm::element_name(k->a), "b", gemm::element_name(k->b), "out",
        gemm::element_name(k->out), "has_bias", k->has_bias ? Py_True : Py_False, "out_is_transposed",
        k->out_is_transposed ? Py_True : Py_False, "tile", k->tile_m, k->tile_n, k->tile_k, "cluster", k->cluster_m,
        k->cluster_n, "accumulation", accumulation_name(k->accumulation), "scheduler_knobs",
        k->scheduler_knobs ? Py_True : Py_False, "promotion_step", k->promotion_step, "stages", k->stages,
        "smem_bytes", k->smem_bytes);
    if (d == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, i, d);
  }
  return list;
}

PyObject* gemm_fingerprint(PyObject*, PyObject*) { return PyUnicode_FromString(gemm::build_fingerprint().c_str()); }

PyObject* gemm_tables(PyObject*, PyObject*) {
  const std::vector<const gemm::TuningTable*> tables = gemm::installed_tables();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(tables.size()));
  for (size_t i = 0; i < tables.size(); ++i) {
    const gemm::TuningTable& t = *tables[i];
    PyObject* d = Py_BuildValue("{s:s,s:s,s:i,s:s,s:n,s:z}", "source", t.source.c_str(), "device", t.device.c_str(),
                                "sm_count", t.sm_count, "fingerprint", t.fingerprint.c_str(), "rows",
                                static_cast<Py_ssize_t>(t.rows.size()), "status",
                                t.status.empty() ? nullptr : t.status.c_str());
    if (d == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), d);
  }
  return list;
}

PyObject* gemm_install_tables(PyObject* self, PyObject* args) {
  PyObject* seq;
  if (!PyArg_ParseTuple(args, "O", &seq)) return nullptr;
  PyObject* fast = PySequence_Fast(seq, "gemm_install_tables: expected a list of (source, text)");
  if (fast == nullptr) return nullptr;
  std::vector<gemm::TuningTable> tables;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); ++i) {
    const char* source;
    PyObject* text_obj;
    Py_ssize_t text_len = 0;
    const char* text = nullptr;
    if (PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "sU", &source, &text_obj))
      text = PyUnicode_AsUTF8AndSize(text_obj, &text_len);
    if (text == nullptr) {
      Py_DECREF(fast);
      return nullptr;
    }
    tables.push_back(gemm::parse_table(std::string_view(text, static_cast<size_t>(text_len)), source));
  }
  Py_DECREF(fast);
  gemm::install_tables(std::move(tables));
  return gemm_tables(self, nullptr);
}

at::Tensor tensor_arg(PyObject* o, const char* what) {
  TORCH_CHECK_TYPE(THPVariable_Check(o), "gemm_run: ", what, " must be a Tensor");
  return THPVariable_Unpack(o);
}

std::optional<at::Tensor> optional_tensor_arg(PyObject* o, const char* what) {
  if (o == Py_None) return std::nullopt;
  return tensor_arg(o, what);
}

// The torch dtype name of a tensor ("bfloat16" for torch.bfloat16), as Python spells it.
std::string dtype_name(PyObject* tensor) {
  PyObject* dtype = PyObject_GetAttrString(tensor, "dtype");
  PyObject* text = dtype ? PyObject_Str(dtype) : nullptr;
  std::string name = text ? PyUnicode_AsUTF8(text) : "";
  Py_XDECREF(text);
  Py_XDECREF(dtype);
  PyErr_Clear();
  const std::string prefix = "torch.";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

PyObject* gemm_run(PyObject*, PyObject* args, PyObject* kwargs) {
  HANDLE_TH_ERRORS
  static const char* keywords[] = {"name", "x", "values", "meta", "bias", "alpha", "raster", "swizzle", "promotion",
                                   nullptr};
  const char *name, *raster = "heuristic";
  PyObject *x_obj, *values_obj, *meta_obj, *bias_obj = Py_None, *alpha_obj = Py_None;
  int swizzle = 0, promotion = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sOOO|OOsii", const_cast<char**>(keywords), &name, &x_obj,
                                   &values_obj, &meta_obj, &bias_obj, &alpha_obj, &raster, &swizzle, &promotion))
    return nullptr;
  const gemm::SparseGemmKernel* k = kernel_named(name);
  gemm::GemmKnobs knobs{};
  if (k == nullptr || !knobs_arg(raster, swizzle, promotion, &knobs)) return nullptr;
  if (!k->sm90_layout || k->out_is_transposed || !k->has_bias) {
    PyErr_Format(PyExc_ValueError, "gemm_run runs SM90-layout kernels (y written directly, bias fused); %s is not one",
                 name);
    return nullptr;
  }
  const at::Tensor x = tensor_arg(x_obj, "x"), values = tensor_arg(values_obj, "values"), meta = tensor_arg(meta_obj, "meta");
  const std::optional<at::Tensor> bias = optional_tensor_arg(bias_obj, "bias"),
                                  alpha = optional_tensor_arg(alpha_obj, "alpha");
  TORCH_CHECK_VALUE(values.is_cuda(), "gemm_run: the operands must be CUDA tensors");
  const SparseLinearPlan p = plan_sparse_linear(x, values, meta, bias, "sm90", alpha, /*out_transposed=*/false);
  // The plan checked the operands against each other; the kernel's own dtypes are checked here,
  // by torch's dtype names (element_name's spelling).
  const std::string va = dtype_name(values_obj), xb = dtype_name(x_obj);
  TORCH_CHECK_VALUE(va == gemm::element_name(k->a) && xb == gemm::element_name(k->b), "gemm_run: ", name, " multiplies ",
                    gemm::element_name(k->a), " values by ", gemm::element_name(k->b), " x, not ", va, " by ", xb);
  const c10::cuda::CUDAGuard guard(values.device());
  at::Tensor out = at::empty({p.T, p.N}, values.options().dtype(p.out_dtype));
  if (p.T == 0) return THPVariable_Wrap(out.view(p.y_sizes));
  gemm::SparseLinearArgs a = gemm_args(p, values, meta, bias, alpha, out);
  a.knobs = knobs;
  gemm::Status s = nullptr;
  if ((s = k->can_implement(a))) {
    PyErr_Format(PyExc_ValueError, "gemm_run: %s does not take this problem: %s", name, s);
    return nullptr;
  }
  at::Tensor workspace;
  if (const size_t bytes = k->workspace_bytes(a)) {
    workspace = at::empty({static_cast<int64_t>(bytes)}, values.options().dtype(at::kByte));
    a.workspace = workspace.data_ptr();
  }
  if ((s = k->run(a))) {
    PyErr_Format(PyExc_RuntimeError, "gemm_run: %s failed: %s", name, s);
    return nullptr;
  }
  return THPVariable_Wrap(out.view(p.y_sizes));
  END_HANDLE_TH_ERRORS
}

PyMethodDef g_methods[] = {
    {"gemm_select", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gemm_select)),
     METH_VARARGS | METH_KEYWORDS,
     "gemm_select(layout, values_dtype, sm_major, N, M, K, bias, x_dtype=None, sm_count=132, device_name=None, "
     "detail=False): the kernel sparse_linear picks for a problem, or (None, why); detail=True: a dict with the rule"},
    {"gemm_can_implement", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gemm_can_implement)),
     METH_VARARGS | METH_KEYWORDS,
     "gemm_can_implement(name, N, M, K, bias, raster='heuristic', swizzle=0, promotion=0): None if the GEMM takes "
     "the problem with those knobs, else why"},
    {"gemm_kernel_info", gemm_kernel_info, METH_NOARGS, "every CUTLASS sparse GEMM of the build, as dicts"},
    {"gemm_fingerprint", gemm_fingerprint, METH_NOARGS, "the fingerprint of the build's GEMM kernels (tuning tables)"},
    {"gemm_install_tables", gemm_install_tables, METH_VARARGS,
     "gemm_install_tables([(source, text), ...]): replace the installed GEMM tuning tables; returns gemm_tables()"},
    {"gemm_tables", gemm_tables, METH_NOARGS, "the installed GEMM tuning tables and their status"},
    {"gemm_run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gemm_run)), METH_VARARGS | METH_KEYWORDS,
     "gemm_run(name, x, values, meta, bias=None, alpha=None, raster='heuristic', swizzle=0, promotion=0): y from "
     "that SM90 kernel with those knobs"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyMethodDef* gemm_tuning_methods() { return g_methods; }

}  // namespace s_ste
