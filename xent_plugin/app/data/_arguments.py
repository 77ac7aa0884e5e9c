"""Constructor-argument checks of the datamodules that the library's (``xent_plugin.functional._validation``,
which they use for integers) has no equivalent of; each error names the argument, the value and the rule."""

from __future__ import annotations


def check_positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")


def check_unit_interval(name: str, value: object) -> None:
    """Accept a number in [0, 1): a fraction of the data or a probability that must leave something over."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
