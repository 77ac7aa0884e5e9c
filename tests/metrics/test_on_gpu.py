"""On a CUDA device: states stay there, an update never synchronises with the host, and the passes agree.

CI has no GPU: every test here is marked ``gpu`` and skips with its reason. ``torch.cuda.set_sync_debug_mode``
turns any synchronising CUDA call (``.item()``, ``nonzero``, a blocking copy to the host) into an error.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from xent_plugin.functional import fused
from xent_plugin.metrics import XentMetrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here; CI has none)"),
]

TOLERANCE = 1e-6


def _tokens(vocab: int = 1000, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 256, vocab, generator=g)).to(dtype)
    target = torch.randint(0, vocab, (4, 256), generator=g)
    target[:, -16:] = -100
    return logits.cuda(), target.cuda()


@pytest.fixture
def compiled_pass_available(monkeypatch):
    monkeypatch.setattr(fused, "MODE", "auto")
    monkeypatch.setattr(fused, "_failed", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would compare eager to eager
        yield


@pytest.mark.parametrize("use_fused", [False, True], ids=["eager", "fused"])
def test_update_without_validation_never_syncs_and_states_stay_on_the_device(
    compiled_pass_available, use_fused, monkeypatch
):
    monkeypatch.setattr(fused, "MODE", "on" if use_fused else "off")
    logits, target = _tokens()
    metric = XentMetrics(class_dim=-1, ignore_index=-100, validate_args=False).cuda()
    metric.update(logits, target)  # compiles outside the checked region
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.update(logits, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metric.count.device.type == "cuda"
    assert not fused._failed


def test_hidden_state_path_never_syncs():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 128, 64, generator=g).cuda()
    head = torch.randn(5000, 64, generator=g).cuda()
    target = torch.randint(0, 5000, (2, 128), generator=g).cuda()
    metric = XentMetrics(validate_args=False).cuda()
    metric.update_from_hidden(hidden, head, target, max_logits=1 << 16)  # the first update copies the options digest
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.update_from_hidden(hidden, head, target, max_logits=1 << 16)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_eager_and_hidden_state_passes_agree_on_the_device(compiled_pass_available, dtype):
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(4, 128, 64, generator=g).to(dtype).cuda()
    head = (torch.randn(3000, 64, generator=g) / 8).to(dtype).cuda()
    target = torch.randint(0, 3000, (4, 128), generator=g).cuda()
    target[:, -8:] = -100
    logits = hidden @ head.T
    results = {}
    for name, mode in (("eager", "off"), ("fused", "on")):
        fused.MODE = mode
        metric = XentMetrics(class_dim=-1, ignore_index=-100).cuda()
        metric.update(logits, target)
        results[name] = metric.compute()
    # bf16 logits computed block by block may round differently from one product (cuBLAS picks its kernel by
    # shape), so the hidden-state path is held to the logits' passes in float32 only.
    if dtype == torch.float32:
        from_hidden = XentMetrics(ignore_index=-100).cuda()
        from_hidden.update_from_hidden(hidden, head, target, max_logits=1 << 15)
        results["hidden"] = from_hidden.compute()
    for name in ("cross_entropy", "entropy", "brier_score", "accuracy", "ece"):
        expected = results["eager"][name].item()
        for path in set(results) - {"eager"}:
            assert results[path][name].item() == pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE), (path, name)


def test_every_extra_fed_from_the_pass_never_syncs_and_matches_the_cpu(compiled_pass_available):
    from xent_plugin.metrics import BootstrapIntervals, CalibrationEstimators, CalibrationTest, TemperatureScan

    def extras():
        options = {"class_dim": -1, "ignore_index": -100, "validate_args": False}
        return [
            CalibrationEstimators(**options),
            BootstrapIntervals(num_replicates=1000, **options),  # 1000 x 1024 weights: the compiled draws
            TemperatureScan(**options),
            CalibrationTest(**options),
        ]

    logits, target = _tokens()
    on_cpu, on_gpu = extras(), [extra.cuda() for extra in extras()]
    XentMetrics(class_dim=-1, ignore_index=-100).update(logits.cpu(), target.cpu(), extras=on_cpu)
    metric = XentMetrics(class_dim=-1, ignore_index=-100, validate_args=False).cuda()
    metric.update(logits, target, extras=on_gpu)  # compiles, and copies each metric's options digest
    assert on_gpu[1].replicate_count.device.type == "cuda"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.update(logits, target, extras=on_gpu)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    XentMetrics(class_dim=-1, ignore_index=-100).update(logits.cpu(), target.cpu(), extras=on_cpu)
    for cpu_extra, gpu_extra in zip(on_cpu, on_gpu, strict=True):
        # The scan's sums of third and fourth cumulants are float32 reductions in another order on each device.
        tolerance = 1e-4 if isinstance(cpu_extra, TemperatureScan) else 1e-6
        for name in cpu_extra.sum_state_names:
            gpu_state, cpu_state = getattr(gpu_extra, name).cpu(), getattr(cpu_extra, name)
            torch.testing.assert_close(gpu_state, cpu_state, rtol=tolerance, atol=tolerance)
