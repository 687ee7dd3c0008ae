"""The package's shape: subpackages import only downwards, and no function runs long."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr_init"
# Lowest first: a module may import from its own level and the levels before it.
LEVELS = [
    {"errors", "io", "config", "environment", "progress", "plots", "cuda_graphs"},
    {"corpora"},
    {"features"},
    {"models"},
    {"training"},
    {"evaluation"},
    {"reporting"},
    {"bench", "cli"},
]
MAX_BODY_LINES = 60


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


def test_no_function_body_over_60_lines():
    """Bodies from the first statement to the last: a Typer command's option list is its
    signature, not its logic."""
    long = []
    for path, _ in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(node.body) > 1:
                    first = node.body[1]  # the docstring is not logic either
                lines = node.end_lineno - first.lineno + 1
                if lines > MAX_BODY_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)
