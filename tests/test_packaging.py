"""Packaging: the package asks for a torch range, never an exact pin, so that
`pip install asr-init` keeps a torch the environment already has (a CUDA build, say)."""

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _torch_requirement(requires: list[str]) -> Requirement:
    (req,) = [Requirement(r) for r in requires if Requirement(r).name == "torch"]
    return req


def _check_range(req: Requirement) -> None:
    specs = {s.operator: Version(s.version) for s in req.specifier}
    assert not {"==", "===", "~="} & set(specs), f"torch is pinned: {req}"
    assert ">=" in specs and "<" in specs, f"torch needs a lower and an upper bound: {req}"
    assert specs["<"] == Version(f"{specs['>='].major + 1}"), f"the range should run to the next major version: {req}"
    # The torch this suite runs on lies inside the range.
    assert req.specifier.contains(Version(torch.__version__).base_version), (req, torch.__version__)


def test_pyproject_asks_for_a_torch_range():
    """The dependencies this checkout declares (what pip writes into the metadata it installs)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _check_range(_torch_requirement(project["dependencies"]))


def test_installed_metadata_asks_for_a_torch_range():
    """The installed distribution's metadata, when it was installed from this checkout."""
    dist = metadata.distribution("asr-init")
    origin = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if origin.startswith("file://") and Path(origin[len("file://") :]).resolve() != ROOT:
        pytest.skip(f"the installed asr-init comes from {origin}, not this checkout ({ROOT})")
    _check_range(_torch_requirement(metadata.requires("asr-init")))
