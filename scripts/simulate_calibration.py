"""Calibration estimators and intervals against a known truth (issue 14).

    .venv/bin/python scripts/simulate_calibration.py            # docs/calibration_simulation.{md,json}
    .venv/bin/python scripts/simulate_calibration.py --quick    # fewer replications and sizes, printed only

Data with a known truth:

- **Beta settings.** Confidence c = 0.1 + 0.9 Beta(a, b) and correctness a ~ Bernoulli(g(c)) with g set
  analytically, so the true l1 error (ECE) E|g(c) - c| and l2 error sqrt(E(g(c) - c)^2) are one-dimensional
  integrals, computed by quadrature. As multiclass predictions: class 0 has probability c and the other nine
  (1 - c) / 9, and the label is 0 when correct, 1 otherwise; the cross-entropy and accuracy are integrals too.
- **Dirichlet settings.** Ten-class probabilities p ~ Dirichlet(1, ..., 1), confidence c = max p. Calibrated:
  the label is drawn from p. Miscalibrated: the top class is the label with probability g(c) = c^1.5, otherwise
  the label is drawn from the other classes in proportion to p. P(max p <= x) = sum_k (-1)^k C(10, k)
  (1 - kx)_+^9, so the truths are again integrals (and E[H(p)] = psi(11) - psi(2) for the calibrated
  cross-entropy).

Each replication draws N rows and computes every estimator through the package's own functions on its
fixed-size states. Reported per setting and N: bias and RMSE of each estimator against its target (the l1
estimators against the true ECE, the l2 ones against the true l2 error), the coverage of each 95 % interval,
the rejection rate of the calibration test at alpha = 0.05, and the Poisson-bootstrap coverage of
cross-entropy and accuracy for several numbers of replicates B. Also the temperature scan against scipy on the
real CIFAR outputs in ../shared/data, when they are there.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, special

from xent_plugin.functional.adaptive_calibration_error import _adaptive_calibration_error_compute, equal_mass_bins
from xent_plugin.functional.bootstrap import (
    _bootstrap_intervals_compute,
    _percentiles,
    bootstrap_stats,
    poisson_weights,
)
from xent_plugin.functional.calibration_error import _calibration_error_compute
from xent_plugin.functional.calibration_test import _calibration_test_compute, residual_bins
from xent_plugin.functional.debiased_calibration_error import _debiased_calibration_error_compute
from xent_plugin.functional.smooth_calibration_error import _smooth_calibration_error_compute
from xent_plugin.functional.softmax_stats import reliability_bins

CLASSES = 10
ALPHA = 0.05
ECE_BOOTSTRAP_REPLICATES = 1000  # BootstrapIntervals' default
DOCS = Path(__file__).resolve().parent.parent / "docs"
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "beta" or "dirichlet"
    gap: str  # the accuracy function g, by name (GAPS)
    a: float = 1.0
    b: float = 1.0

    @property
    def calibrated(self) -> bool:
        return self.gap == "calibrated"


GAPS = {
    "calibrated": lambda c: c,
    "overconfident_slightly": lambda c: c**1.25,
    "overconfident": lambda c: c**2,
    "underconfident": lambda c: c**0.7,
    "sign_changing": lambda c: c + 0.08 * np.sin(2 * np.pi * (c - 0.1) / 0.9),
    "dirichlet_overconfident": lambda c: c**1.5,
}

SETTINGS = [
    Setting("peaked, calibrated", "beta", "calibrated", 5, 1),
    Setting("spread, calibrated", "beta", "calibrated", 2, 2),
    Setting("peaked, slightly overconfident", "beta", "overconfident_slightly", 5, 1),
    Setting("peaked, overconfident", "beta", "overconfident", 5, 1),
    Setting("spread, underconfident", "beta", "underconfident", 2, 2),
    Setting("spread, sign-changing gap", "beta", "sign_changing", 2, 2),
    Setting("Dirichlet, calibrated", "dirichlet", "calibrated"),
    Setting("Dirichlet, overconfident", "dirichlet", "dirichlet_overconfident"),
]


def confidence_density(setting: Setting):
    """The density of the confidence c and its support."""
    if setting.kind == "beta":
        beta = special.beta(setting.a, setting.b)

        def density(c):
            x = (c - 0.1) / 0.9
            return x ** (setting.a - 1) * (1 - x) ** (setting.b - 1) / beta / 0.9

        return density, (0.1, 1.0), []

    def density(c):
        # d/dx of sum_k (-1)^k C(n, k) (1 - kx)_+^(n-1), the law of the largest of n uniform-simplex coordinates.
        n = CLASSES
        return sum(
            (-1) ** (k + 1) * math.comb(n, k) * k * (n - 1) * max(1 - k * c, 0.0) ** (n - 2) for k in range(1, n + 1)
        )

    return density, (1 / CLASSES, 1.0), [1 / k for k in range(2, CLASSES)]


def truths(setting: Setting) -> dict[str, float]:
    """True ECE, l2 error, accuracy and (where it is an integral) cross-entropy, by quadrature."""
    density, (low, high), breaks = confidence_density(setting)
    g = GAPS[setting.gap]

    def expect(function) -> float:
        value, _ = integrate.quad(lambda c: function(c) * density(c), low, high, points=breaks or None, limit=200)
        return value

    result = {
        "ece": expect(lambda c: abs(g(c) - c)),
        "l2": math.sqrt(expect(lambda c: (g(c) - c) ** 2)),
        "accuracy": expect(g),
        "mass": expect(lambda c: 1.0),
    }
    if setting.kind == "beta":
        result["cross_entropy"] = expect(lambda c: -g(c) * math.log(c) - (1 - g(c)) * math.log((1 - c) / (CLASSES - 1)))
    elif setting.calibrated:
        result["cross_entropy"] = float(special.digamma(CLASSES + 1) - special.digamma(2))
    return result


def sample(setting: Setting, rows: int, rng: np.random.Generator):
    """Confidence, correctness and per-row cross-entropy of ``rows`` draws."""
    g = GAPS[setting.gap]
    if setting.kind == "beta":
        confidence = 0.1 + 0.9 * rng.beta(setting.a, setting.b, rows)
        correct = (rng.random(rows) < g(confidence)).astype(np.float64)
        loss = np.where(correct > 0, -np.log(confidence), -np.log((1 - confidence) / (CLASSES - 1)))
        return confidence, correct, loss
    probs = rng.dirichlet(np.ones(CLASSES), rows)
    top = probs.argmax(axis=1)
    confidence = probs[np.arange(rows), top]
    if setting.calibrated:
        cumulative = probs.cumsum(axis=1)
        labels = (rng.random(rows)[:, None] > cumulative).sum(axis=1).clip(max=CLASSES - 1)
    else:
        others = probs.copy()
        others[np.arange(rows), top] = 0
        cumulative = (others / others.sum(axis=1, keepdims=True)).cumsum(axis=1)
        other = (rng.random(rows)[:, None] > cumulative).sum(axis=1).clip(max=CLASSES - 1)
        labels = np.where(rng.random(rows) < g(confidence), top, other)
    correct = (labels == top).astype(np.float64)
    loss = -np.log(probs[np.arange(rows), labels])
    return confidence, correct, loss


def estimates(confidence: np.ndarray, correct: np.ndarray, smooth: bool) -> dict[str, float]:
    """Every estimator, interval and the test, from the package's states of one evaluation set (smECE, whose
    bandwidth search costs about 0.15 s, only when ``smooth``)."""
    c, a = torch.from_numpy(confidence), torch.from_numpy(correct)
    fine = reliability_bins(c, a, 4096)
    equal_width = reliability_bins(c, a, 15)
    test = _calibration_test_compute(residual_bins(c, a, 15))
    return {
        "ece_15_equal_width": float(_calibration_error_compute(equal_width, "l1")),
        "ece_adaptive": float(_adaptive_calibration_error_compute(fine, 15, "l1")),
        "smooth_ece": float(_smooth_calibration_error_compute(fine)[0]) if smooth else float("nan"),
        "debiased_l2_equal_mass": float(_debiased_calibration_error_compute(equal_mass_bins(fine, 15))),
        "debiased_l2_equal_width": float(test["l2"]),
        "l2_lower": float(test["l2_lower"]),
        "l2_upper": float(test["l2_upper"]),
        "p_value": float(test["p_value"]),
    }


L1_ESTIMATORS = ("ece_15_equal_width", "ece_adaptive", "smooth_ece")
L2_ESTIMATORS = ("debiased_l2_equal_mass", "debiased_l2_equal_width")


def bootstrap_ece_coverage(setting, truth, rows, replications, num_replicates, rng) -> float:
    """Coverage of the true ECE by BootstrapIntervals' ECE interval (15 equal-width bins), Beta settings."""
    covered = 0
    for _ in range(replications):
        confidence, correct, _ = sample(setting, rows, rng)
        probs = np.empty((rows, CLASSES))
        probs[:, 0] = confidence
        probs[:, 1:] = ((1 - confidence) / (CLASSES - 1))[:, None]
        labels = np.where(correct > 0, 0, 1)
        stats = bootstrap_stats(
            torch.from_numpy(np.log(probs)), torch.from_numpy(labels), num_replicates=num_replicates, n_bins=15
        )
        result = _bootstrap_intervals_compute(stats)
        covered += float(result["ece_lower"]) <= truth <= float(result["ece_upper"])
    return covered / replications


def bootstrap_mean_coverage(setting, truth, rows, replications, replicate_counts, rng) -> dict[str, dict[int, float]]:
    """Coverage of the true cross-entropy and accuracy by the Poisson-bootstrap percentile interval at each B.

    The weights are the package's, for rows 0..N-1 with seed 0 (those of a fresh metric); replicate b's weights do
    not depend on B, so the first B of the largest set are the weights of a metric with B replicates.
    """
    weights = poisson_weights(torch.arange(rows), max(replicate_counts)).numpy()
    draws = [sample(setting, rows, rng) for _ in range(replications)]
    result = {}
    for name, column in (("cross_entropy", 2), ("accuracy", 1)):
        if name not in truth:
            continue
        values = np.stack([draw[column] for draw in draws], axis=1)  # (rows, replications)
        replicate_means = torch.from_numpy((weights @ values) / weights.sum(axis=1, keepdims=True))
        result[name] = {}
        for count in replicate_counts:
            lower, upper = _percentiles(replicate_means[:count], 0.95)
            inside = (lower <= truth[name]) & (truth[name] <= upper)
            result[name][count] = float(inside.double().mean())
    return result


def simulate(
    sizes,
    replications,
    smooth_replications,
    bootstrap_sizes,
    bootstrap_replications,
    replicate_counts,
    ece_replicates,
    seed,
):
    rng = np.random.default_rng(seed)
    report = []
    for setting in SETTINGS:
        truth = truths(setting)
        assert abs(truth["mass"] - 1) < 1e-8, (setting, truth["mass"])
        for rows in sizes:
            reps = replications[rows]
            values = {key: [] for key in (*L1_ESTIMATORS, *L2_ESTIMATORS, "l2_lower", "l2_upper", "p_value")}
            start = time.perf_counter()
            for replication in range(reps):
                confidence, correct, _ = sample(setting, rows, rng)
                for key, value in estimates(confidence, correct, replication < smooth_replications).items():
                    values[key].append(value)
            arrays = {key: np.array(value) for key, value in values.items()}
            cell = {"setting": setting.name, "rows": rows, "replications": reps, "truth": truth}
            for key in (*L1_ESTIMATORS, *L2_ESTIMATORS):
                target = truth["ece"] if key in L1_ESTIMATORS else truth["l2"]
                error = arrays[key][np.isfinite(arrays[key])] - target
                if len(error):
                    cell[key] = {
                        "bias": float(error.mean()),
                        "rmse": float(np.sqrt((error**2).mean())),
                        "n": len(error),
                    }
            lower, upper = arrays["l2_lower"], arrays["l2_upper"]
            cell["l2_interval_coverage"] = float(((lower <= truth["l2"]) & (truth["l2"] <= upper)).mean())
            cell["ece_upper_bound_coverage"] = float((truth["ece"] <= upper).mean())
            cell["l2_interval_width"] = float((upper - lower).mean())
            cell["rejection_rate"] = float((arrays["p_value"] < ALPHA).mean())
            if rows in bootstrap_sizes and bootstrap_replications:
                cell["bootstrap"] = bootstrap_mean_coverage(
                    setting, truth, rows, bootstrap_replications, replicate_counts, rng
                )
                if setting.kind == "beta":
                    cell["bootstrap_ece_coverage"] = bootstrap_ece_coverage(
                        setting, truth["ece"], rows, ece_replicates[rows], ECE_BOOTSTRAP_REPLICATES, rng
                    )
            cell["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(cell), flush=True)
            report.append(cell)
    return report


def temperature_scan_check() -> list[dict[str, float]]:
    """The scan's T* and calibrated NLL against scipy on netcal's CIFAR outputs, logits scaled 0.3 to 3."""
    from scipy.optimize import minimize_scalar

    from xent_plugin.functional.temperature_scan import temperature_scan

    rows = []
    for path in sorted(SHARED_DATA.glob("*.npz")):
        data = np.load(path)
        log_probs, labels = np.log(data["predictions"].astype(np.float64)), data["ground_truth"]
        index = np.arange(len(labels))
        for scale in (0.3, 0.7, 1.0, 1.4, 3.0):
            scores = scale * log_probs

            def nll(log_temperature, scores=scores, index=index, labels=labels):
                scaled = scores / np.exp(log_temperature)
                return float(np.mean(special.logsumexp(scaled, axis=1) - scaled[index, labels]))

            best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50)), method="bounded", options={"xatol": 1e-12})
            result = temperature_scan(torch.from_numpy(scores), torch.from_numpy(labels))
            rows.append(
                {
                    "file": path.name,
                    "scale": scale,
                    "scipy_temperature": float(np.exp(best.x)),
                    "temperature_relative_error": float(result["temperature"]) / float(np.exp(best.x)) - 1,
                    "nll_relative_error": float(result["calibrated_nll"]) / float(best.fun) - 1,
                }
            )
    return rows


def markdown(report, replicate_counts, scan) -> str:
    lines = [
        "# Calibration simulation (generated by `scripts/simulate_calibration.py`)",
        "",
        "Bias and RMSE against the truth (l1 estimators against the true ECE, l2 ones against the true l2 error),",
        "coverage of the 95 % interval of the l2 error (`calibration_test`), coverage of the true ECE by its upper",
        "end, and the calibration test's rejection rate at alpha = 0.05.",
        "",
        "| setting | N | true ECE | true l2 | 15-bin ECE bias / RMSE | adaptive ECE | smooth ECE | debiased l2 "
        "(equal-mass) | debiased l2 (equal-width, U-stat) | l2 interval coverage | ECE bound coverage | "
        "rejection rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in report:

        def pair(key, cell=cell):
            return f"{cell[key]['bias']:+.4f} / {cell[key]['rmse']:.4f}" if key in cell else "—"

        lines.append(
            f"| {cell['setting']} | {cell['rows']:.0e} | {cell['truth']['ece']:.4f} | {cell['truth']['l2']:.4f} | "
            f"{pair('ece_15_equal_width')} | {pair('ece_adaptive')} | {pair('smooth_ece')} | "
            f"{pair('debiased_l2_equal_mass')} | {pair('debiased_l2_equal_width')} | "
            f"{cell['l2_interval_coverage']:.3f} | {cell['ece_upper_bound_coverage']:.3f} | "
            f"{cell['rejection_rate']:.3f} |"
        )
    counts = " | ".join(f"B = {count}" for count in replicate_counts)
    lines += [
        "",
        "Poisson-bootstrap coverage of the true cross-entropy and accuracy (95 % percentile interval), and of the",
        f"true ECE by the 15-bin bootstrap ECE interval (B = {ECE_BOOTSTRAP_REPLICATES}, last column):",
        "",
        f"| setting | N | quantity | {counts} |",
        "|---|---|---|" + "---|" * len(replicate_counts),
    ]
    for cell in report:
        for name, coverage in cell.get("bootstrap", {}).items():
            values = " | ".join(f"{coverage[count]:.3f}" for count in replicate_counts)
            lines.append(f"| {cell['setting']} | {cell['rows']:.0e} | {name} | {values} |")
        if "bootstrap_ece_coverage" in cell:
            blank = " | ".join("" for _ in replicate_counts[:-1])
            lines.append(
                f"| {cell['setting']} | {cell['rows']:.0e} | ECE | {blank} | {cell['bootstrap_ece_coverage']:.3f} |"
            )
    if scan:
        lines += [
            "",
            "Temperature scan against scipy (full files, log-probabilities scaled):",
            "",
            "| file | scale | scipy T* | T relative error | NLL relative error |",
            "|---|---|---|---|---|",
        ]
        for row in scan:
            lines.append(
                f"| {row['file']} | {row['scale']} | {row['scipy_temperature']:.4f} | "
                f"{row['temperature_relative_error']:+.1e} | {row['nll_relative_error']:+.1e} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications and sizes; print, write nothing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        sizes, replications, smooth_replications = (1000,), {1000: 100}, 20
        bootstrap_sizes, bootstrap_replications, ece_replicates = (1000,), 200, {1000: 20}
        replicate_counts = (200, 1000)
    else:
        sizes, replications, smooth_replications = (1000, 10_000, 100_000), {1000: 600, 10_000: 400, 100_000: 100}, 60
        bootstrap_sizes, bootstrap_replications, ece_replicates = (1000, 10_000), 1000, {1000: 100, 10_000: 20}
        replicate_counts = (200, 500, 1000, 2000)
    start = time.perf_counter()
    report = simulate(
        sizes,
        replications,
        smooth_replications,
        bootstrap_sizes,
        bootstrap_replications,
        replicate_counts,
        ece_replicates,
        args.seed,
    )
    scan = [] if args.quick else temperature_scan_check()
    text = markdown(report, replicate_counts, scan)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    if not args.quick:
        DOCS.joinpath("calibration_simulation.md").write_text(text)
        payload = {"cells": report, "temperature_scan": scan, "seed": args.seed}
        DOCS.joinpath("calibration_simulation.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
