"""
The structure rules that import-linter cannot state, checked on the source:

- a package's private modules (C{_name}) are imported only from inside that
  package; other packages import what its C{__init__} re-exports;
- no function over 60 lines of code, no class over 350, no module over 600
  (docstrings, comments and blank lines do not count).

Usage: C{python scripts/check_structure.py [PACKAGE_DIR]}; prints one line per
violation and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

MAX_FUNCTION = 60
MAX_CLASS = 350
MAX_MODULE = 600


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(tree: ast.Module, package: str) -> Iterator[tuple[int, str]]:
    """
    Every module an import statement names, absolute, with its line.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def private_owner(target: str) -> str | None:
    """
    The package whose private module C{target} is (or is inside), if any.
    """
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def code_lines(source: str) -> set[int]:
    """
    The lines that hold code: not blank, not comments, not docstrings.
    """
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.difference_update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def check_file(root: Path, path: Path) -> Iterator[str]:
    source = path.read_text()
    tree = ast.parse(source)
    name = module_name(root, path)
    package = package_of(name, path)
    where = path.relative_to(root.parent)
    reported: set[tuple[int, str]] = set()
    for line, target in imported_modules(tree, package):
        owner = private_owner(target)
        if owner is None or not owner.startswith(root.name) or package == owner or package.startswith(owner + "."):
            continue
        if (line, owner) not in reported:
            reported.add((line, owner))
            yield f"{where}:{line}: imports {target}, private to {owner}"
    lines = code_lines(source)
    if len(lines) > MAX_MODULE:
        yield f"{where}: module has {len(lines)} lines of code (at most {MAX_MODULE})"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            size = len([n for n in lines if node.lineno <= n <= (node.end_lineno or node.lineno)])
            if size > limit:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield f"{where}:{node.lineno}: {kind} {node.name} has {size} lines of code (at most {limit})"


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "acme_appliance").resolve()
    problems = [p for path in sorted(root.rglob("*.py")) for p in check_file(root, path)]
    for problem in problems:
        print(problem)
    print(f"check_structure: {len(problems)} problem(s) in {root.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
