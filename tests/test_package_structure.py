"""The layout the architecture page describes: public names in public modules, metrics
independent of the losses."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import lightly_temperature

PACKAGE = Path(lightly_temperature.__file__).parent
PUBLIC_PACKAGES = ["", ".losses", ".metrics", ".callbacks", ".models", ".study"]


def test_every_exported_class_and_function_is_defined_in_a_public_module():
    private = []
    for suffix in PUBLIC_PACKAGES:
        package = importlib.import_module("lightly_temperature" + suffix)
        for name in package.__all__:
            value = getattr(package, name)
            module = getattr(value, "__module__", None)
            if not isinstance(value, type) and not callable(value):
                continue  # constants and submodules
            if module is None or not module.startswith("lightly_temperature"):
                continue  # re-exported from Lightly (std_of_l2_normalized)
            if any(part.startswith("_") for part in module.split(".")):
                private.append(f"{package.__name__}.{name} from {module}")
    assert not private, private


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                found.add(".".join([*parts, node.module or ""]).rstrip("."))
            else:
                found.add(node.module or "")
    return found


def test_metrics_and_the_functional_core_do_not_import_the_losses():
    files = [*sorted((PACKAGE / "metrics").glob("*.py")), PACKAGE / "functional.py"]
    files += [PACKAGE / "kernels.py", PACKAGE / "similarity_batch.py"]
    offending = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in _imported_modules(path) if m.startswith("lightly_temperature.losses")
        )
        for path in files
    }
    assert not {k: v for k, v in offending.items() if v}
    # The check itself sees imports: the losses do import the kernels.
    assert "lightly_temperature.kernels" in _imported_modules(PACKAGE / "losses" / "reduction.py")
