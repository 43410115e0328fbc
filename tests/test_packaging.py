"""The install files agree with each other, and the public API is what it says it is."""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

import workbench

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"redis-py": "redis", "python-duckdb": "duckdb"}  # conda-forge name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in reqs if not r.startswith("workbench")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            have |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        else:
            have.add(CONDA_NAMES.get(_name(dep), _name(dep)))
    have -= {"python", "pip"}
    assert have == wanted, f"only in environment.yml: {have - wanted}; only in pyproject: {wanted - have}"


def test_public_api_is_sorted_and_importable():
    assert workbench.__all__ == sorted(workbench.__all__)
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None


def test_notebooks_are_committed_without_outputs():
    files = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split() or [str(p.relative_to(ROOT)) for p in ROOT.glob("*/*.ipynb")]
    assert files, "no notebooks found"
    for rel in files:
        nb = json.loads((ROOT / rel).read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, f"{rel} has outputs"


def test_every_top_level_folder_exists_with_a_readme_or_code():
    for folder in ("workbench", "connectors", "rules", "apps", "scheduled", "notebooks", "tests", "bench"):
        path = ROOT / folder
        assert path.is_dir(), folder
        assert any(path.iterdir()), f"{folder} is empty"
