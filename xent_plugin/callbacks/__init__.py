"""Lightning callbacks."""

from xent_plugin.callbacks.xent_monitor import XentMonitor

__all__ = ["XentMonitor"]
