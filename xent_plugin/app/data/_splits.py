"""Seeded train/validation/test partition of row indices."""

from __future__ import annotations

import numpy as np

from xent_plugin.app.data._arguments import check_unit_interval


def check_split_fractions(val_fraction: object, test_fraction: object) -> None:
    check_unit_interval("val_fraction", val_fraction)
    check_unit_interval("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"`val_fraction` + `test_fraction` must be < 1 to leave training data, "
            f"got {val_fraction!r} + {test_fraction!r}."
        )


def split_indices(
    n_rows: int, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, val, test) index arrays covering ``range(n_rows)``; val and test sizes are rounded.

    Example:
        >>> train, val, test = split_indices(10, 0.2, 0.3, np.random.default_rng(0))
        >>> len(train), len(val), len(test)
        (5, 2, 3)
    """
    n_val = round(n_rows * val_fraction)
    n_test = round(n_rows * test_fraction)
    if n_val + n_test >= n_rows:
        raise ValueError(
            f"{n_rows} rows leave no training data with `val_fraction`={val_fraction!r} "
            f"and `test_fraction`={test_fraction!r}."
        )
    if n_val == 0:
        raise ValueError(
            f"{n_rows} rows with `val_fraction`={val_fraction!r} leave an empty validation split; "
            "raise `val_fraction` (metrics are computed on the validation split)."
        )
    order = rng.permutation(n_rows)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
