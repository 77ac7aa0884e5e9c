"""Streaming calibration estimators beyond equal-width ECE: adaptive, debiased, smooth and class-wise.

The first four keep one fine confidence histogram (3 x 4096 float64 sums by default), so they stream, merge
across devices in one all-reduce, and can all be computed from the same state: :class:`CalibrationEstimators`
does exactly that. The class-wise error needs a histogram per class and is separate.
"""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._layout import normalize_class_dim
from xent_plugin.functional._validation import (
    NORMS,
    check_choice,
    check_flag,
    check_int,
    check_n_bins,
)
from xent_plugin.functional.adaptive_calibration_error import (
    _adaptive_calibration_error_compute,
    equal_mass_bins,
    equal_mass_error_bound,
    equal_mass_reliability_table,
)
from xent_plugin.functional.calibration_error import AVERAGES, _calibration_error_average
from xent_plugin.functional.classwise_calibration_error import _classwise_calibration_error_compute, classwise_bins
from xent_plugin.functional.confidence_histogram import FINE_CELLS, confidence_histogram
from xent_plugin.functional.debiased_calibration_error import BINNINGS, _debiased_calibration_error_compute
from xent_plugin.functional.smooth_calibration_error import (
    MIN_BANDWIDTH,
    _smooth_calibration_error_compute,
    smooth_reliability_curve,
)
from xent_plugin.functional.softmax_stats import RowStatistics, rows_reliability_bins
from xent_plugin.metrics.base import ScoresMetric
from xent_plugin.metrics.task_metric import TaskMetric


class ConfidenceHistogramMetric(TaskMetric):
    """Accumulates the fine confidence histogram ``histogram``: (3, n_cells) float64 sums of count, confidence
    and correctness per equal-width cell, or (3, num_labels, n_cells) for multilabel.

    Args:
        n_bins: the bins of the estimate that subclasses compute from the histogram.
        n_cells: cells of the fine histogram (default 4096); the state is ``3 * n_cells`` float64 numbers.
        average: multilabel only, ``"macro"`` (mean over labels) or ``"none"`` (one value per label).
        **kwargs: the arguments of :class:`~xent_plugin.metrics.task_metric.TaskMetric`.
    """

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        task: str = "multiclass",
        n_bins: int = 15,
        n_cells: int = FINE_CELLS,
        average: str = "macro",
        **kwargs,
    ) -> None:
        super().__init__(task=task, **kwargs)
        check_n_bins(n_bins)
        check_n_bins(n_cells, "n_cells")
        check_choice("average", average, AVERAGES)
        self.n_bins = n_bins
        self.n_cells = n_cells
        self.average = average
        shape = (3, self.num_labels, n_cells) if task == "multilabel" else (3, n_cells)
        self.add_sum_state("histogram", shape)

    def update(self, preds: Tensor, target: Tensor) -> None:
        if self.validate_args and self.task == "multilabel" and preds.shape[-1] != self.num_labels:
            raise ValueError(
                f"`preds` of shape {tuple(preds.shape)} has {preds.shape[-1]} labels, expected num_labels="
                f"{self.num_labels}."
            )
        self.histogram += confidence_histogram(
            preds,
            target,
            task=self.task,
            n_cells=self.n_cells,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            calibration_mode=self.calibration_mode,
            validate_args=self.validate_args,
        )

    def update_from_rows(self, rows: RowStatistics) -> None:
        """Update from per-row statistics of another multiclass pass over the batch (XentMetrics' ``extras``)."""
        if self.task != "multiclass" or self.calibration_mode != "top_label":
            raise ValueError(
                "`update_from_rows` takes the top-label rows of a softmax pass: it needs task='multiclass' and "
                f"calibration_mode='top_label', got task={self.task!r}, calibration_mode={self.calibration_mode!r}."
            )
        self.histogram += rows_reliability_bins(rows, self.n_cells)

    def _average(self, per_label: Tensor) -> Tensor:
        return _calibration_error_average(per_label, self.average)


class AdaptiveCalibrationError(ConfidenceHistogramMetric):
    r"""Adaptive (equal-mass) calibration error: ECE, RMSCE or MCE over ``n_bins`` bins of equal sample count.

    With :math:`N` samples sorted by confidence and cut into :math:`M` bins of (nearly) equal size,
    :math:`\mathrm{ECE} = \sum_m \frac{n_m}{N} |\bar a_m - \bar c_m|` (``norm="l1"``; ``"l2"`` and ``"max"`` as in
    :class:`~xent_plugin.metrics.calibration_error.CalibrationError`). Equal-mass bins put resolution where the
    samples are; in the simulation of ``docs/calibration.md`` they were more biased than 15 equal-width bins for
    calibrated models, and no better elsewhere.

    The bins are cut from the fine histogram; :meth:`error_bound` bounds the distance to exact equal-mass
    binning of the same samples (see :mod:`~xent_plugin.functional.adaptive_calibration_error`).

    Args:
        n_bins: equal-mass bins (default 15).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        **kwargs: as in :class:`ConfidenceHistogramMetric` (``n_cells``, ``average``, the task arguments).

    Example:
        >>> import torch
        >>> metric = AdaptiveCalibrationError(input_format="probs", n_bins=2)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.2, 0.8], [0.7, 0.3]]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.1500, dtype=torch.float64)
        >>> metric.reliability_table()["count"]
        tensor([2., 2.], dtype=torch.float64)
    """

    def __init__(self, task: str = "multiclass", n_bins: int = 15, norm: str = "l1", **kwargs) -> None:
        super().__init__(task=task, n_bins=n_bins, **kwargs)
        check_choice("norm", norm, NORMS)
        self.norm = norm

    def compute(self) -> Tensor:
        return self._average(_adaptive_calibration_error_compute(self.histogram, self.n_bins, self.norm))

    def error_bound(self) -> Tensor:
        """Upper bound on the distance to the exact equal-mass estimate (averaged like ``compute``)."""
        return self._average(equal_mass_error_bound(self.histogram, self.n_bins, self.norm))

    def reliability_table(self) -> dict[str, Tensor]:
        """Per equal-mass bin: ``lower`` and ``upper`` (to within one fine cell), ``count``, mean ``confidence``
        and ``accuracy``."""
        return equal_mass_reliability_table(self.histogram, self.n_bins)


class DebiasedCalibrationError(ConfidenceHistogramMetric):
    r"""Debiased l2 calibration error of Kumar, Liang & Ma 2019.

    .. math::
        \widehat{\mathrm{CE}} = \sqrt{\max\Big(0, \sum_{b: n_b \ge 2} \frac{n_b}{N}
            \Big[(\bar a_b - \bar c_b)^2 - \frac{\bar a_b(1 - \bar a_b)}{n_b - 1}\Big]\Big)}

    Subtracting each bin's sampling variance removes the upward bias of the plug-in RMSCE, which otherwise
    reports miscalibration for a calibrated model on little data.

    Args:
        n_bins: bins (default 15).
        binning: ``"equal_mass"`` (default, as in the reference package; cut from the fine histogram) or
            ``"equal_width"`` (exact; the state is then the (3, n_bins) histogram).
        **kwargs: as in :class:`ConfidenceHistogramMetric`.

    Example:
        >>> import torch
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = 3 * torch.randn(2000, 5, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> metric = DebiasedCalibrationError()
        >>> metric.update(logits, labels)
        >>> metric.compute() < 0.02  # calibrated by construction
        tensor(True)
    """

    def __init__(
        self,
        task: str = "multiclass",
        n_bins: int = 15,
        binning: str = "equal_mass",
        n_cells: int = FINE_CELLS,
        **kwargs,
    ) -> None:
        check_choice("binning", binning, BINNINGS)
        super().__init__(task=task, n_bins=n_bins, n_cells=n_cells if binning == "equal_mass" else n_bins, **kwargs)
        self.binning = binning

    def compute(self) -> Tensor:
        bins = equal_mass_bins(self.histogram, self.n_bins) if self.binning == "equal_mass" else self.histogram
        return self._average(_debiased_calibration_error_compute(bins))


class SmoothCalibrationError(ConfidenceHistogramMetric):
    r"""Smooth calibration error smECE of Błasiok & Nakkiran 2024.

    .. math::
        \mathrm{smECE}_\sigma = \frac{1}{N}\int_0^1 \Big|\sum_i K_\sigma(t, c_i)(c_i - a_i)\Big|\,dt,
        \qquad \sigma^* = \mathrm{smECE}_{\sigma^*}

    with :math:`K_\sigma` the Gaussian kernel reflected at 0 and 1. It has no bins to choose, is continuous
    in the predictions, and comes with a smoothed reliability curve (:meth:`reliability_curve`).

    Args:
        bandwidth: a fixed :math:`\sigma`, or None (default) for the fixed point :math:`\sigma^*`.
        min_bandwidth: the smallest :math:`\sigma` the fixed-point search returns (default 1e-3, four cells).
        **kwargs: as in :class:`ConfidenceHistogramMetric` (``n_bins`` is unused).

    Example:
        >>> import torch
        >>> metric = SmoothCalibrationError(input_format="probs")
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 1]))
        >>> metric.compute()
        tensor(0.2500, dtype=torch.float64)
        >>> sorted(metric.reliability_curve(points=5))
        ['accuracy', 'bandwidth', 'confidence', 'density', 'lower', 'smooth_ece', 'upper']
    """

    def __init__(
        self,
        task: str = "multiclass",
        bandwidth: float | None = None,
        min_bandwidth: float = MIN_BANDWIDTH,
        **kwargs,
    ) -> None:
        super().__init__(task=task, **kwargs)
        _check_bandwidth(bandwidth, min_bandwidth)
        self.bandwidth = bandwidth
        self.min_bandwidth = min_bandwidth

    def compute(self) -> Tensor:
        value, _ = _smooth_calibration_error_compute(self.histogram, self.bandwidth, self.min_bandwidth)
        return self._average(value)

    def reliability_curve(self, points: int = 201, confidence_level: float = 0.95) -> dict[str, Tensor]:
        """The smoothed reliability curve and its band; see
        :func:`~xent_plugin.functional.smooth_calibration_error.smooth_reliability_curve` (not for multilabel)."""
        return smooth_reliability_curve(self.histogram, self.bandwidth, points, confidence_level, self.min_bandwidth)


class CalibrationEstimators(ConfidenceHistogramMetric):
    r"""Adaptive, debiased and smooth calibration error from one fine histogram, one pass and one all-reduce.

    ``compute()`` returns a dict of float64 scalars:

    - ``adaptive_ece``, ``adaptive_rmsce``: ECE and RMSCE over ``n_bins`` equal-mass bins, and
      ``adaptive_ece_bound``, the bound on the distance of ``adaptive_ece`` to exact equal-mass binning;
    - ``debiased_rmsce``: the debiased l2 error of Kumar et al. 2019 over the same equal-mass bins;
    - ``smooth_ece`` and ``smooth_ece_bandwidth``: smECE and its fixed-point bandwidth.

    For figures, :meth:`equal_mass_table` gives the equal-mass reliability table and :meth:`smooth_curve` the
    smoothed reliability curve with its band. Multiclass and binary tasks only (one histogram).

    Args:
        n_bins: equal-mass bins (default 15).
        n_cells: cells of the fine histogram (default 4096).
        min_bandwidth: floor of the smECE bandwidth search.
        **kwargs: the arguments of :class:`~xent_plugin.metrics.task_metric.TaskMetric`.

    Example:
        >>> import torch
        >>> metric = CalibrationEstimators(n_bins=2, input_format="probs")
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]]), torch.tensor([0, 1, 1, 0]))
        >>> values = metric.compute()
        >>> round(values["adaptive_ece"].item(), 4), round(values["smooth_ece"].item(), 4)
        (0.15, 0.1321)
    """

    def __init__(
        self, task: str = "multiclass", n_bins: int = 15, min_bandwidth: float = MIN_BANDWIDTH, **kwargs
    ) -> None:
        if task == "multilabel":
            raise ValueError(
                "CalibrationEstimators keeps one histogram: task='multilabel' is not supported; use the "
                "single-estimator metrics (AdaptiveCalibrationError, ...) with `average`."
            )
        super().__init__(task=task, n_bins=n_bins, **kwargs)
        _check_bandwidth(None, min_bandwidth)
        self.min_bandwidth = min_bandwidth

    def compute(self) -> dict[str, Tensor]:
        equal_mass = equal_mass_bins(self.histogram, self.n_bins)
        smooth_ece, bandwidth = _smooth_calibration_error_compute(self.histogram, None, self.min_bandwidth)
        return {
            "adaptive_ece": _adaptive_calibration_error_compute(self.histogram, self.n_bins, "l1"),
            "adaptive_ece_bound": equal_mass_error_bound(self.histogram, self.n_bins, "l1"),
            "adaptive_rmsce": _adaptive_calibration_error_compute(self.histogram, self.n_bins, "l2"),
            "debiased_rmsce": _debiased_calibration_error_compute(equal_mass),
            "smooth_ece": smooth_ece,
            "smooth_ece_bandwidth": bandwidth,
        }

    def equal_mass_table(self) -> dict[str, Tensor]:
        """Per equal-mass bin: ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy``."""
        return equal_mass_reliability_table(self.histogram, self.n_bins)

    def smooth_curve(self, points: int = 201, confidence_level: float = 0.95) -> dict[str, Tensor]:
        """``confidence`` grid, smoothed ``accuracy``, band ``lower``/``upper``, ``density``, ``bandwidth``,
        ``smooth_ece``; see :func:`~xent_plugin.functional.smooth_calibration_error.smooth_reliability_curve`."""
        return smooth_reliability_curve(self.histogram, None, points, confidence_level, self.min_bandwidth)


class ClasswiseCalibrationError(ScoresMetric):
    r"""Class-wise calibration error (Kull et al. 2019 classwise-ECE; Nixon et al. 2019 SCE).

    .. math::
        \mathrm{cwECE} = \frac{1}{C}\sum_{c=1}^{C}\sum_{b=1}^{M} \frac{n_{cb}}{N}\,|\bar y_{cb} - \bar p_{cb}|

    where bin :math:`b` of class :math:`c` holds the rows whose predicted probability of :math:`c` falls in
    it, :math:`\bar p_{cb}` is their mean probability of :math:`c` and :math:`\bar y_{cb}` the fraction of
    them labelled :math:`c`. ``norm="l2"`` gives the root mean square over classes and bins, with ``debias``
    the estimator of Kumar et al. 2019; ``"max"`` the largest gap. The state is (3, num_classes, n_bins)
    float64 sums, and each update computes the full softmax of every row, chunk by chunk: opt in where C is
    moderate.

    Args:
        num_classes: C, fixed so the state has a fixed size.
        n_bins: equal-width bins per class (default 15).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        debias: subtract per-bin sampling variance (``norm="l2"`` only).
        input_format, class_dim, ignore_index, validate_args: as in
            :class:`~xent_plugin.metrics.cross_entropy.CrossEntropy`.

    Example:
        >>> import torch
        >>> metric = ClasswiseCalibrationError(num_classes=2, n_bins=5, input_format="probs")
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), torch.tensor([0, 1, 1]))
        >>> metric.compute()
        tensor(0.3000, dtype=torch.float64)
    """

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        norm: str = "l1",
        debias: bool = False,
        input_format: str = "logits",
        class_dim: int = 1,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            input_format=input_format,
            class_dim=class_dim,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )
        check_int("num_classes", num_classes, minimum=2)
        check_n_bins(n_bins)
        check_choice("norm", norm, NORMS)
        check_flag("debias", debias)
        if debias and norm != "l2":
            raise ValueError(f"`debias=True` needs norm='l2' (the estimator is for the squared error), got {norm!r}.")
        self.num_classes = num_classes
        self.n_bins = n_bins
        self.norm = norm
        self.debias = debias
        self.add_sum_state("bins", (3, num_classes, n_bins))

    def update(self, preds: Tensor, target: Tensor) -> None:
        if self.validate_args and preds.shape[normalize_class_dim(preds, self.class_dim)] != self.num_classes:
            raise ValueError(
                f"`preds` of shape {tuple(preds.shape)} has {preds.shape[self.class_dim]} classes along "
                f"class_dim={self.class_dim}, expected num_classes={self.num_classes}."
            )
        self.bins += classwise_bins(
            preds,
            target,
            n_bins=self.n_bins,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )

    def compute(self) -> Tensor:
        return _classwise_calibration_error_compute(self.bins, self.norm, self.debias)


def _check_bandwidth(bandwidth: float | None, min_bandwidth: float) -> None:
    if bandwidth is not None and (
        isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or bandwidth <= 0
    ):
        raise ValueError(f"`bandwidth` must be a positive float or None, got {bandwidth!r}.")
    if isinstance(min_bandwidth, bool) or not isinstance(min_bandwidth, (int, float)) or not 0 < min_bandwidth < 1:
        raise ValueError(f"`min_bandwidth` must be a float in (0, 1), got {min_bandwidth!r}.")
