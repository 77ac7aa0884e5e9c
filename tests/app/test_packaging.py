"""The wheel, installed without the source tree: its app runs ``xent-train`` from an empty directory, and its
library works in an environment that holds nothing but torch, torchmetrics and what they require."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.app.xent_train_runs import FEW_BATCHES, runs_in, sqlite_uri
from xent_plugin.metrics import XentMetrics

REPOSITORY = Path(__file__).resolve().parents[2]
_NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts", "outputs", "mlruns")


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy, so that setuptools' build/ and egg-info land in a temporary directory."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPOSITORY, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), "."], source)
    (built,) = root.glob("xent_plugin-*.whl")
    return built


def _venv_with(wheel: Path, dependencies: Path, root: Path) -> Path:
    """A new virtualenv holding ``wheel``, whose dependencies come from the ``dependencies`` directory through a
    ``.pth`` path line, which adds the directory but runs none of its ``.pth`` hooks, so the editable install of
    the source tree is not visible there. Returns the venv's ``bin`` directory."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "dependencies.pth").write_text(f"{dependencies}\n")
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], root)
    return venv / "bin"


@pytest.fixture(scope="module")
def installed_wheel(wheel, tmp_path_factory) -> Path:
    """The wheel beside every package of this environment."""
    return _venv_with(wheel, Path(sysconfig.get_paths()["purelib"]), tmp_path_factory.mktemp("app"))


def _required_distributions(names: list[str]) -> list:
    """The installed distributions of ``names`` and, transitively, of everything they require (no extras)."""
    found: dict[str, object] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        try:
            found[name] = dist = distribution(name)
        except PackageNotFoundError:
            continue
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


@pytest.fixture(scope="module")
def library_only_wheel(wheel, tmp_path_factory) -> Path:
    """The wheel in a venv that sees only torch, torchmetrics and their requirements: a directory of links to
    those distributions' files in this environment, and nothing else (no Lightning, MLflow, Hydra, matplotlib)."""
    root = tmp_path_factory.mktemp("library")
    dependencies = root / "dependencies"
    dependencies.mkdir()
    for dist in _required_distributions(["torch", "torchmetrics"]):
        for top in {file.parts[0] for file in dist.files or [] if file.parts[0] != ".."}:
            link, target = dependencies / top, Path(dist.locate_file(top))
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return _venv_with(wheel, dependencies, root)


@pytest.mark.slow
def test_the_wheel_ships_conf_and_its_app_runs_from_an_empty_directory(installed_wheel, tmp_path):
    located = _run(
        [str(installed_wheel / "python"), "-c", "import xent_plugin.app.config as c; print(c.CONFIG_DIR)"], tmp_path
    )
    config_dir = Path(located.stdout.strip())
    assert config_dir.is_relative_to(installed_wheel.parent), f"conf/ found outside the wheel: {config_dir}"
    assert (config_dir / "train.yaml").is_file()

    _run([str(installed_wheel / "xent-train"), *FEW_BATCHES], tmp_path)

    (run,) = runs_in(MlflowClient(tracking_uri=sqlite_uri(tmp_path)))
    assert run.info.status == "FINISHED"
    assert "val/cross_entropy" in run.data.metrics


_LIBRARY_USE = """
import importlib.util, json, sys
import torch
from xent_plugin.metrics import XentMetrics
from xent_plugin.functional import cross_entropy
logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
target = torch.arange(64) % 10
metrics = XentMetrics(n_bins=15)
metrics.update(logits, target)
values = {name: float(value) for name, value in metrics.compute().items()}
heavy = ("pytorch_lightning", "lightning", "mlflow", "hydra", "omegaconf", "matplotlib", "sklearn")
print(json.dumps({
    "values": values,
    "functional": float(cross_entropy(logits, target)),
    "loaded": sorted({name.split(".")[0] for name in sys.modules} & set(heavy)),
    "installed": [name for name in heavy if importlib.util.find_spec(name) is not None],
}))
"""


@pytest.mark.slow
def test_the_library_needs_only_torch_and_torchmetrics(library_only_wheel, tmp_path):
    result = _run([str(library_only_wheel / "python"), "-c", _LIBRARY_USE], tmp_path)
    used = json.loads(result.stdout.strip().splitlines()[-1])
    assert used["installed"] == []  # the venv really holds none of the integrations' dependencies
    assert used["loaded"] == []  # so importing the metrics loads no matplotlib either (torchmetrics' plot() would)

    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    expected = XentMetrics(n_bins=15)
    expected.update(logits, torch.arange(64) % 10)
    assert used["values"] == pytest.approx({name: float(value) for name, value in expected.compute().items()})
    assert used["functional"] == pytest.approx(used["values"]["cross_entropy"])
