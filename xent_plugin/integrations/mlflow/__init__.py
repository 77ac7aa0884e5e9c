"""Everything that talks to MLflow: the Lightning logger, figure and table uploads, and the run's config."""

from xent_plugin.integrations.mlflow.resilient_logger import ResilientMLFlowLogger

__all__ = ["ResilientMLFlowLogger"]
