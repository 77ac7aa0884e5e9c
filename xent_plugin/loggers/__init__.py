"""Lightning loggers."""

from xent_plugin.loggers.resilient_mlflow import ResilientMLFlowLogger

__all__ = ["ResilientMLFlowLogger"]
