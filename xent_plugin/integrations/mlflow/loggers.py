"""Which loggers are MLflow loggers, under either Lightning namespace, and the one outbox of each."""

from __future__ import annotations

import sys
import weakref
from typing import Any

from xent_plugin.integrations.mlflow.outbox import Outbox
from xent_plugin.integrations.mlflow.resilient_logger import ResilientMLFlowLogger

_LIGHTNING_LOGGER_MODULES = ("pytorch_lightning.loggers", "lightning.pytorch.loggers")
_outboxes: weakref.WeakKeyDictionary[Any, Outbox] = weakref.WeakKeyDictionary()


def is_mlflow_logger(logger: object) -> bool:
    """Whether ``logger`` is an ``MLFlowLogger`` of ``pytorch_lightning`` or of ``lightning.pytorch``.

    Only namespaces already imported are checked: a logger of one was built from it, and importing the other
    would cost seconds.

    Example:
        >>> from pytorch_lightning.loggers import CSVLogger, MLFlowLogger
        >>> is_mlflow_logger(MLFlowLogger(tracking_uri="sqlite:///:memory:")), is_mlflow_logger(CSVLogger("."))
        (True, False)
    """
    for name in _LIGHTNING_LOGGER_MODULES:
        module = sys.modules.get(name)
        if module is not None and isinstance(logger, module.MLFlowLogger):
            return True
    return False


def owns_outbox(logger: object) -> bool:
    """Whether ``logger`` closes its outbox itself (in ``finalize``), as a :class:`ResilientMLFlowLogger` does; the
    outbox of any other MLflow logger is closed by whoever sends through it.

    Example:
        >>> owns_outbox(ResilientMLFlowLogger(tracking_uri="sqlite:///:memory:"))
        True
    """
    return isinstance(logger, ResilientMLFlowLogger)


def outbox_for(logger: object) -> Outbox | None:
    """The outbox that writes to ``logger``'s run, or None if it is not an MLflow logger.

    A :class:`ResilientMLFlowLogger` has its own, shared with its scalars. Lightning's ``MLFlowLogger`` (either
    namespace) gets one made here, once per logger, that opens the run through ``logger.experiment`` on its
    worker thread and treats the run as possibly continued, so a resumed run keeps its first diagrams and tables.

    Example:
        >>> logger = ResilientMLFlowLogger(tracking_uri="sqlite:///:memory:")
        >>> outbox_for(logger) is logger.outbox, outbox_for(object())
        (True, None)
    """
    if isinstance(logger, ResilientMLFlowLogger):
        return logger.outbox
    if not is_mlflow_logger(logger):
        return None
    if logger not in _outboxes:
        reference = weakref.ref(logger)  # the outbox must not keep its logger alive
        _outboxes[logger] = Outbox(
            lambda: (reference().experiment, reference().run_id),
            tracking_uri=logger._tracking_uri,
            source="XentMonitor",
            continued=True,
            experiment_name=logger._experiment_name,
        )
    return _outboxes[logger]
