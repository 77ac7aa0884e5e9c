from unittest.mock import patch

import pytest

from xent_plugin.integrations.mlflow.metrics import log_metrics_batched


def test_2500_metrics_arrive_completely_in_three_batches(client, run_id):
    metrics = {f"class_{index:04d}/ece": index / 2500 for index in range(2500)}
    with patch.object(client, "log_batch", wraps=client.log_batch) as log_batch:
        log_metrics_batched(client, run_id, metrics, step=7)
    assert [len(call.kwargs["metrics"]) for call in log_batch.call_args_list] == [1000, 1000, 500]
    assert client.get_run(run_id).data.metrics == metrics
    for key in ("class_0000/ece", "class_1000/ece", "class_2499/ece"):
        (logged,) = client.get_metric_history(run_id, key)
        assert (logged.value, logged.step) == (metrics[key], 7)


def test_smaller_batches_can_be_asked_for(client, run_id):
    with patch.object(client, "log_batch", wraps=client.log_batch) as log_batch:
        log_metrics_batched(client, run_id, {"a": 1.0, "b": 2.0, "c": 3.0}, step=0, max_per_batch=2)
    assert log_batch.call_count == 2
    assert client.get_run(run_id).data.metrics == {"a": 1.0, "b": 2.0, "c": 3.0}


@pytest.mark.parametrize("max_per_batch", [0, 1001, 2.5, True])
def test_batch_size_outside_what_mlflow_accepts_is_rejected(client, run_id, max_per_batch):
    with pytest.raises(ValueError, match=r"`max_per_batch` must be an integer in \[1, 1000\]"):
        log_metrics_batched(client, run_id, {"a": 1.0}, step=0, max_per_batch=max_per_batch)
