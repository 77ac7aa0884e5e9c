"""Param keys and values cut to MLflow's limits (:mod:`mlflow.utils.validation`), so no log fails on length."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

_TRUNCATED = "... (truncated; the whole value is in config.yaml)"


def param_key(key: str) -> str:
    """``key``, or when MLflow would refuse it as too long, its head and a hash of the whole, so cut keys stay
    distinct.

    Example:
        >>> param_key("lr")
        'lr'
        >>> cut = param_key("model." + "x" * 300)
        >>> len(cut), cut[-9:]
        (250, '~6cd54752')
    """
    if len(key) <= MAX_ENTITY_KEY_LENGTH:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{key[: MAX_ENTITY_KEY_LENGTH - len(digest) - 1]}~{digest}"


def param_value(value: Any, limit: int = MAX_PARAM_VAL_LENGTH) -> str:
    """``value`` as text in override syntax (JSON for anything but a string), cut to ``limit`` characters with a
    note that ``config.yaml`` has it whole.

    Example:
        >>> param_value([16, 32]), param_value(None), param_value("relu")
        ('[16, 32]', 'null', 'relu')
        >>> len(param_value("x" * 7000))
        6000
    """
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATED)] + _TRUNCATED
