// s_ste_cuda.check_args(op, *args): the fake kernels' entry to the argument checks of
// op_checks.cpp, so that meta tensors and torch.compile's FakeTensors raise exactly the
// errors the real kernels raise. The arguments are all of the op's schema, in its order:
// tensors as specs (dtype, device string, contiguous, sizes with None for a symbolic size),
// absent optional tensors as None. Raises TypeError / ValueError as the dispatcher does for
// the real op. Also s_ste_cuda.check_same_device, for the layer's own custom ops.
#include "op_checks_py.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/Dtype.h>

#include <cstring>
#include <optional>
#include <string>

#include "op_checks.h"

namespace s_ste {
namespace {

struct BadSpec {};  // a Python error is set

ArgSpec parse_spec(PyObject* o, const char* what) {
  PyObject *dtype, *device, *contiguous, *sizes;
  if (!PyTuple_Check(o) || !PyArg_ParseTuple(o, "OOOO", &dtype, &device, &contiguous, &sizes) ||
      !THPDtype_Check(dtype) || !PyUnicode_Check(device) || !PyTuple_Check(sizes)) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "check_args: %s must be a (dtype, device, contiguous, sizes) spec", what);
    throw BadSpec{};
  }
  ArgSpec s{reinterpret_cast<THPDtype*>(dtype)->scalar_type, c10::Device(PyUnicode_AsUTF8(device)),
            PyObject_IsTrue(contiguous) == 1, {}};
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sizes); ++i) {
    PyObject* d = PyTuple_GET_ITEM(sizes, i);
    s.sizes.push_back(d == Py_None ? ArgSpec::kUnknownSize : PyLong_AsLongLong(d));
    if (PyErr_Occurred()) throw BadSpec{};
  }
  return s;
}

std::optional<ArgSpec> parse_optional_spec(PyObject* o, const char* what) {
  if (o == Py_None) return std::nullopt;
  return parse_spec(o, what);
}

c10::ScalarType parse_dtype(PyObject* o, const char* what) {
  if (!THPDtype_Check(o)) {
    PyErr_Format(PyExc_TypeError, "check_args: %s must be a torch.dtype", what);
    throw BadSpec{};
  }
  return reinterpret_cast<THPDtype*>(o)->scalar_type;
}

std::optional<c10::ScalarType> parse_optional_dtype(PyObject* o, const char* what) {
  if (o == Py_None) return std::nullopt;
  return parse_dtype(o, what);
}

std::string_view parse_str(PyObject* o, const char* what) {
  const char* s = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : nullptr;
  if (s == nullptr) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "check_args: %s must be a str", what);
    throw BadSpec{};
  }
  return s;
}

bool parse_bool(PyObject* o, const char* what) {
  if (!PyBool_Check(o)) {
    PyErr_Format(PyExc_TypeError, "check_args: %s must be a bool", what);
    throw BadSpec{};
  }
  return o == Py_True;
}

// One row per op: the op's checks on its arguments, in the order of its schema (all of
// them, defaults filled in by the caller; the count comes from the registered schema).
using Args = PyObject* const*;
struct OpChecks {
  const char* op;
  void (*check)(const char* op, Args a);
};

void group_w(const char* op, Args a) { check_group_input(op, "w", parse_spec(a[0], "w")); }
void prune_and_compress(const char* op, Args a) {
  check_prune_and_compress_args(op, parse_spec(a[0], "w"), parse_spec(a[1], "scale"), parse_str(a[2], "layout"),
                                parse_optional_dtype(a[3], "out_dtype"));
}
void compressed(const char* op, Args a) {
  check_compressed_args(op, parse_spec(a[0], "values"), parse_spec(a[1], "meta"), parse_str(a[2], "layout"));
}

constexpr OpChecks kOpChecks[] = {
    {"soft_threshold_24", group_w},
    {"hard_threshold_24", group_w},
    {"scale_factor", group_w},
    {"prune_and_compress", prune_and_compress},
    {"prune_and_compress_dense", prune_and_compress},  // + hard: no rule
    {"decompress", compressed},                        // + validate: the codes are data, checked at run time
    {"validate_compressed", compressed},
    {"mvue_24", [](const char* op, Args a) { check_group_input(op, "g", parse_spec(a[0], "g")); }},
    {"quantize_fp8", [](const char* op, Args a) { check_quantize_args(parse_spec(a[0], "x"), parse_dtype(a[1], "dtype")); }},
    {"quantize_fp8_scaled",
     [](const char* op, Args a) {
       check_quantize_scaled_args(parse_spec(a[0], "x"), parse_spec(a[1], "scale"), parse_dtype(a[2], "dtype"),
                                  parse_bool(a[3], "transpose"));
     }},
    {"mvue_24_t_compress",
     [](const char* op, Args a) {  // seed and offset: int64, checked by the dispatcher
       check_mvue_compress_args(parse_spec(a[0], "g"), parse_str(a[3], "layout"), parse_optional_dtype(a[4], "out_dtype"),
                                parse_optional_spec(a[5], "scale"));
     }},
    {"sparse_linear",
     [](const char* op, Args a) {
       check_sparse_linear_args(parse_spec(a[0], "x"), parse_spec(a[1], "values"), parse_spec(a[2], "meta"),
                                parse_optional_spec(a[3], "bias"), parse_str(a[4], "layout"),
                                parse_optional_spec(a[5], "alpha"), parse_bool(a[6], "out_transposed"));
     }},
};

// The number of arguments of s_ste::<op>'s registered schema.
Py_ssize_t schema_arity(const char* op) {
  const auto handle = c10::Dispatcher::singleton().findSchema({std::string("s_ste::") + op, ""});
  TORCH_CHECK(handle.has_value(), "check_args: s_ste::", op, " is not registered");
  return Py_ssize_t(handle->schema().arguments().size());
}

// Runs the checks of `op` on its arguments; a wrong count or kind of argument raises TypeError.
void run_checks(const char* op, Args a, Py_ssize_t n) {
  for (const OpChecks& row : kOpChecks) {
    if (std::strcmp(op, row.op) != 0) continue;
    const Py_ssize_t arity = schema_arity(op);
    if (n != arity) {
      PyErr_Format(PyExc_TypeError, "check_args: %s takes %zd arguments (its schema's), got %zd", op, arity, n);
      throw BadSpec{};
    }
    row.check(op, a);
    return;
  }
  PyErr_Format(PyExc_KeyError, "check_args: no checks for op '%s'", op);
  throw BadSpec{};
}

PyObject* raise(PyObject* type, const char* what) {
  PyErr_SetString(type, what);
  return nullptr;
}

// Runs `checks`, turning a failed check into the Python exception the dispatcher raises for
// the real op (TypeError / ValueError / RuntimeError); None when all pass.
template <typename Checks>
PyObject* raising_as_the_op(Checks&& checks) {
  try {
    checks();
  } catch (const BadSpec&) {
    return nullptr;  // the Python error is set
  } catch (const c10::TypeError& e) {
    return raise(PyExc_TypeError, e.what_without_backtrace());
  } catch (const c10::ValueError& e) {
    return raise(PyExc_ValueError, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    return raise(PyExc_RuntimeError, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return raise(PyExc_RuntimeError, e.what());
  }
  Py_RETURN_NONE;
}

}  // namespace

PyObject* check_args(PyObject*, PyObject* args) {
  const Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "check_args(op: str, *args)");
    return nullptr;
  }
  const char* op = PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0));
  return raising_as_the_op([&] { run_checks(op, &PyTuple_GET_ITEM(args, 1), n - 1); });
}

PyObject* check_same_device_py(PyObject*, PyObject* args) {
  const char *op, *name, *device, *ref_name, *ref_device;
  if (!PyArg_ParseTuple(args, "sssss", &op, &name, &device, &ref_name, &ref_device)) return nullptr;
  return raising_as_the_op([&] { check_same_device(op, name, c10::Device(device), ref_name, c10::Device(ref_device)); });
}

}  // namespace s_ste
