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


def test_built_metadata_asks_for_a_torch_range(tmp_path, monkeypatch):
    """The metadata pip would install from this checkout (setuptools' PEP 517 hook)."""
    from setuptools import build_meta

    monkeypatch.chdir(ROOT)  # the build backend reads pyproject.toml from the working directory
    dist_info = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    text = (tmp_path / dist_info / "METADATA").read_text()
    requires = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    _check_range(_torch_requirement(requires))


def test_installed_metadata_asks_for_a_torch_range():
    """The installed distribution's metadata, when it was installed from this checkout."""
    dist = metadata.distribution("asr-init")
    origin = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if origin.startswith("file://") and Path(origin[len("file://"):]).resolve() != ROOT:
        pytest.skip(f"the installed asr-init comes from {origin}, not this checkout ({ROOT})")
    _check_range(_torch_requirement(metadata.requires("asr-init")))
