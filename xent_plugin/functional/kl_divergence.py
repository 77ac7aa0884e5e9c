r"""KL divergence :math:`\mathrm{KL}(p \| q) = \sum_c p_c (\log p_c - \log q_c)` between a reference p and a model q.

KL is asymmetric. ``direction="forward"`` gives KL(target || preds): the extra nats the model costs when data
come from the reference, and the gap in H(p, q) = H(p) + KL(p || q). ``direction="reverse"`` gives
KL(preds || target), which punishes the model for mass where the reference has little (mode-seeking).

Terms with :math:`p_c = 0` are 0 (0 log 0 = 0). Where :math:`q_c = 0` but :math:`p_c > 0` (a masked class
the reference still uses) the divergence is +inf: no finite cost pays for an event the model rules out.
"""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._layout import normalize_class_dim
from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    DeferredChecks,
    check_choice,
    check_floating,
    check_tensor,
    defer_distribution,
)
from xent_plugin.functional.softmax_stats import SufficientStats, sufficient_stats, to_probabilities

DIRECTIONS = ("forward", "reverse")


def _kl_divergence_update(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    target_format: str = "probs",
    direction: str = "forward",
    class_dim: int = 1,
    validate_args: bool = True,
) -> SufficientStats:
    check_tensor("target", target)
    class_dim = normalize_class_dim(preds, class_dim)
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_choice("target_format", target_format, INPUT_FORMATS)
        check_choice("direction", direction, DIRECTIONS)
        check_floating("preds", preds)
        check_floating("target", target)
        if target.shape != preds.shape:
            raise ValueError(
                f"`target` of shape {tuple(target.shape)} must be a distribution shaped like "
                f"`preds` {tuple(preds.shape)}."
            )
        # Checked here, under their own names and dtypes, before the direction swaps their roles.
        checks = DeferredChecks()
        defer_distribution(checks, "preds", preds, input_format, class_dim)
        defer_distribution(checks, "target", target, target_format, class_dim)
        checks.raise_if_failed()
    model, reference, model_format, reference_format = preds, target, input_format, target_format
    if direction == "reverse":
        model, reference, model_format, reference_format = target, preds, target_format, input_format
    return sufficient_stats(
        model,
        to_probabilities(reference.movedim(class_dim, -1), reference_format).movedim(-1, class_dim),
        input_format=model_format,
        class_dim=class_dim,
        validate_args=False,
    )


def _kl_divergence_compute(total: Tensor, count: Tensor) -> Tensor:
    return mean_or_nan(total, count, "kl_divergence")


def kl_divergence(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    target_format: str = "probs",
    direction: str = "forward",
    class_dim: int = 1,
    validate_args: bool = True,
) -> Tensor:
    """Mean KL divergence between the reference ``target`` and the model ``preds``, in nats.

    Args:
        preds: the model's distribution q, in ``input_format``.
        target: the reference distribution p, shaped like ``preds``, in ``target_format``.
        input_format, target_format: ``"logits"``, ``"probs"`` or ``"log_probs"`` for each side.
        direction: ``"forward"`` for KL(p || q), ``"reverse"`` for KL(q || p).
        class_dim: the class dimension.
        validate_args: check the inputs.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> kl_divergence(torch.tensor([[0.9, 0.1]]).log(), p, input_format="log_probs")
        tensor(0.5108, dtype=torch.float64)
    """
    stats = _kl_divergence_update(
        preds,
        target,
        input_format=input_format,
        target_format=target_format,
        direction=direction,
        class_dim=class_dim,
        validate_args=validate_args,
    )
    return _kl_divergence_compute(stats.kl, stats.reference_count)
