"""Load: token streams keep the metric state fixed; 50 epochs of wide logging stay within MLflow's batch limit.

- Tokens. ``scripts/load_tokens.py`` streams language-model logits (token layout, V = 32000) through the
  metrics; run it by hand for the 10-million-token figure. Here a few chunks check that the state does not grow
  and that the streamed values equal one ``F.cross_entropy`` over every token.
- Epochs. ``ResilientMLFlowLogger`` logs 50 epochs of more than 1000 metrics per call to the session's real
  ``mlflow server``: each call must be split into batches of at most 1000 (MLflow refuses larger ones), and
  every point must arrive.
"""

from __future__ import annotations

import importlib.util
import math
import sqlite3
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import REPO_ROOT
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger
from xent_plugin.metrics import XentMetrics

VOCAB = 32_000
IGNORE_INDEX = -100


def _load_tokens_script():
    """scripts/ is not a package (and pytest does not collect it); load the script by path."""
    if "load_tokens" not in sys.modules:
        spec = importlib.util.spec_from_file_location("load_tokens", REPO_ROOT / "scripts" / "load_tokens.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["load_tokens"] = module  # its dataclass looks its module up there
        spec.loader.exec_module(module)
    return sys.modules["load_tokens"]


def test_streamed_token_chunks_match_one_pass_over_all_tokens_with_a_fixed_state():
    generator = torch.Generator().manual_seed(0)
    chunks = [
        (torch.randn(2, 32, VOCAB, generator=generator), torch.randint(0, VOCAB, (2, 32), generator=generator))
        for _ in range(4)
    ]
    for _, target in chunks:
        target[:, -3:] = IGNORE_INDEX  # padding
    metrics = XentMetrics(task="multiclass", class_dim=-1, ignore_index=IGNORE_INDEX)
    shapes = {name: tuple(getattr(metrics, name).shape) for name in metrics.sum_state_names}
    state_bytes = metrics.state_bytes()

    for logits, target in chunks:
        metrics.update(logits, target)
        assert {name: tuple(getattr(metrics, name).shape) for name in metrics.sum_state_names} == shapes
        assert metrics.state_bytes() == state_bytes

    all_logits = torch.cat([logits.reshape(-1, VOCAB) for logits, _ in chunks]).double()
    all_targets = torch.cat([target.reshape(-1) for _, target in chunks])
    expected = F.cross_entropy(all_logits, all_targets, ignore_index=IGNORE_INDEX)
    # The per-row terms of float32 logits are float32 (only the sums are float64): agreement to ~1e-7.
    assert metrics.compute()["cross_entropy"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics.count.item() == (all_targets != IGNORE_INDEX).sum().item()


@pytest.mark.parametrize("metrics", ["xent", "cross_entropy"])
def test_the_load_script_reports_a_constant_state_and_flat_memory(metrics):
    report = _load_tokens_script().stream_tokens(
        tokens=6 * 2 * 64, vocab_size=VOCAB, batch=2, seq_len=64, metrics=metrics
    )

    assert report.tokens == 6 * 2 * 64
    assert report.state_bytes_after == report.state_bytes_before > 0
    # Resident memory after the first chunk, half-way and at the end: no per-chunk growth.
    assert report.rss_mib_at_end - report.rss_mib_after_first_chunk < 64
    assert report.update_tokens_per_s > 0
    assert math.isfinite(report.cross_entropy)
    assert report.perplexity == pytest.approx(math.exp(report.cross_entropy))


# ---- 50 epochs of logging to a real server -------------------------------------------------------------

EPOCHS = 50
WIDTH = 1_004  # metrics per log_metrics call: more than one log_batch may carry
MLFLOW_BATCH_LIMIT = 1_000


@pytest.fixture(scope="module")
def wide_logging(tracking_server, tmp_path_factory) -> dict:
    """50 epochs of ``WIDTH`` metrics each, logged through ``ResilientMLFlowLogger``; every log_batch is recorded."""
    directory = tmp_path_factory.mktemp("wide-logging")
    batch_sizes: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        # ResilientMLFlowLogger sets these for the whole process with os.environ.setdefault; pinning them to
        # its defaults here undoes that when the fixture ends.
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        logger = ResilientMLFlowLogger(
            experiment_name="e2e-wide", tracking_uri=tracking_server.url, unsent_path=directory / "unsent.jsonl"
        )
        client = logger.experiment
        send = client.log_batch

        def recording_log_batch(run_id, metrics=(), *args, **kwargs):
            batch_sizes.append(len(metrics))
            return send(run_id, metrics, *args, **kwargs)

        patch.setattr(client, "log_batch", recording_log_batch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in range(EPOCHS):
                values = {f"class_{index:04d}/ece": epoch + index / WIDTH for index in range(WIDTH)}
                logger.log_metrics(values, step=epoch)
            logger.finalize("success")
    return {
        "logger": logger,
        "run_id": logger.run_id,
        "batch_sizes": batch_sizes,
        "warnings": [str(warning.message) for warning in caught],
        "store": tracking_server.root / "mlflow.db",
    }


@pytest.mark.slow
def test_no_log_batch_call_carries_more_than_1000_metrics(wide_logging):
    assert max(wide_logging["batch_sizes"]) <= MLFLOW_BATCH_LIMIT
    assert sum(wide_logging["batch_sizes"]) == EPOCHS * WIDTH
    assert wide_logging["warnings"] == []


@pytest.mark.slow
def test_every_point_of_50_epochs_reaches_the_server(wide_logging):
    with sqlite3.connect(f"file:{wide_logging['store']}?mode=ro", uri=True) as store:
        (stored,) = store.execute(
            "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (wide_logging["run_id"],)
        ).fetchone()

    assert stored == EPOCHS * WIDTH
    assert not wide_logging["logger"].unsent_path.exists()


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, MLFLOW_BATCH_LIMIT - 1, MLFLOW_BATCH_LIMIT, WIDTH - 1])
def test_each_series_holds_one_point_per_epoch_with_its_value(wide_logging, index, tracking_server):
    history = MlflowClient(tracking_server.url).get_metric_history(wide_logging["run_id"], f"class_{index:04d}/ece")

    assert sorted((point.step, point.value) for point in history) == [
        (epoch, pytest.approx(epoch + index / WIDTH)) for epoch in range(EPOCHS)
    ]
