"""The package's shape: subpackages import only downwards, and no function runs long."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr_init"
# Lowest first: a module may import from its own level and the levels before it.
LEVELS = [
    {"errors", "io", "config", "environment", "progress", "plots", "cuda_graphs", "folders", "kaldi_io", "records"},
    {"corpora"},
    {"features"},
    {"models"},
    {"training"},
    {"evaluation"},
    {"reporting"},
    {"bench", "cli"},
]
MAX_LINES = 60


def _level(part: str) -> int:
    return next(i for i, names in enumerate(LEVELS) if part in names)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        yield path, path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_imports_only_go_downwards():
    upward = []
    for path, part in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asr_init."):
                target = node.module.split(".")[1]
                if _level(target) > _level(part):
                    upward.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {node.module}")
    assert not upward, "\n".join(upward)


def test_no_function_over_60_lines():
    """Every function, from its first decorator or `def` to its last line: signature,
    docstring and body."""
    long = []
    for path, _ in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)
