"""Lightning callbacks, for ``pytorch_lightning`` and ``lightning.pytorch`` alike."""

from xent_plugin.integrations.lightning.xent_monitor import XentMonitor

__all__ = ["XentMonitor"]
