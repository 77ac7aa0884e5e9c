"""Benchmark of the softmax pass against F.cross_entropy, one exp pass and the torchmetrics way (issue 5).

    .venv/bin/python scripts/bench.py                   # table, targets, bench_results/bench.json (~3-4 min)
    .venv/bin/python scripts/bench.py --quick           # fewer repetitions, no memory or distributed part
    .venv/bin/python scripts/bench.py --plot            # also docs/bench_vocab.png, time against vocabulary size

What it measures, for fp32 logits with hard targets and the full set (cross-entropy, entropy, Brier, 15-bin
calibration, accuracy) updated together:

- Times. Every method runs once per repetition, interleaved (the order alternates), and each repetition's time
  is divided by that repetition's ``F.cross_entropy`` time; the table shows the median of those ratios. On a
  shared machine absolute times are noise, ratios taken side by side are not. "ours fused" and "ours eager" are
  ``XentMetrics.update`` with the compiled pass forced on or off (the eager pass runs one chunk per worker
  thread, see ``xent_plugin/functional/_layout.py``). "torchmetrics" is ``MeanMetric`` over the
  per-sample ``F.cross_entropy(reduction="none")``, ``MulticlassCalibrationError(n_bins=15)``, and entropy,
  Brier and accuracy from one softmax, each in a ``MeanMetric`` (Brier as sum q^2 - 2 q_y + 1, the cheap way).
- Peak memory. Each method runs in a fresh subprocess, once to warm up (and compile), then again with the
  kernel's resident-set high-water mark reset (``/proc/self/clear_refs``); the figure is VmHWM minus VmRSS
  before the call: the resident memory the update added at its peak. glibc's mmap threshold is lowered to
  64 KiB there so freed buffers go back to the kernel and a reused heap cannot hide an allocation.
- State bytes after 10^3 and 10^7 samples: every state tensor of ``XentMetrics`` against the two list states of
  ``MulticlassCalibrationError``.
- compute(): single-process time after the timing runs (ours: a dozen sums; torchmetrics: every kept sample),
  and with 2 gloo processes holding 10^6 samples in all: time, and the collectives each compute() issues.
- Compile time of the fused pass: in a subprocess with an empty inductor cache (cold) and again with the cache it
  filled (warm), per class count.

- The floor (issue 15): a ``torch.compile``d ``torch.logsumexp(z.float(), -1).sum()``, which reads each logit
  once, against the default ``XentMetrics.update`` (validation on, the fused pass chosen by itself), in the
  four cases of issue 15: fp32 16384 x 1000, fp32 and bf16 4096 x 32000, and tokens 4 x 1024 x 32000 with
  ignore_index (``class_dim=-1``). Interleaved repetitions, median of per-repetition ratios to the floor.
- Host syncs per update (``aten._local_scalar_dense``, ``nonzero``, ``masked_select``, boolean-mask indexing) of
  every metric class, with and without ``validate_args``, counted with a ``TorchDispatchMode``.
- Every extra on (calibration estimators, a 1000-replicate bootstrap, the temperature scan and the calibration
  test) fed from the one pass, against each extra reading the logits itself, as ratios to the default update.
- The hidden-state path at V = 128k (``XentMetrics.update_from_hidden``) against materialising the logits and
  calling ``XentMetrics.update``: peak extra resident memory (fresh subprocess each) and time ratio.

XentMonitor's callback overhead is measured by ``scripts/measure_callback_cost.py``, and the same comparisons on
a GPU by ``scripts/bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xent_plugin.functional import fused  # noqa: E402
from xent_plugin.metrics import XentMetrics  # noqa: E402

FLOOR_CASES = {
    "fp32 16384x1000": ((16384, 1000), torch.float32, None),
    "fp32 4096x32000": ((4096, 32000), torch.float32, None),
    "bf16 4096x32000": ((4096, 32000), torch.bfloat16, None),
    "tokens 4x1024x32000 ignore_index": ((4, 1024, 32000), torch.float32, -100),
}
FLOOR_TARGET = 1.5
HIDDEN_CASE = {"tokens": 1024, "width": 512, "vocab": 128_000}
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "item"}

CASES = [(16384, 1000), (4096, 32000)]
# XentMonitor with every extra on (bootstrap with its default 1000 replicates): a validation batch of a
# 100-class model.
EXTRAS_CASE = (16384, 100)
TARGETS = {"eager_vs_ce": 1.5, "fused_vs_ce": 0.6, "torchmetrics_vs_fused": 5.0}
TOKEN_CAP_MIB = 256
VOCAB_SIZES = [1000, 4000, 16000, 32000]
VOCAB_BUDGET = 1 << 24  # scores per update in the vocabulary plot
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "broadcast", "barrier")


class TorchmetricsWay:
    """The same numbers from stock torchmetrics, as a user would assemble them."""

    def __init__(self, num_classes: int) -> None:
        from torchmetrics import MeanMetric
        from torchmetrics.classification import MulticlassCalibrationError

        self.means = {name: MeanMetric() for name in ("cross_entropy", "entropy", "brier", "accuracy")}
        self.calibration = MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1")

    def metrics(self) -> list:
        return [*self.means.values(), self.calibration]

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.means["cross_entropy"].update(F.cross_entropy(logits, target, reduction="none"))
        probs = logits.softmax(dim=1)
        self.means["entropy"].update(torch.special.entr(probs).sum(dim=1))
        target_prob = probs.gather(1, target[:, None]).squeeze(1)
        self.means["brier"].update(probs.square().sum(dim=1) - 2 * target_prob + 1)
        self.means["accuracy"].update((probs.argmax(dim=1) == target).float())
        self.calibration.update(probs, target)

    def compute(self) -> dict[str, torch.Tensor]:
        values = {name: metric.compute() for name, metric in self.means.items()}
        values["ece"] = self.calibration.compute()
        return values

    def state_bytes(self) -> int:
        return sum(_state_bytes(metric) for metric in self.metrics())


def _state_bytes(metric) -> int:
    total = 0
    for name in metric._defaults:
        value = getattr(metric, name)
        for tensor in value if isinstance(value, list) else [value]:
            total += tensor.numel() * tensor.element_size()
    return total


def _batch(rows: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=g), torch.randint(0, classes, (rows,), generator=g)


def _our_update(metric: XentMetrics, mode: str, logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def update() -> None:
        saved, fused.MODE = fused.MODE, mode
        try:
            metric.update(logits, target)
        finally:
            fused.MODE = saved

    return update


def _methods(
    logits: torch.Tensor, target: torch.Tensor, ours: XentMetrics, theirs: TorchmetricsWay
) -> dict[str, Callable[[], object]]:
    return {
        "cross_entropy": lambda: F.cross_entropy(logits, target),
        "ours_fused": _our_update(ours, "on", logits, target),
        "ours_eager": _our_update(ours, "off", logits, target),
        "torchmetrics": lambda: theirs.update(logits, target),
    }


def time_ratios(
    methods: dict[str, Callable[[], object]],
    reps: int,
    baseline: str,
    synchronize: Callable[[], None] = lambda: None,
) -> dict[str, dict]:
    """Median per-repetition ratio to ``baseline`` and median seconds, with the methods interleaved.

    ``synchronize`` waits for queued device work (``torch.cuda.synchronize`` on a GPU) around each timed call.
    """
    for run in methods.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for rep in range(reps):
        order = list(methods) if rep % 2 == 0 else list(reversed(methods))
        for name in order:
            synchronize()
            started = time.perf_counter()
            methods[name]()
            synchronize()
            seconds[name].append(time.perf_counter() - started)
    results = {}
    for name, times in seconds.items():
        ratios = [t / b for t, b in zip(times, seconds[baseline], strict=True)]
        results[name] = {
            "ratio": statistics.median(ratios),
            "best_ratio": min(ratios),
            "seconds": statistics.median(times),
        }
    return results


def _time_compute(compute: Callable[[], object], metrics: list, reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        for metric in metrics:
            metric._computed = None  # torchmetrics caches compute() until the next update
        started = time.perf_counter()
        compute()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_case(rows: int, classes: int, reps: int) -> dict:
    load_before = os.getloadavg()[0]
    logits, target = _batch(rows, classes)
    ours = XentMetrics(n_bins=15)
    started = time.perf_counter()
    _our_update(ours, "on", logits, target)()
    first_fused_s = time.perf_counter() - started
    theirs = TorchmetricsWay(classes)
    methods = _methods(logits, target, ours, theirs)
    timings = time_ratios({"exp": lambda: torch.exp(logits), **methods}, reps, baseline="cross_entropy")
    fused_ratio = timings["ours_fused"]["ratio"]
    eager_ratio = timings["ours_eager"]["ratio"]
    return {
        "rows": rows,
        "classes": classes,
        "logits_mib": logits.numel() * 4 / 2**20,
        "timings": timings,
        "first_fused_update_s": first_fused_s,
        "load_average": [load_before, os.getloadavg()[0]],
        "torchmetrics_vs_fused": timings["torchmetrics"]["ratio"] / fused_ratio,
        "torchmetrics_vs_eager": timings["torchmetrics"]["ratio"] / eager_ratio,
        "compute_s": {
            "ours": _time_compute(ours.compute, [ours]),
            "torchmetrics": _time_compute(theirs.compute, theirs.metrics()),
            "torchmetrics_samples_kept": sum(t.numel() for t in theirs.calibration.confidences),
        },
        "pass": {
            "eager_vs_ce": eager_ratio <= TARGETS["eager_vs_ce"],
            "fused_vs_ce": fused_ratio <= TARGETS["fused_vs_ce"],
            "torchmetrics_vs_fused": timings["torchmetrics"]["ratio"] / fused_ratio >= TARGETS["torchmetrics_vs_fused"],
        },
    }


# ---- the floor: a compiled one-pass logsumexp -----------------------------------------------------------------


def bench_floor(reps: int) -> dict:
    floor_kernel = torch.compile(lambda z: torch.logsumexp(z.float(), -1).sum())
    results = {}
    for name, (shape, dtype, ignore_index) in FLOOR_CASES.items():
        print(f"  {name} ...", flush=True)
        timings = time_ratios(_floor_methods(floor_kernel, shape, dtype, ignore_index), reps, baseline="floor")
        results[name] = {
            "timings": timings,
            "ours_vs_cross_entropy": timings["ours"]["ratio"] / timings["cross_entropy"]["ratio"],
            "pass": timings["ours"]["ratio"] <= FLOOR_TARGET,
        }
    return results


def _floor_methods(floor_kernel, shape, dtype, ignore_index, device="cpu") -> dict[str, Callable[[], object]]:
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(*shape, generator=g, device=device).to(dtype)
    target = torch.randint(0, shape[-1], shape[:-1], generator=g, device=device)
    if ignore_index is not None:
        target[..., -64:] = ignore_index
    class_dim = -1 if len(shape) == 3 else 1
    ours = XentMetrics(n_bins=15, class_dim=class_dim, ignore_index=ignore_index).to(device)
    eager = XentMetrics(n_bins=15, class_dim=class_dim, ignore_index=ignore_index).to(device)
    flat_logits, flat_target = logits.reshape(-1, shape[-1]), target.reshape(-1)
    ce_kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    return {
        "floor": lambda: floor_kernel(logits),
        "cross_entropy": lambda: F.cross_entropy(flat_logits, flat_target, **ce_kwargs),
        "ours": lambda: ours.update(logits, target),
        "ours_eager": _our_update(eager, "off", logits, target),
    }


# ---- every extra on: one pass against a pass per extra --------------------------------------------------------


def bench_extras(reps: int) -> dict:
    """XentMonitor's update with every extra on, fed from the one pass, against each extra reading the logits."""
    from xent_plugin.integrations.lightning.metric_options import MetricOptions

    options = MetricOptions(
        calibration_estimators=True, bootstrap_replicates=1000, temperature_scan=True, calibration_test=True
    )
    logits, target = _batch(*EXTRAS_CASE)
    default, one_pass, separately = XentMetrics(n_bins=15), options.xent_metrics(), options.xent_metrics()
    fed, own = options.extras(), options.extras()
    timings = time_ratios(
        {
            "default": lambda: default.update(logits, target),
            "one_pass": lambda: one_pass.update(logits, target, extras=list(fed.values())),
            "separately": lambda: (
                [separately.update(logits, target)] + [e.update(logits, target) for e in own.values()]
            ),
            **{f"only_{name}": _one_extra_update(options, name, logits, target) for name in fed},
        },
        reps,
        baseline="default",
    )
    return {"rows": EXTRAS_CASE[0], "classes": EXTRAS_CASE[1], "extras": sorted(fed), "timings": timings}


def _one_extra_update(options, name: str, logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    metric, extra = options.xent_metrics(), options.extras()[name]
    return lambda: metric.update(logits, target, extras=[extra])


# ---- host syncs per update -----------------------------------------------------------------------------------


def bench_host_syncs() -> dict:
    from torch.utils._python_dispatch import TorchDispatchMode

    from tests.metrics._metric_cases import CASES

    class Counter(TorchDispatchMode):
        @classmethod
        def ignore_compile_internals(cls) -> bool:
            return True

        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            boolean_index = name.startswith("index") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for i in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else [])
            )
            self.count += name in SYNCING_OPS or boolean_index
            return func(*args, **(kwargs or {}))

    results = {}
    for case in CASES:
        preds, target = case.make_batch(64, 0)
        counts = {}
        for validate_args in (False, True):
            metric = case.make_metric(validate_args=validate_args)
            metric.update(preds, target)
            with Counter() as counter:
                metric.update(preds, target)
            counts[f"validate_args={validate_args}"] = counter.count
        results[case.name] = counts
    return results


# ---- peak memory, one fresh subprocess per measurement -------------------------------------------------------


def _memory_status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}


def _probe_memory(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    shape = spec["shape"]
    classes = shape[-1]
    logits = torch.randn(*shape)
    target = torch.randint(0, classes, shape[:-1])
    class_dim = -1 if len(shape) == 3 else 1
    if spec["method"] in ("fused", "eager"):
        metric = XentMetrics(n_bins=15, class_dim=class_dim)
        run = _our_update(metric, "on" if spec["method"] == "fused" else "off", logits, target)
    elif spec["method"] == "cross_entropy":

        def run():
            return F.cross_entropy(logits.view(-1, classes), target.view(-1))
    else:
        way = TorchmetricsWay(classes)

        def run():
            return way.update(logits.view(-1, classes), target.view(-1))

    run()  # warm up: compile, first-touch of lazily allocated state
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory_status()
    run()
    after = _memory_status()
    return {"peak_extra_bytes": after["VmHWM"] - before["VmRSS"]}


def _hidden_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    tokens, width, vocab = HIDDEN_CASE["tokens"], HIDDEN_CASE["width"], HIDDEN_CASE["vocab"]
    hidden = torch.randn(1, tokens, width, generator=g)
    head = torch.randn(vocab, width, generator=g) / width**0.5
    return hidden, head, torch.randint(0, vocab, (1, tokens), generator=g)


def _hidden_methods(hidden, head, target) -> dict[str, Callable[[], None]]:
    from_hidden, materialised = XentMetrics(n_bins=15), XentMetrics(n_bins=15, class_dim=-1)
    return {
        "hidden": lambda: from_hidden.update_from_hidden(hidden, head, target),
        "materialised": lambda: materialised.update(hidden @ head.T, target),
    }


def _probe_hidden_memory(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    run = _hidden_methods(*_hidden_inputs())[spec["method"]]
    run()
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory_status()
    run()
    after = _memory_status()
    return {"peak_extra_bytes": after["VmHWM"] - before["VmRSS"]}


def bench_hidden(threads: int, reps: int) -> dict:
    hidden, head, target = _hidden_inputs()
    timings = time_ratios(_hidden_methods(hidden, head, target), reps, baseline="materialised")
    memory = {
        method: _run_probe("hidden_memory", {"method": method, "threads": threads})["peak_extra_bytes"]
        for method in ("hidden", "materialised")
    }
    logits_bytes = HIDDEN_CASE["tokens"] * HIDDEN_CASE["vocab"] * 4
    return {**HIDDEN_CASE, "logits_bytes": logits_bytes, "timings": timings, "peak_extra_bytes": memory}


def _probe_compile(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    times = {}
    for classes in spec["classes"]:
        logits, target = _batch(64, classes)
        metric = XentMetrics(n_bins=15)
        started = time.perf_counter()
        _our_update(metric, "on", logits, target)()
        times[str(classes)] = time.perf_counter() - started
    return times


def _run_probe(kind: str, spec: dict, env: dict[str, str] | None = None) -> dict:
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", **(env or {})}
    result = subprocess.run(
        [sys.executable, __file__, "--probe", kind, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_memory(threads: int) -> dict:
    results = {}
    shapes = {f"{rows}x{classes}": [rows, classes] for rows, classes in CASES}
    # Token layout with a 32k vocabulary at two lengths: the extra memory must not grow with N.
    shapes.update({"tokens_1x2048x32000": [1, 2048, 32000], "tokens_4x2048x32000": [4, 2048, 32000]})
    for name, shape in shapes.items():
        methods = (
            ("eager", "fused") if name.startswith("tokens") else ("eager", "fused", "cross_entropy", "torchmetrics")
        )
        logits_bytes = 4 * torch.Size(shape).numel()
        results[name] = {"logits_bytes": logits_bytes}
        for method in methods:
            probe = _run_probe("memory", {"shape": shape, "method": method, "threads": threads})
            results[name][method] = probe["peak_extra_bytes"]
    return results


def bench_compile(threads: int) -> dict:
    classes = [classes for _, classes in CASES]
    with tempfile.TemporaryDirectory() as cache:
        env = {"TORCHINDUCTOR_CACHE_DIR": cache}
        cold = _run_probe("compile", {"classes": classes, "threads": threads}, env)
        warm = _run_probe("compile", {"classes": classes, "threads": threads}, env)
    return {"cold_cache_s": cold, "warm_cache_s": warm}


# ---- state size ----------------------------------------------------------------------------------------------


def bench_state_bytes() -> dict:
    results = {}
    for samples in (10**3, 10**7):
        ours, theirs = XentMetrics(n_bins=15), TorchmetricsWay(4)
        step = min(samples, 10**6)
        for start in range(0, samples, step):
            logits, target = _batch(step, 4, seed=start)
            ours.update(logits, target)
            theirs.calibration.update(logits.softmax(dim=1), target)
        results[str(samples)] = {
            "ours": ours.state_bytes(),
            "torchmetrics_calibration": _state_bytes(theirs.calibration),
        }
    return results


# ---- distributed compute ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _count_collectives(counts: dict[str, int]) -> Callable[[], None]:
    import torch.distributed as dist

    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def counting(name):
        def collective(*args, **kwargs):
            counts[name] += 1
            return originals[name](*args, **kwargs)

        return collective

    for name in COLLECTIVES:
        setattr(dist, name, counting(name))
    return lambda: [setattr(dist, name, original) for name, original in originals.items()]


def _distributed_worker(rank: int, world_size: int, port: int, samples: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        logits, target = _batch(samples // world_size, 10, seed=rank)
        ours, theirs = XentMetrics(n_bins=15), TorchmetricsWay(10)
        ours.update(logits, target)
        theirs.update(logits, target)
        results = {}
        for name, compute, metrics in (
            ("ours", ours.compute, [ours]),
            ("torchmetrics", theirs.compute, theirs.metrics()),
        ):
            counts = dict.fromkeys(COLLECTIVES, 0)
            restore = _count_collectives(counts)
            compute()
            restore()
            dist.barrier()
            results[name] = {"collectives": counts, "compute_s": _time_compute(compute, metrics)}
        if rank == 0:
            Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def bench_distributed(samples: int = 10**6) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as directory:
        out = str(Path(directory) / "rank0.json")
        mp.start_processes(
            _distributed_worker, args=(2, _free_port(), samples, out), nprocs=2, start_method="spawn", join=True
        )
        results = json.loads(Path(out).read_text())
    results["samples"] = samples
    return results


# ---- time against vocabulary size ---------------------------------------------------------------------------


def bench_vocabulary(reps: int) -> list[dict]:
    rows_out = []
    for classes in VOCAB_SIZES:
        logits, target = _batch(VOCAB_BUDGET // classes, classes)
        ours, theirs = XentMetrics(n_bins=15), TorchmetricsWay(classes)
        timings = time_ratios(_methods(logits, target, ours, theirs), reps, baseline="cross_entropy")
        rows_out.append({"classes": classes, "rows": logits.shape[0], "timings": timings})
        print(f"  V={classes:>6}: " + "  ".join(f"{k} {v['ratio']:.2f}x" for k, v in timings.items()), flush=True)
    return rows_out


def plot_vocabulary(points: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = {
        "torchmetrics": "torchmetrics way",
        "cross_entropy": "F.cross_entropy alone",
        "ours_eager": "xent_plugin, eager",
        "ours_fused": "xent_plugin, fused (torch.compile)",
    }
    sizes = [point["classes"] for point in points]
    for method, label in labels.items():
        ax.plot(sizes, [p["timings"][method]["seconds"] * 1e3 for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s // 1000}k" for s in sizes])
    ax.set_xlabel(f"vocabulary size V (N = {VOCAB_BUDGET:,} / V rows)")
    ax.set_ylabel("ms per update (median)")
    ax.set_ylim(bottom=0)
    ax.set_title("Full-set update, fp32 logits, hard targets", fontsize=10)
    ax.text(0.01, 0.01, machine, transform=ax.transAxes, fontsize=7, color="gray")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- report ------------------------------------------------------------------------------------------------


def machine_description(threads: int) -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f}"


def print_report(report: dict) -> None:
    print(f"\nMachine: {report['machine']}; medians of {report['reps']} interleaved repetitions")
    print(f"\nDefault XentMetrics.update against the floor (target <= {FLOOR_TARGET}x):")
    for name, row in report["floor"].items():
        t = row["timings"]
        print(
            f"  {name:>34}: ours {t['ours']['ratio']:.2f}x floor, eager {t['ours_eager']['ratio']:.2f}x, "
            f"F.cross_entropy {t['cross_entropy']['ratio']:.2f}x; ours / F.cross_entropy "
            f"{row['ours_vs_cross_entropy']:.2f}  -> {'PASS' if row['pass'] else 'FAIL'}"
        )
    e = report["extras"]
    t = e["timings"]
    print(
        f"\nEvery extra on ({', '.join(e['extras'])}), {e['rows']} x {e['classes']}, time / the default set's update:"
        f" one pass {t['one_pass']['ratio']:.2f}, a pass per extra {t['separately']['ratio']:.2f}; one extra: "
        + ", ".join(f"{k[5:]} {v['ratio']:.2f}" for k, v in t.items() if k.startswith("only_"))
    )
    print("\nHost syncs per update (validate_args=False / True):")
    for name, counts in report["host_syncs"].items():
        print(f"  {name}: {counts['validate_args=False']} / {counts['validate_args=True']}")
    if "hidden" in report:
        h = report["hidden"]
        print(
            f"\nHidden states {h['tokens']} tokens x width {h['width']} -> V = {h['vocab']:,} "
            f"(logits {_mib(h['logits_bytes'])} MiB): peak extra MiB hidden path "
            f"{_mib(h['peak_extra_bytes']['hidden'])}, materialised + XentMetrics "
            f"{_mib(h['peak_extra_bytes']['materialised'])}; time hidden / materialised "
            f"{h['timings']['hidden']['ratio']:.2f}"
        )
    header = (
        f"{'case':>12} | {'CE ms':>7} | {'exp':>5} | {'fused':>5} | {'eager':>5} | {'tm':>6} | "
        f"{'tm/fused':>8} | {'tm/eager':>8} | {'load':>9} | targets (eager<=1.5, fused<=0.6, tm/fused>=5)"
    )
    print(header)
    print("-" * len(header))
    for case in report["cases"]:
        t = case["timings"]
        verdict = " ".join(f"{name}:{'PASS' if ok else 'FAIL'}" for name, ok in case["pass"].items())
        load = case["load_average"]
        print(
            f"{case['rows']:>6}x{case['classes']:<5} | {t['cross_entropy']['seconds'] * 1e3:7.1f} | "
            f"{t['exp']['ratio']:5.2f} | {t['ours_fused']['ratio']:5.2f} | {t['ours_eager']['ratio']:5.2f} | "
            f"{t['torchmetrics']['ratio']:6.2f} | {case['torchmetrics_vs_fused']:8.1f} | "
            f"{case['torchmetrics_vs_eager']:8.1f} | {load[0]:4.1f}-{load[1]:<4.1f} | {verdict}"
        )
    print(
        "(exp, fused, eager, tm: time / F.cross_entropy time on the same tensor; load: 1-min load average before and"
        " after the case, on a machine with os.cpu_count() cores)"
    )
    print("\ncompute() single process, ms:")
    for case in report["cases"]:
        c = case["compute_s"]
        print(
            f"  {case['rows']}x{case['classes']}: ours {c['ours'] * 1e3:.3f},"
            f" torchmetrics {c['torchmetrics'] * 1e3:.3f}"
            f" ({c['torchmetrics_samples_kept']:,} samples kept)"
        )
    if "memory" in report:
        print("\nPeak extra resident memory during one update, MiB (logits tensor size in brackets):")
        for name, row in report["memory"].items():
            cells = ", ".join(f"{k} {_mib(v)}" for k, v in row.items() if k not in ("logits_bytes", "pass"))
            print(f"  {name} [{_mib(row['logits_bytes'])}]: {cells}  -> {'PASS' if row['pass'] else 'FAIL'}")
    state = report["state_bytes"]
    print(
        "\nState bytes: "
        + "; ".join(
            f"N={int(n):.0e}: ours {s['ours']:,}, torchmetrics calibration {s['torchmetrics_calibration']:,}"
            for n, s in state.items()
        )
    )
    if "compile" in report:
        c = report["compile"]
        print(
            "Compile time of the fused pass, s (per class count): cold cache "
            + ", ".join(f"C={k}: {v:.1f}" for k, v in c["cold_cache_s"].items())
            + "; warm cache "
            + ", ".join(f"C={k}: {v:.1f}" for k, v in c["warm_cache_s"].items())
        )
    if "distributed" in report:
        d = report["distributed"]
        for name in ("ours", "torchmetrics"):
            counts = {k: v for k, v in d[name]["collectives"].items() if v}
            print(
                f"2-process gloo compute() with {d['samples']:,} samples: {name} {d[name]['compute_s'] * 1e3:.2f} ms,"
                f" collectives {counts}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=REPO / "bench_results" / "bench.json", help="where the JSON goes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=11, help="interleaved repetitions per method")
    parser.add_argument("--quick", action="store_true", help="5 repetitions; skip memory, compile and distributed")
    parser.add_argument("--plot", action="store_true", help="also time against vocabulary size and draw it")
    parser.add_argument("--plot-path", type=Path, default=REPO / "docs" / "bench_vocab.png")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        kind, spec = args.probe
        probe = {"memory": _probe_memory, "compile": _probe_compile, "hidden_memory": _probe_hidden_memory}[kind]
        print(json.dumps(probe(json.loads(spec))))
        return

    torch.set_num_threads(args.threads)
    reps = 5 if args.quick else args.reps
    report = {"machine": machine_description(args.threads), "threads": args.threads, "reps": reps, "cases": []}
    print("against the floor (compiled logsumexp) ...", flush=True)
    report["floor"] = bench_floor(reps)
    print("every extra on ...", flush=True)
    report["extras"] = bench_extras(max(3, reps // 2))
    print("host syncs per update ...", flush=True)
    report["host_syncs"] = bench_host_syncs()
    for rows, classes in CASES:
        print(f"timing {rows}x{classes} ...", flush=True)
        report["cases"].append(bench_case(rows, classes, reps))
    print("state bytes ...", flush=True)
    report["state_bytes"] = bench_state_bytes()
    if not args.quick:
        print("peak memory (a subprocess per figure) ...", flush=True)
        memory = bench_memory(args.threads)
        for name, row in memory.items():
            ours = max(row["eager"], row["fused"])
            bound = TOKEN_CAP_MIB * 2**20 if name.startswith("tokens") else row["logits_bytes"]
            row["pass"] = ours <= min(bound, row["logits_bytes"])
        report["memory"] = memory
        print("compile time (subprocesses, fresh inductor cache) ...", flush=True)
        report["compile"] = bench_compile(args.threads)
        print("distributed compute (2 gloo processes) ...", flush=True)
        report["distributed"] = bench_distributed()
        print("hidden-state path at V = 128k ...", flush=True)
        report["hidden"] = bench_hidden(args.threads, max(3, reps // 2))
    if args.plot:
        print("time against vocabulary size ...", flush=True)
        report["vocabulary"] = bench_vocabulary(max(3, reps // 2))
        plot_vocabulary(report["vocabulary"], args.plot_path, report["machine"])
        print(f"wrote {args.plot_path}")
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
