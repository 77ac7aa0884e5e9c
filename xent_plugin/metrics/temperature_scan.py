"""Streaming temperature scan: the NLL-optimal temperature, and how much of the cross-entropy it removes."""

from __future__ import annotations

import torch
from torch import Tensor

from xent_plugin.functional._validation import (
    check_tensor,
)
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, RowStatistics
from xent_plugin.functional.temperature_scan import (
    DERIVATIVES,
    _temperature_scan_compute,
    check_temperatures,
    default_temperatures,
    temperature_chunk_sums,
    temperature_sums,
)
from xent_plugin.metrics.base import ScoresMetric


class TemperatureScan(ScoresMetric):
    r"""The temperature that minimises the cross-entropy of :math:`\mathrm{softmax}(z / T)`, in one pass.

    .. math::
        \mathrm{NLL}(T) = \frac{1}{N}\sum_i \Big[\log \sum_c e^{z_{ic}/T} - z_{i y_i}/T\Big],
        \qquad T^* = \arg\min_T \mathrm{NLL}(T)

    ``compute()`` returns ``temperature`` (:math:`T^*`, from the NLL's value and four derivatives in
    :math:`1/T` at the grid points either side of it; see :mod:`~xent_plugin.functional.temperature_scan`),
    ``calibrated_nll`` (:math:`\mathrm{NLL}(T^*)`), ``nll`` (at :math:`T = 1`, the plain cross-entropy) and
    ``miscalibration`` = ``nll`` - ``calibrated_nll``: the nats of cross-entropy that temperature scaling would
    remove on this data (in-sample, so optimistic). :meth:`curve` gives the NLL at the grid points. The state is
    ``5 * len(temperatures) + 2`` float64 sums; each update exponentiates every logit once per temperature,
    chunk by chunk, so it costs about ``len(temperatures)`` softmax passes (7 by default): opt in.

    Args:
        temperatures: increasing positive temperatures that bracket the optimum (default: the powers of 2 from
            1/4 to 16).
        input_format, class_dim, ignore_index, validate_args: as in
            :class:`~xent_plugin.metrics.cross_entropy.CrossEntropy`.

    Example:
        >>> import torch
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4000, 10, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> metric = TemperatureScan()
        >>> metric.update(3 * logits[:2000], labels[:2000])  # three times too confident
        >>> metric.update(3 * logits[2000:], labels[2000:])
        >>> result = metric.compute()
        >>> round(result["temperature"].item(), 1), bool(result["miscalibration"] > 0.3)
        (3.0, True)
    """

    higher_is_better = None

    def __init__(
        self,
        temperatures: Tensor | None = None,
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
        if temperatures is not None:
            check_tensor("temperatures", temperatures)
        temperatures = default_temperatures() if temperatures is None else temperatures.to(ACCUMULATE_DTYPE)
        check_temperatures(temperatures)
        self.temperatures = temperatures
        self.add_sum_state("count")
        self.add_sum_state("sums", (len(temperatures), DERIVATIVES + 1))
        self.add_sum_state("cross_entropy")

    def update(self, preds: Tensor, target: Tensor) -> None:
        count, sums, cross_entropy = temperature_sums(
            preds,
            target,
            self.temperatures,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )
        self.count += count
        self.sums += sums
        self.cross_entropy += cross_entropy

    def chunk_reducer(self, shifted: Tensor, target_score: Tensor, counted: Tensor | None) -> Tensor:
        """The (G, 5) sums and the T = 1 NLL of one chunk, packed into one vector (a ``ChunkReducer``)."""
        sums, cross_entropy = temperature_chunk_sums(shifted, target_score, counted, self.temperatures)
        return torch.cat([sums.reshape(-1), cross_entropy.reshape(1)])

    def update_from_rows(self, rows: RowStatistics) -> None:
        """Update from a pass that ran :meth:`chunk_reducer` on its chunks (XentMetrics' ``extras``)."""
        if len(rows.chunk_sums) != 1:
            raise ValueError(
                f"TemperatureScan.update_from_rows needs the rows' sums of its own `chunk_reducer` (one), got "
                f"{len(rows.chunk_sums)}; pass it in the pass's `chunk_reducers`."
            )
        packed = rows.chunk_sums[0]
        self.count += rows.cross_entropy.numel() if rows.counted is None else rows.counted.sum()
        self.sums += packed[:-1].view_as(self.sums)
        self.cross_entropy += packed[-1]

    def compute(self) -> dict[str, Tensor]:
        return _temperature_scan_compute(self.temperatures, self.count, self.sums, self.cross_entropy)

    def curve(self) -> dict[str, Tensor]:
        """``temperature`` (the grid) and the mean ``nll`` at each, for plotting the scan."""
        return {"temperature": self.temperatures, "nll": self.sums[:, 0] / self.count}
