// s_ste_cuda.check_args(op, *args): the fake kernels' entry to the argument checks of
// arg_checks.cpp, so that meta tensors and torch.compile's FakeTensors raise exactly the
// errors the real kernels raise. Tensor arguments arrive as specs
// (dtype, device string, contiguous, sizes with None for a symbolic size), absent optional
// tensors as None. Raises TypeError / ValueError as the dispatcher does for the real op.
#include "check_args_py.h"

#include <torch/csrc/Dtype.h>

#include <cstring>
#include <optional>
#include <string>

#include "arg_checks.h"

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

// Runs the checks of `op` on the parsed arguments; arity errors raise TypeError.
void run_checks(const char* op, PyObject* const* a, Py_ssize_t n) {
  auto need = [&](Py_ssize_t k) {
    if (n != k) {
      PyErr_Format(PyExc_TypeError, "check_args: %s takes %zd arguments, got %zd", op, k, n);
      throw BadSpec{};
    }
  };
  if (!std::strcmp(op, "soft_threshold_24") || !std::strcmp(op, "hard_threshold_24") ||
      !std::strcmp(op, "scale_factor")) {
    need(1);
    check_group_op_args(op, "w", parse_spec(a[0], "w"));
  } else if (!std::strcmp(op, "mvue_24")) {
    need(1);
    check_group_op_args(op, "g", parse_spec(a[0], "g"));
  } else if (!std::strcmp(op, "prune_and_compress")) {
    need(4);
    check_prune_and_compress_args(parse_spec(a[0], "w"), parse_spec(a[1], "scale"), parse_str(a[2], "layout"),
                                  parse_optional_dtype(a[3], "out_dtype"));
  } else if (!std::strcmp(op, "decompress") || !std::strcmp(op, "validate_compressed")) {
    need(3);
    check_compressed_args(op, parse_spec(a[0], "values"), parse_spec(a[1], "meta"), parse_str(a[2], "layout"));
  } else if (!std::strcmp(op, "mvue_24_t_compress")) {
    need(4);
    check_mvue_compress_args(parse_spec(a[0], "g"), parse_str(a[1], "layout"), parse_optional_dtype(a[2], "out_dtype"),
                             parse_optional_spec(a[3], "scale"));
  } else if (!std::strcmp(op, "quantize_fp8")) {
    need(2);
    check_quantize_args(parse_spec(a[0], "x"), parse_dtype(a[1], "dtype"));
  } else if (!std::strcmp(op, "quantize_fp8_scaled")) {
    need(4);
    check_quantize_scaled_args(parse_spec(a[0], "x"), parse_spec(a[1], "scale"), parse_dtype(a[2], "dtype"),
                               PyObject_IsTrue(a[3]) == 1);
  } else if (!std::strcmp(op, "sparse_linear")) {
    need(6);
    check_sparse_linear_args(parse_spec(a[0], "x"), parse_spec(a[1], "values"), parse_spec(a[2], "meta"),
                             parse_optional_spec(a[3], "bias"), parse_str(a[4], "layout"),
                             parse_optional_spec(a[5], "alpha"));
  } else {
    PyErr_Format(PyExc_KeyError, "check_args: no checks for op '%s'", op);
    throw BadSpec{};
  }
}

}  // namespace

PyObject* check_args(PyObject*, PyObject* args) {
  const Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "check_args(op: str, *args)");
    return nullptr;
  }
  const char* op = PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0));
  try {
    run_checks(op, &PyTuple_GET_ITEM(args, 1), n - 1);
  } catch (const BadSpec&) {
    return nullptr;
  } catch (const c10::TypeError& e) {
    PyErr_SetString(PyExc_TypeError, e.what_without_backtrace());
    return nullptr;
  } catch (const c10::ValueError& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    return nullptr;
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

}  // namespace s_ste
