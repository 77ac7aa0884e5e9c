r"""Class-wise calibration error (Kull et al. 2019, "classwise-ECE"; Nixon et al. 2019, "SCE").

Top-label calibration looks at the predicted class only. Class-wise calibration asks, for every class
:math:`c`, whether the predicted probability :math:`q_c` matches the frequency of :math:`c` among the samples
given that probability. Each class gets its own ``n_bins`` equal-width histogram of :math:`q_c` holding the
count :math:`n_{cb}`, the probability sum and the sum of :math:`[y = c]` (the target's probability of
:math:`c` for soft labels), so the state is a fixed (3, C, n_bins) tensor. With :math:`\bar p_{cb}` and
:math:`\bar y_{cb}` the bin means and :math:`N` the number of rows (every row lands once in every class):

- ``norm="l1"``: :math:`\frac{1}{C} \sum_c \sum_b \frac{n_{cb}}{N} |\bar y_{cb} - \bar p_{cb}|`, the
  classwise-ECE of Kull et al. and the SCE of Nixon et al.;
- ``norm="l2"``: :math:`\sqrt{\frac{1}{C} \sum_c \sum_b \frac{n_{cb}}{N} (\bar y_{cb} - \bar p_{cb})^2}`,
  with ``debias=True`` the per-class squared errors of
  :func:`~xent_plugin.functional.debiased_calibration_error.debiased_squared_error`, each floored at 0 —
  the "marginal" calibration error of Kumar et al. 2019;
- ``norm="max"``: the largest gap of any non-empty class bin.

It needs every class probability of every row, C times the work and state of top-label calibration, so it is
a separate, opt-in estimator.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from xent_plugin.functional._layout import normalize_class_dim
from xent_plugin.functional._score_chunks import score_chunks
from xent_plugin.functional._validation import NORMS, check_choice, check_n_bins
from xent_plugin.functional.calibration_error import _calibration_error_compute
from xent_plugin.functional.debiased_calibration_error import debiased_squared_error
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, bin_index


def classwise_bins(
    preds: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    """(3, C, n_bins) float64 per-class sums of count, probability and [y = c], chunk by chunk.

    Example:
        >>> preds = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
        >>> classwise_bins(preds, torch.tensor([0, 0]), n_bins=2, input_format="probs")[2]  # [y = c] per bin
        tensor([[1., 1.],
                [0., 0.]], dtype=torch.float64)
    """
    if validate_args:
        check_n_bins(n_bins)
    num_classes = preds.shape[normalize_class_dim(preds, class_dim)]
    bins = torch.zeros(3, num_classes * n_bins, dtype=ACCUMULATE_DTYPE, device=preds.device)
    class_offset = n_bins * torch.arange(num_classes, device=preds.device)
    for chunk in score_chunks(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    ):
        probs = chunk.scores.softmax(dim=1)
        if chunk.target.ndim == 1:
            # A comparison, not F.one_hot, which reads the indices' range back from the device to check it.
            classes = torch.arange(num_classes, device=probs.device)
            observed = (chunk.target[:, None] == classes).to(probs.dtype)
        else:
            observed = chunk.target.to(probs.dtype)
        weight = torch.ones_like(probs) if chunk.counted is None else chunk.counted[:, None].expand_as(probs)
        if chunk.counted is not None:
            # An ignored row may be NaN or all -inf, and NaN * 0 is NaN.
            probs = torch.where(weight, probs, 0.0)
        weight = weight.to(probs.dtype)
        values = torch.stack([weight, probs * weight, observed * weight]).to(ACCUMULATE_DTYPE)
        cells = (bin_index(probs, n_bins) + class_offset).reshape(-1)
        bins.index_add_(1, cells, values.reshape(3, -1))
    return bins.view(3, num_classes, n_bins)


def _classwise_calibration_error_compute(bins: Tensor, norm: str = "l1", debias: bool = False) -> Tensor:
    """Class-wise calibration error from (3, C, n_bins) sums; NaN when nothing was counted."""
    if debias:
        per_class = debiased_squared_error(bins)
        if bool(per_class.isnan().all()):
            warnings.warn("classwise_calibration_error: no samples were counted, returning NaN.", stacklevel=3)
        return per_class.clamp_min(0).mean().sqrt()
    per_class = _calibration_error_compute(bins, norm)
    if norm == "l1":
        return per_class.mean()
    if norm == "l2":
        return per_class.square().mean().sqrt()
    return per_class.amax()


def classwise_calibration_error(
    preds: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    debias: bool = False,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Class-wise calibration error of multiclass predictions (module docstring).

    Args:
        preds: scores of shape (N, C), (N, C, ...) or, with ``class_dim=-1``, (..., C).
        target: class indices or a distribution shaped like ``preds``.
        n_bins: equal-width bins per class.
        norm: ``"l1"`` (classwise-ECE, SCE), ``"l2"`` or ``"max"``.
        debias: with ``norm="l2"``, subtract each bin's sampling variance (Kumar et al. 2019).
        input_format, class_dim, ignore_index, validate_args: as in
            :func:`~xent_plugin.functional.cross_entropy.cross_entropy`.

    Example:
        >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> classwise_calibration_error(preds, torch.tensor([0, 1, 1]), input_format="probs", n_bins=5)
        tensor(0.3000, dtype=torch.float64)
    """
    if validate_args:
        check_choice("norm", norm, NORMS)
        if debias and norm != "l2":
            raise ValueError(f"`debias=True` needs norm='l2' (the estimator is for the squared error), got {norm!r}.")
    bins = classwise_bins(
        preds,
        target,
        n_bins=n_bins,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _classwise_calibration_error_compute(bins, norm, debias)
