"""The import-linter contracts of DESIGN.md hold, and would catch a violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(executable), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_contracts_hold_on_the_project() -> None:
    result = lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken" in result.stdout


def test_contracts_catch_django_in_engine(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", copy)
    for package in ("engine", "tradebot", "models_registry", "deployment"):
        (copy / package).mkdir()
        (copy / package / "__init__.py").write_text("")
    for sub in ("data", "features", "inference", "strategies", "backtest", "live", "training"):
        (copy / "engine" / sub).mkdir()
        (copy / "engine" / sub / "__init__.py").write_text("")
    for sub in ("services", "tasks"):  # the services -> tasks contract names both
        (copy / "models_registry" / sub).mkdir()
        (copy / "models_registry" / sub / "__init__.py").write_text("")
    (copy / "engine" / "features" / "leak.py").write_text("import django.conf\n")
    (copy / "engine" / "backtest" / "fast.py").write_text("import tensorflow\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "engine runs without Django BROKEN" in result.stdout
    assert "only engine.training imports TensorFlow BROKEN" in result.stdout
    assert "the runtime engine never reaches engine.training BROKEN" in result.stdout


def test_the_contract_catches_a_service_importing_a_task_inside_a_function(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", copy)
    for package in ("engine", "tradebot", "models_registry", "deployment"):
        (copy / package).mkdir()
        (copy / package / "__init__.py").write_text("")
    for sub in ("data", "features", "inference", "strategies", "backtest", "live", "training"):
        (copy / "engine" / sub).mkdir()
        (copy / "engine" / sub / "__init__.py").write_text("")
    for sub in ("services", "tasks"):
        (copy / "models_registry" / sub).mkdir()
        (copy / "models_registry" / sub / "__init__.py").write_text("")
    (copy / "models_registry" / "tasks" / "backtest.py").write_text("")
    (copy / "models_registry" / "services" / "runs.py").write_text(
        "def queue():\n    from models_registry.tasks import backtest\n    return backtest\n"
    )
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "never import a task \nmodule BROKEN" in result.stdout or (
        "never import a task module BROKEN" in result.stdout
    )
