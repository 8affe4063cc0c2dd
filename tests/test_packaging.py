"""What the distribution installs: everything under `grporm` (the repository's analysis/ folder is
grporm.analysis), nothing under a generic top-level name such as `analysis`."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder(package: str) -> Path:
    """The source folder of an installed package name (pyproject package-dir)."""
    for name, folder in sorted(PYPROJECT.get("package-dir", {}).items(), key=lambda item: -len(item[0])):
        if package == name or package.startswith(name + "."):
            return ROOT / folder / Path(*package[len(name):].lstrip(".").split(".")) if package != name else ROOT / folder
    return ROOT / Path(*package.split("."))


def test_every_package_folder_is_listed_and_under_grporm():
    listed = set(PYPROJECT["packages"])
    assert all(name == "grporm" or name.startswith("grporm.") for name in listed)
    folders = {_folder(name) for name in listed}
    assert all((folder / "__init__.py").is_file() for folder in folders)
    for top in ("grporm", "analysis"):  # a new subpackage must be listed, or the wheel would lack it
        missing = [p.parent for p in (ROOT / top).rglob("__init__.py") if p.parent not in folders]
        assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_installed_distribution_has_grporm_as_its_only_top_level_name():
    # the one in site-packages (`pip install -e .` or a wheel), not the grporm.egg-info of the checkout
    found = sorted(Path(sysconfig.get_paths()["purelib"]).glob("grporm-*.dist-info"))
    if not found:
        pytest.skip("grporm is not installed in this interpreter's site-packages")
    dist = metadata.PathDistribution(found[-1])
    assert (dist.read_text("top_level.txt") or "").split() == ["grporm"]
    tops = {Path(str(f)).parts[0] for f in dist.files or []}
    assert "analysis" not in tops


def test_import_analysis_fails_outside_the_repository(tmp_path):
    code = ("import importlib.util as u, grporm.analysis.report as r; "
            "assert u.find_spec('analysis') is None, u.find_spec('analysis'); print(r.REPORT_NAME)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "REPORT.md"


@pytest.mark.slow
def test_grporm_report_works_from_any_folder(tmp_path, write_run):
    results = tmp_path / "elsewhere" / "results"
    for s in range(2):
        write_run(results, "main", f"ce-s{s}", method="ce", seed=s, sr=0.8)
        write_run(results, "main", f"grpo-s{s}", method="grpo_rm", seed=s, sr=0.82)
    grporm = Path(sys.executable).with_name("grporm")
    out = subprocess.run([str(grporm), "report", "--results", str(results)], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    assert (results / "REPORT.md").is_file()


@pytest.mark.slow
def test_the_wheel_holds_only_grporm(tmp_path):
    """A regular (non-editable) build: `pip wheel . --no-deps`, then its file list, then imported from it."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path), "--no-deps", "-q"],
                           capture_output=True, text=True, cwd=tmp_path)
    if built.returncode and "bdist_wheel" in built.stderr + built.stdout:
        pytest.skip("no wheel builder available")
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("grporm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"grporm", wheel.name.split("-py")[0] + ".dist-info"}
    assert "grporm/analysis/report.py" in names and "grporm/objectives/__init__.py" in names
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("import importlib.util as u, grporm.analysis.report as r; assert u.find_spec('analysis') is None; "
            "print(r.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(unpacked)})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(unpacked)
