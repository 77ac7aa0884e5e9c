"""scripts/bench.py's comparisons on a CUDA device, where the fused pass is compiled by inductor to Triton.

    python scripts/bench_gpu.py --json bench_results/bench_gpu.json

- The floor: the default ``XentMetrics.update`` (validation on, the fused pass chosen by itself) and the eager
  pass against a compiled ``torch.logsumexp(z.float(), -1).sum()`` and ``F.cross_entropy``, in bench.py's four
  cases and at V = 128k, interleaved repetitions with ``torch.cuda.synchronize`` around each call, medians of
  per-repetition ratios.
- Every extra on, fed from the one pass, against the default set's update.
- The hidden-state path for 8 x 4096 tokens of width 4096 into V = 128k (bf16: 8 GiB of logits): time and peak
  extra device memory (``torch.cuda.max_memory_allocated``) against materialising the logits.
- Host syncs: every metric class's update of a batch on the device under ``torch.cuda.set_sync_debug_mode``,
  which counts each synchronising CUDA call.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import EXTRAS_CASE, FLOOR_CASES, _floor_methods, time_ratios  # noqa: E402

from xent_plugin.metrics import (  # noqa: E402
    BootstrapIntervals,
    CalibrationEstimators,
    CalibrationTest,
    TemperatureScan,
    XentMetrics,
)

DEVICE = torch.device("cuda")
GPU_FLOOR_CASES = {**FLOOR_CASES, "bf16 tokens 8x1024x128000": ((8, 1024, 128_000), torch.bfloat16, -100)}
HIDDEN_CASE = {"batch": 8, "tokens": 4096, "width": 4096, "vocab": 128_000}


def _logits(shape, dtype, ignore_index):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    logits = torch.randn(*shape, generator=g, device=DEVICE).to(dtype)
    target = torch.randint(0, shape[-1], shape[:-1], generator=g, device=DEVICE)
    if ignore_index is not None:
        target[..., -64:] = ignore_index
    return logits, target


def bench_floor(reps: int) -> dict:
    floor_kernel = torch.compile(lambda z: torch.logsumexp(z.float(), -1).sum())
    results = {}
    for name, (shape, dtype, ignore_index) in GPU_FLOOR_CASES.items():
        print(f"  {name} ...", flush=True)
        methods = _floor_methods(floor_kernel, shape, dtype, ignore_index, device=DEVICE)
        timings = time_ratios(methods, reps, baseline="floor", synchronize=torch.cuda.synchronize)
        results[name] = {
            "timings": timings,
            "ours_vs_cross_entropy": timings["ours"]["ratio"] / timings["cross_entropy"]["ratio"],
        }
        del methods
        torch.cuda.empty_cache()
    return results


def _extras(**options):
    return [
        CalibrationEstimators(**options).to(DEVICE),
        BootstrapIntervals(num_replicates=1000, **options).to(DEVICE),
        TemperatureScan(**options).to(DEVICE),
        CalibrationTest(**options).to(DEVICE),
    ]


def bench_extras(reps: int) -> dict:
    logits, target = _logits(EXTRAS_CASE, torch.float32, None)
    default, one_pass = XentMetrics().to(DEVICE), XentMetrics().to(DEVICE)
    fed, own = _extras(), _extras()
    methods = {
        "default": lambda: default.update(logits, target),
        "one_pass": lambda: one_pass.update(logits, target, extras=fed),
        "separately": lambda: [metric.update(logits, target) for metric in (default, *own)],
    }
    for extra in _extras():
        metric = XentMetrics().to(DEVICE)
        methods[f"only_{type(extra).__name__}"] = lambda metric=metric, extra=extra: metric.update(
            logits, target, extras=[extra]
        )
    timings = time_ratios(methods, reps, baseline="default", synchronize=torch.cuda.synchronize)
    return {"rows": EXTRAS_CASE[0], "classes": EXTRAS_CASE[1], "timings": timings}


def bench_hidden(reps: int) -> dict:
    g = torch.Generator(device=DEVICE).manual_seed(0)
    batch, tokens, width, vocab = (HIDDEN_CASE[k] for k in ("batch", "tokens", "width", "vocab"))
    hidden = torch.randn(batch, tokens, width, generator=g, device=DEVICE, dtype=torch.bfloat16)
    head = (torch.randn(vocab, width, generator=g, device=DEVICE) / width**0.5).to(torch.bfloat16)
    target = torch.randint(0, vocab, (batch, tokens), generator=g, device=DEVICE)
    from_hidden, materialised = XentMetrics().to(DEVICE), XentMetrics(class_dim=-1).to(DEVICE)
    methods = {
        "hidden": lambda: from_hidden.update_from_hidden(hidden, head, target),
        "materialised": lambda: materialised.update(hidden @ head.T, target),
    }
    peak = {}
    for name, run in methods.items():
        run()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak[name] = torch.cuda.max_memory_allocated() - before
    timings = time_ratios(methods, reps, baseline="materialised", synchronize=torch.cuda.synchronize)
    logits_bytes = batch * tokens * vocab * 2
    return {**HIDDEN_CASE, "logits_bytes": logits_bytes, "peak_extra_bytes": peak, "timings": timings}


def bench_host_syncs() -> dict:
    from tests.metrics._metric_cases import CASES

    results = {}
    for case in CASES:
        preds, target = (tensor.to(DEVICE) for tensor in case.make_batch(64, 0))
        counts = {}
        for validate_args in (False, True):
            metric = case.make_metric(validate_args=validate_args).to(DEVICE)
            metric.update(preds, target)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    metric.update(preds, target)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            # Not the "prototype feature" notice that setting the mode gives.
            counts[f"validate_args={validate_args}"] = sum(
                str(w.message).startswith("called a synchronizing CUDA operation") for w in caught
            )
        results[case.name] = counts
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=REPO / "bench_results" / "bench_gpu.json")
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args()
    report = {"machine": f"{torch.cuda.get_device_name()}, torch {torch.__version__}", "reps": args.reps}
    print("against the floor ...", flush=True)
    report["floor"] = bench_floor(args.reps)
    print("every extra on ...", flush=True)
    report["extras"] = bench_extras(max(3, args.reps // 2))
    print("hidden-state path ...", flush=True)
    report["hidden"] = bench_hidden(max(3, args.reps // 2))
    print("host syncs ...", flush=True)
    report["host_syncs"] = bench_host_syncs()
    print(f"\n{report['machine']}; medians of {args.reps} interleaved repetitions")
    for name, row in report["floor"].items():
        t = row["timings"]
        print(
            f"  {name:>34}: ours {t['ours']['ratio']:.2f}x floor ({t['ours']['seconds'] * 1e3:.3f} ms), eager "
            f"{t['ours_eager']['ratio']:.2f}x, F.cross_entropy {t['cross_entropy']['ratio']:.2f}x"
        )
    e = report["extras"]["timings"]
    print("  every extra, time / default update: " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in e.items()))
    h = report["hidden"]
    peak = {name: value / 2**30 for name, value in h["peak_extra_bytes"].items()}
    print(
        f"  hidden {h['batch']}x{h['tokens']} x {h['width']} -> V={h['vocab']:,} "
        f"(logits {h['logits_bytes'] / 2**30:.1f} GiB): peak extra GiB hidden {peak['hidden']:.2f}, "
        f"materialised {peak['materialised']:.2f}; time hidden / materialised {h['timings']['hidden']['ratio']:.2f}"
    )
    print(
        "  host syncs (validate_args=False / True): "
        + ", ".join(
            f"{k} {v['validate_args=False']}/{v['validate_args=True']}" for k, v in report["host_syncs"].items()
        )
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
