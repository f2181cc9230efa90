"""The layers of docs/architecture.md, checked on the source (no build needed).

Python: every s_ste/*.py is parsed with ast, imports inside functions included: no import cycle;
only ops.py touches the extension; the oracle imports only torch and the standard library; the
fast path, the semantic path, the weight cache and the FP8 state never import the layer; the only
function-local imports are of the optional packages. C++: the schemas are defined in one file,
every backend registration registers functions of its own file, and the CUTLASS / math-header
cores include no torch header. And the names the redesign retired appear nowhere.
Each failure names the file and line.
"""
from __future__ import annotations

import ast
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "s_ste")
MODULES = sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py"))
OPTIONAL_PACKAGES = {"transformers", "safetensors"}  # imported where used, so `import s_ste` needs neither
NEVER_IMPORT_THE_LAYER = ("weight_cache", "fast", "semantic", "fp8_scaling")


class Import:
    """One import statement: the s_ste modules it loads, the top-level package otherwise."""

    def __init__(self, module: str, node: ast.AST, local: bool, targets: list[str], external: list[str]):
        self.module, self.line, self.local, self.targets, self.external = module, node.lineno, local, targets, external

    def where(self) -> str:
        return f"s_ste/{self.module}.py:{self.line}"


def _targets(module: str, node: ast.AST) -> tuple[list[str], list[str]]:
    """(s_ste modules, external top-level packages) an Import / ImportFrom node loads."""
    internal, external = [], []
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "s_ste":
                internal.append(parts[1] if len(parts) > 1 else "__init__")
            else:
                external.append(parts[0])
        return internal, external
    assert isinstance(node, ast.ImportFrom)
    if node.level == 0 and (node.module or "").split(".")[0] != "s_ste":
        return [], [node.module.split(".")[0]]
    if node.level > 1:
        raise AssertionError(f"s_ste/{module}.py:{node.lineno}: an import from above the package")
    path = (node.module or "").split(".")
    path = path[1:] if node.level == 0 else path  # "s_ste.x" / ".x" -> ["x"]; "s_ste" / "." -> []
    path = [p for p in path if p]
    if path:
        internal.append(path[0])
    else:  # from . import a, b: the submodules named, else the package itself
        for alias in node.names:
            internal.append(alias.name if alias.name in MODULES else "__init__")
    return internal, external


def imports(module: str) -> list[Import]:
    path = os.path.join(PACKAGE, module + ".py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom) and child.module == "__future__":
                    continue
                internal, external = _targets(module, child)
                found.append(Import(module, child, local, internal, external))
            visit(child, inner)

    visit(tree, False)
    return found


ALL_IMPORTS = {m: imports(m) for m in MODULES}


def test_no_import_cycle():
    """Depth-first search over every import (function-level ones too: they are the ones that hide a cycle)."""
    edges = {m: [(t, imp) for imp in found for t in imp.targets if t in ALL_IMPORTS and t != "__init__"]
             for m, found in ALL_IMPORTS.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[tuple[str, Import]] = []
    cycles: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        for target, imp in edges[m]:
            stack.append((target, imp))
            if state.get(target) == 1:
                start = next(i for i, (_, e) in enumerate(stack) if e.module == target)
                cycles.append(" -> ".join(f"{e.module} ({e.where()})" for _, e in stack[start:]) + f" -> {target}")
            elif target not in state:
                dfs(target)
            stack.pop()
        state[m] = 2

    for m in MODULES:
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles in s_ste/:\n  " + "\n  ".join(cycles)


def _extension_uses(module: str) -> list[str]:
    """Lines of `module` that import s_ste_cuda, name it, or reach torch.ops.s_ste."""
    path = os.path.join(PACKAGE, module + ".py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    hits = [f"s_ste/{module}.py:{imp.line}: imports s_ste_cuda" for imp in ALL_IMPORTS[module]
            if "s_ste_cuda" in imp.external]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "s_ste_cuda":
            hits.append(f"s_ste/{module}.py:{node.lineno}: uses s_ste_cuda")
        if (isinstance(node, ast.Attribute) and node.attr == "s_ste" and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ops" and isinstance(node.value.value, ast.Name) and node.value.value.id == "torch"):
            hits.append(f"s_ste/{module}.py:{node.lineno}: uses torch.ops.s_ste")
    return list(dict.fromkeys(hits))  # one line per use


def test_only_ops_touches_the_extension():
    hits = [h for m in MODULES if m != "ops" for h in _extension_uses(m)]
    assert not hits, "s_ste_cuda / torch.ops.s_ste outside s_ste/ops.py:\n  " + "\n  ".join(hits)
    assert _extension_uses("ops"), "s_ste/ops.py no longer loads the extension: update this test"


def test_reference_imports_only_torch_and_the_standard_library():
    bad = [f"{imp.where()}: imports {', '.join(imp.targets + [e for e in imp.external if e != 'torch'])}"
           for imp in ALL_IMPORTS["reference"]
           if imp.targets or any(e != "torch" and e not in sys.stdlib_module_names for e in imp.external)]
    assert not bad, "the oracle must not use the code under test or other packages:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("module", NEVER_IMPORT_THE_LAYER)
def test_lower_layers_never_import_the_layer(module):
    """The weight cache takes tensors, never the module (redesign §5.6: else a cycle with nn returns)."""
    assert module in MODULES, f"s_ste/{module}.py does not exist (the target tree of docs/architecture.md)"
    bad = [imp.where() for imp in ALL_IMPORTS[module] if "nn" in imp.targets]
    assert not bad, f"s_ste/{module}.py imports s_ste.nn at " + ", ".join(bad)


def test_the_only_function_local_imports_are_of_optional_packages():
    bad = [f"{imp.where()}: imports {', '.join(imp.targets + imp.external)}" for found in ALL_IMPORTS.values()
           for imp in found if imp.local and (imp.targets or not set(imp.external) <= OPTIONAL_PACKAGES)]
    assert not bad, ("imports inside functions (move them to the top of the file; only "
                     f"{sorted(OPTIONAL_PACKAGES)} may be imported where used):\n  " + "\n  ".join(bad))


# ---- C++ --------------------------------------------------------------------------------------
CSRC = os.path.join(ROOT, "csrc")
CPP_SUFFIXES = (".cpp", ".cu", ".h", ".cuh", ".hpp")
_CODE = re.compile(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', re.S)


def code_of(path: str) -> str:
    """The file with its comments blanked (strings kept; newlines kept, so line numbers hold)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return _CODE.sub(lambda m: m.group(0) if m.group(0).startswith('"') else re.sub(r"[^\n]", " ", m.group(0)), text)


def cpp_files(*under: str) -> list[str]:
    found = []
    for base in under:
        for dirpath, _, files in os.walk(os.path.join(CSRC, base)):
            found += [os.path.join(dirpath, f) for f in files if f.endswith(CPP_SUFFIXES)]
    return sorted(found)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_the_schemas_are_defined_in_one_file():
    hits = [(rel(p), line_of(code, m.start())) for p in cpp_files("") for code in [code_of(p)]
            for m in re.finditer(r"\bTORCH_LIBRARY\s*\(", code)]
    where = ", ".join(f"{f}:{n}" for f, n in hits) or "nowhere"
    assert [f for f, _ in hits] == ["csrc/schemas.cpp"], f"TORCH_LIBRARY( must appear once, in csrc/schemas.cpp; found at: {where}"


_IMPL_BLOCK = re.compile(r"\bTORCH_LIBRARY_IMPL\s*\(\s*s_ste\s*,\s*(\w+)\s*,\s*(\w+)\s*\)\s*\{")
_IMPL = re.compile(r'\.impl\s*\(\s*"([^"]+)"\s*,\s*(?:TORCH_FN\s*\(\s*)?&?\s*([\w:]+)')


def _block_end(code: str, start: int) -> int:
    depth = 0
    for i in range(start, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return i
    return len(code)


def test_every_backend_registration_registers_functions_of_its_own_file():
    bad, blocks = [], 0
    for path in cpp_files(""):
        code = code_of(path)
        for block in _IMPL_BLOCK.finditer(code):
            blocks += 1
            end = _block_end(code, block.end() - 1)
            outside = code[:block.start()] + code[end:]
            for impl in _IMPL.finditer(code, block.end(), end):
                name = impl.group(2).split("::")[-1]
                definition = re.compile(rf"\b{re.escape(name)}\s*\([^;{{}}]*\)\s*(?:const\s*)?(?:noexcept\s*)?"
                                        rf"(?:->[^{{;]*)?\{{")
                if not definition.search(outside):
                    bad.append(f"{rel(path)}:{line_of(code, impl.start())}: registers {impl.group(1)!r} as {name}, "
                               "which this file does not define")
    assert blocks, "no TORCH_LIBRARY_IMPL found under csrc/: update this test"
    assert not bad, "a registration must sit beside its kernel:\n  " + "\n  ".join(bad)


def test_the_cuda_cores_include_no_torch_header():
    bad = [f"{rel(p)}:{line_of(code, m.start())}: {m.group(0).strip()}" for p in cpp_files("include", "gemm")
           for code in [code_of(p)] for m in re.finditer(r'^\s*#\s*include\s*[<"](?:torch|ATen|c10)/[^>"]*[>"]', code, re.M)]
    assert cpp_files("include", "gemm"), "csrc/include and csrc/gemm hold no sources: update this test"
    assert not bad, "csrc/include and csrc/gemm stay torch-free (a CUTLASS unit with torch headers compiles ~6x slower):\n  " + (
        "\n  ".join(bad))


# The retired names (redesign §5.5 check 7), spelled in pieces so that this file does not match
# the reviewer's grep itself. `\bchecks\.h` so that op_checks.h, a target name, is not one of them.
RETIRED = [r"autograd\.py", "op_" + "autograd", "composite" + "_ops", r"\bchecks" + r"\.h", "check_args" + "_py",
           "device" + "_support", "third" + "_party"]
SEARCHED = ["README.md", "csrc", "s_ste", "tests", "bench", ".ci", "setup.py", "CMakeLists.txt"]


def _text_files(path: str):
    if os.path.isfile(path):
        yield path
        return
    for dirpath, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            yield os.path.join(dirpath, f)


def test_the_retired_names_appear_nowhere():
    pattern = re.compile("|".join(RETIRED))
    bad = []
    for top in SEARCHED:
        for path in _text_files(os.path.join(ROOT, top)):
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (UnicodeDecodeError, OSError):
                continue  # binary files (a built module, a .pyc) are not the source
            bad += [f"{rel(path)}:{i}: {m.group(0)}" for i, line in enumerate(lines, 1) for m in [pattern.search(line)] if m]
    assert not bad, f"{len(bad)} mentions of retired names (files moved or renamed by the redesign):\n  " + "\n  ".join(bad)
