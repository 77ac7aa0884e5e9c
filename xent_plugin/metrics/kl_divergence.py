"""Streaming KL divergence between a reference distribution and the model's."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import INPUT_FORMATS, check_choice, check_class_dim, check_flag
from xent_plugin.functional.kl_divergence import DIRECTIONS, _kl_divergence_compute, _kl_divergence_update
from xent_plugin.functional.softmax_stats import SufficientStats
from xent_plugin.metrics.base import SummedStateMetric


class KLDivergence(SummedStateMetric):
    r"""Mean :math:`\mathrm{KL}(p \| q) = \sum_c p_c \log(p_c / q_c)` of the reference ``target`` p from the
    model ``preds`` q, in nats; ``direction="reverse"`` gives :math:`\mathrm{KL}(q \| p)`.

    Both sides may be logits, probabilities or log-probabilities (``input_format``, ``target_format``).
    0 log 0 = 0; where the model gives a class probability 0 that the reference gives mass, the result is
    +inf. See :mod:`xent_plugin.functional.kl_divergence` for when each direction matters.

    Example:
        >>> import torch
        >>> metric = KLDivergence(input_format="probs")
        >>> metric.update(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.5, 0.5]]))
        >>> metric.compute()
        tensor(0.5108, dtype=torch.float64)
    """

    stat_names = ("reference_count", "kl")
    plot_lower_bound = 0.0

    def __init__(
        self,
        input_format: str = "logits",
        target_format: str = "probs",
        direction: str = "forward",
        class_dim: int = 1,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_choice("target_format", target_format, INPUT_FORMATS)
        check_choice("direction", direction, DIRECTIONS)
        check_class_dim(class_dim)
        check_flag("validate_args", validate_args)
        self.input_format = input_format
        self.target_format = target_format
        self.direction = direction
        self.class_dim = class_dim
        self.validate_args = validate_args
        for name in self.stat_names:
            self.add_sum_state(name)

    def batch_stats(self, preds: Tensor, target: Tensor) -> SufficientStats:
        return _kl_divergence_update(
            preds,
            target,
            input_format=self.input_format,
            target_format=self.target_format,
            direction=self.direction,
            class_dim=self.class_dim,
            validate_args=self.validate_args,
        )

    def compute(self) -> Tensor:
        return _kl_divergence_compute(self.kl, self.reference_count)
