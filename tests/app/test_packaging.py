"""The wheel, installed without the source tree, runs ``xent-train`` from an empty directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.app.xent_train_runs import FEW_BATCHES, runs_in, sqlite_uri

REPOSITORY = Path(__file__).resolve().parents[2]
_NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts", "outputs", "mlruns")


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """A new virtualenv holding the built wheel; its dependencies come from this environment's site-packages
    through a ``.pth`` path line, which adds the directory but runs none of its ``.pth`` hooks, so the editable
    install of the source tree is not visible there. Returns the venv's ``bin`` directory."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so setuptools' build/ and egg-info land in the temporary directory, not the checkout.
    source = root / "source"
    shutil.copytree(REPOSITORY, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), "."], source)
    (wheel,) = root.glob("xent_plugin-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], root)
    return venv / "bin"


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
