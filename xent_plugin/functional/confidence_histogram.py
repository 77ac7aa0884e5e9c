r"""The fine confidence histogram that the adaptive, debiased and smooth estimators share.

Exact equal-mass binning and kernel smoothing both need every sample's confidence. A histogram with many
narrow equal-width cells — :data:`FINE_CELLS` = 4096 by default, each holding the count, the summed confidence
and the summed correctness of its samples — keeps what they need in a state of fixed size (96 KiB in float64)
that adds across batches and devices. It is the reliability histogram of
:func:`~xent_plugin.functional.softmax_stats.sufficient_stats` with ``n_bins=n_cells``: the same one pass.

Cell :math:`k` of :math:`K` covers :math:`[k/K, (k+1)/K)`; the last cell includes 1.0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xent_plugin.functional._validation import check_n_bins
from xent_plugin.functional.task_stats import task_stats

FINE_CELLS = 1 << 12


def confidence_histogram(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    n_cells: int = FINE_CELLS,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    calibration_mode: str = "top_label",
    validate_args: bool = True,
) -> Tensor:
    """(3, n_cells) float64 sums of count, confidence and correctness per fine cell; (3, labels, n_cells) for
    multilabel. Arguments as in :func:`~xent_plugin.functional.calibration_error.calibration_error`.

    Example:
        >>> histogram = confidence_histogram(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), n_cells=8)
        >>> histogram[0]
        tensor([0., 0., 0., 0., 0., 1., 0., 1.], dtype=torch.float64)
    """
    if validate_args:
        check_n_bins(n_cells, "n_cells")
    return task_stats(
        preds,
        target,
        task=task,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        n_bins=n_cells,
        calibration_mode=calibration_mode,
        validate_args=validate_args,
    ).bins


def cell_edges(n_cells: int, like: Tensor) -> Tensor:
    """The n_cells + 1 cell edges k / n_cells, in the dtype and on the device of ``like``."""
    return torch.linspace(0, 1, n_cells + 1, dtype=like.dtype, device=like.device)
