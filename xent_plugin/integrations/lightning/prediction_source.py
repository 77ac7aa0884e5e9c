"""Where XentMonitor finds a batch's predictions: the step's returned dict, or a user's ``extract``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

Extract = Callable[[Any, Any], tuple]


@dataclass
class Predictions:
    """``preds`` in ``input_format``; for ``"hidden"``, final hidden states and the output head that maps them."""

    preds: Tensor
    target: Tensor
    input_format: str
    reference: Tensor | None = None
    head_weight: Tensor | None = None
    head_bias: Tensor | None = None

    def head(self, rows: int) -> Predictions:
        """The first ``rows`` samples (dimension 0), without copying."""
        reference = None if self.reference is None else self.reference[:rows]
        return Predictions(
            self.preds[:rows], self.target[:rows], self.input_format, reference, self.head_weight, self.head_bias
        )


class PredictionSource:
    """Reads predictions from what a step returned.

    By default the step returns a dict with ``"logits"`` (or ``"probs"``, or ``"log_probs"``), ``"target"``,
    and optionally ``"reference"``, a true distribution shaped like the predictions. A language model can return
    ``{"hidden": ..., "head_weight": ..., "target": ...}`` (and ``"head_bias"``) instead, and its logits are never
    built (:func:`~xent_plugin.functional.hidden_states.hidden_state_stats`). Key names are
    configurable; for any other output pass ``extract(outputs, batch) -> (preds, target[, reference])``, whose
    ``preds`` are read in ``input_format``.
    """

    def __init__(
        self,
        preds_keys: Mapping[str, str] | None = None,
        target_key: str = "target",
        reference_key: str = "reference",
        extract: Extract | None = None,
        input_format: str = "logits",
    ) -> None:
        self.preds_keys = dict(preds_keys or {"logits": "logits", "probs": "probs", "log_probs": "log_probs"})
        self.target_key = target_key
        self.reference_key = reference_key
        self.extract = extract
        self.input_format = input_format

    def read(self, outputs: Any, batch: Any, stage: str) -> Predictions:
        if self.extract is not None:
            extracted = self.extract(outputs, batch)
            if not isinstance(extracted, tuple) or len(extracted) not in (2, 3):
                raise ValueError(
                    f"XentMonitor: `extract` must return (preds, target) or (preds, target, reference), "
                    f"got {type(extracted).__name__}."
                )
            names = ("preds", "target", "reference")
            for name, value in zip(names[: len(extracted)], extracted, strict=True):
                _check_tensor(value, f"`extract` returned {name}")
            return Predictions(extracted[0], extracted[1], self.input_format, *extracted[2:])
        if not isinstance(outputs, Mapping):
            raise ValueError(
                f"XentMonitor: the {stage} step returned {type(outputs).__name__}, not a dict. Return a dict "
                f"with one of the keys {sorted(self.preds_keys.values())} and {self.target_key!r}, or pass "
                "`extract=`."
            )
        if "hidden" in outputs and "head_weight" in outputs and self.target_key in outputs:
            for name in ("hidden", "head_weight", self.target_key, "head_bias"):
                if name != "head_bias" or outputs.get(name) is not None:
                    _check_tensor(outputs[name], f"the {stage} step's {name!r}")
            bias = outputs.get("head_bias")
            return Predictions(
                outputs["hidden"].detach(),
                outputs[self.target_key],
                "hidden",
                head_weight=outputs["head_weight"].detach(),
                head_bias=None if bias is None else bias.detach(),
            )
        found = [(fmt, key) for fmt, key in self.preds_keys.items() if key in outputs]
        if not found or self.target_key not in outputs:
            raise ValueError(
                f"XentMonitor: the {stage} step returned keys {sorted(outputs)}; expected one of "
                f"{sorted(self.preds_keys.values())} and {self.target_key!r}. Configure `preds_keys` / "
                "`target_key` or pass `extract=`."
            )
        input_format, key = found[0]
        for name in (key, self.target_key, self.reference_key):
            if name != self.reference_key or outputs.get(name) is not None:
                _check_tensor(outputs[name], f"the {stage} step's {name!r}")
        return Predictions(
            outputs[key].detach(), outputs[self.target_key], input_format, outputs.get(self.reference_key)
        )


def _check_tensor(value: Any, what: str) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"XentMonitor: {what} is {type(value).__name__}, expected a torch.Tensor.")
