"""The library never depends on its test-video writers: nothing under ``coldstream.io`` imports
``coldstream.testing``."""

import ast
from pathlib import Path

import coldstream.io


def _imported_modules(path: Path, package: str) -> list[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against ``package``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(package.split(".")[: len(package.split(".")) - (node.level - 1)])
                base = f"{parent}.{base}" if base else parent
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def test_io_never_imports_the_testing_module():
    root = Path(coldstream.io.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 10  # the walk found the package
    offenders = []
    for f in files:
        package = ".".join(["coldstream", "io", *f.relative_to(root).parent.parts])
        mods = _imported_modules(f, package)
        assert mods, f  # every io module imports something: the parse worked
        offenders += [f"{f.name}: {m}" for m in mods if (m + ".").startswith("coldstream.testing.")]
    assert not offenders


def test_the_checker_sees_relative_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from ..testing import CODECS\nfrom .. import testing\nimport coldstream.testing as t\n")
    assert _imported_modules(f, "coldstream.io").count("coldstream.testing") == 3
