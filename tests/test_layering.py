"""The module-level independence contract (tests/import_contracts.py), on a package made here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.import_contracts import module_level_import_lines

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))

CONFIG = """\
[tool.importlinter]
root_packages = ["pkg"]
contract_types = [
    "module_level_independence: tests.import_contracts.ModuleLevelIndependenceContract",
]

[[tool.importlinter.contracts]]
name = "Screens do not import each other at module level"
type = "module_level_independence"
modules = ["pkg.screens.*"]
helpers = ["pkg.screens.base"]
"""


def test_module_level_lines_leave_out_function_bodies_and_type_checking_blocks() -> None:
    source = textwrap.dedent(
        """\
        import os
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import typing_only
        else:
            import at_runtime
        try:
            import in_try
        except ImportError:
            pass
        class Holder:
            import in_class_body
        def later():
            import in_function
        async def later_too():
            from x import (
                y,
            )
        from several import (
            a,
            b,
        )
        """
    )
    lines = module_level_import_lines(source)
    text = source.splitlines()
    found = {text[n - 1].strip() for n in lines}
    assert found == {
        "import os",
        "from typing import TYPE_CHECKING",
        "import at_runtime",
        "import in_try",
        "import in_class_body",
        "from several import (",
        "a,",
        "b,",
        ")",
    }


def _package(root: Path, screens: dict[str, str], others: dict[str, str] | None = None) -> None:
    (root / "pkg" / "screens").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "screens" / "__init__.py").write_text("")
    (root / "pkg" / "screens" / "base.py").write_text("class Base:\n    pass\n")
    for name, text in screens.items():
        (root / "pkg" / "screens" / f"{name}.py").write_text(textwrap.dedent(text))
    for name, text in (others or {}).items():
        (root / "pkg" / f"{name}.py").write_text(textwrap.dedent(text))
    (root / "pyproject.toml").write_text(CONFIG)


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_function_level_and_type_checking_imports_between_screens_are_allowed(
    tmp_path: Path,
) -> None:
    _package(
        tmp_path,
        {
            "one": """\
                from typing import TYPE_CHECKING
                from pkg.screens.base import Base
                if TYPE_CHECKING:
                    from pkg.screens.two import Two
                class One(Base):
                    def open_two(self) -> "Two":
                        from pkg.screens.two import Two
                        return Two()
                """,
            "two": """\
                from pkg.screens.base import Base
                class Two(Base):
                    pass
                """,
        },
    )
    result = _lint_imports(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_module_level_import_between_screens_breaks_the_contract(tmp_path: Path) -> None:
    _package(
        tmp_path,
        {
            "one": "import pkg.screens.two\n",
            "two": "from pkg.screens.base import Base\n",
            "three": "import pkg.loads_four\n",  # indirect, through a module outside screens
            "four": "X = 4\n",
            "five": "import pkg.defers_four\n",  # that module imports four only when called
        },
        {
            "loads_four": "from pkg.screens import four\n",
            "defers_four": "def later():\n    from pkg.screens import four\n",
        },
    )
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert "pkg.screens.one is not allowed to import pkg.screens.two" in result.stdout
    assert "pkg.screens.three is not allowed to import pkg.screens.four" in result.stdout
    assert "pkg.screens.five" not in result.stdout


def _core_modules() -> set[str]:
    import pkgutil

    import raycai_core

    found = {"raycai_core"}
    for info in pkgutil.walk_packages(raycai_core.__path__, "raycai_core."):
        found.add(info.name)
    return found


def _contract(name_starts: str) -> dict[str, object]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"].startswith(name_starts)]
    return contract


def _placed(module: str, placements: list[str]) -> list[str]:
    return [p for p in placements if module == p or module.startswith(p + ".")]


def test_every_core_module_has_one_place_in_the_layers() -> None:
    """A new module must be placed: in one layer of the core, in local/ (the embedded
    workspace, outside the layers) or among the head-side programs (which import nothing)."""
    layers = _contract("raycai_core layers")["layers"]
    placements = [name.strip() for layer in layers for name in layer.split(":")]
    outside = ["raycai_core.local", *_contract("Head-side programs")["source_modules"]]
    # packages whose modules are placed one by one, and the root (its __version__ only)
    containers = {"raycai_core", "raycai_core.cluster", "raycai_core.launcher"}
    unplaced, twice = [], []
    for module in sorted(_core_modules() - containers):
        where = _placed(module, placements) + _placed(module, outside)
        if not where:
            unplaced.append(module)
        elif len(where) > 1:
            twice.append(f"{module}: {where}")
    assert not unplaced, f"place these modules in pyproject's layers contract: {unplaced}"
    assert not twice, twice


def test_module_level_forbidden_counts_only_imports_that_run_at_import(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "widgets").mkdir(parents=True)
    files = {
        "pkg/__init__.py": "",
        "pkg/app.py": "X = 1\n",
        "pkg/widgets/__init__.py": "",
        "pkg/widgets/typed.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.app import X\n",
        "pkg/widgets/deferred.py": "def later():\n    from pkg import app\n",
        "pkg/widgets/eager.py": "import pkg.via\n",
        "pkg/via.py": "from pkg.app import X\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["pkg"]\ncontract_types = [\n'
        '    "module_level_forbidden: tests.import_contracts.ModuleLevelForbiddenContract",\n]\n'
        '[[tool.importlinter.contracts]]\nname = "Widgets never import the app"\n'
        'type = "module_level_forbidden"\nsource_modules = ["pkg.widgets"]\n'
        'forbidden_modules = ["pkg.app"]\n'
    )
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pkg.widgets.eager -> pkg.via" in result.stdout
    assert "typed" not in result.stdout and "deferred" not in result.stdout
