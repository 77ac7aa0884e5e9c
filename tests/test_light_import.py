"""Importing the library loads torch and torchmetrics, and nothing of the integrations or the app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pytorch_lightning", "lightning", "lightning_fabric", "mlflow", "matplotlib", "hydra", "omegaconf")


def _modules_loaded_by(statement: str) -> dict[str, list[str]]:
    """The heavy modules loaded by torchmetrics alone, and those that ``statement`` loads after it."""
    script = f"""
import json, sys
import torchmetrics
before = set(sys.modules)
{statement}
heavy = {HEAVY!r}
top = lambda names: sorted({{n.split(".")[0] for n in names}} & set(heavy))
print(json.dumps({{"torchmetrics": top(before), "ours": top(set(sys.modules) - before)}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import xent_plugin",
        "import xent_plugin.metrics",
        "import xent_plugin.functional",
        "from xent_plugin import CrossEntropy, XentMetrics",
    ],
)
def test_the_library_imports_no_integration_or_app_dependency(statement):
    loaded = _modules_loaded_by(statement)
    assert loaded["ours"] == []
    # torchmetrics loads matplotlib for its plot() when it is installed; nothing else heavy is loaded at all.
    # tests/app/test_packaging.py runs the metrics where matplotlib is not installed.
    assert set(loaded["torchmetrics"]) <= {"matplotlib"}


def test_xent_monitor_is_loaded_on_first_use():
    loaded = _modules_loaded_by("from xent_plugin import XentMonitor")
    assert "pytorch_lightning" in loaded["ours"] or "lightning" in loaded["ours"]


def test_an_unknown_attribute_names_itself():
    import xent_plugin

    with pytest.raises(AttributeError, match="'no_such_thing'"):
        xent_plugin.no_such_thing  # noqa: B018
