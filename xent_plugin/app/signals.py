"""Stopping ``xent-train`` by a signal: the run is closed as KILLED, and the process exits ``128 + signal``.

By default SIGHUP (the terminal closed) ends the process at once, and Lightning turns SIGTERM into a clean
``SystemExit`` (status 0) at the next batch, or ignores it outside ``fit``; either way the MLflow run stayed
RUNNING, or the exit status said nothing went wrong. Inside :func:`stop_on_signals`, each of these signals
raises :class:`StoppedBySignal` where the program is, as Ctrl-C raises ``KeyboardInterrupt``, so the code
that owns the run can close it on the way out.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StoppedBySignal(BaseException):
    """Raised by the handler of a stopping signal; a ``BaseException``, so ``except Exception`` lets it pass.

    Example:
        >>> stop = StoppedBySignal(signal.SIGTERM)
        >>> stop.name, stop.exit_status
        ('SIGTERM', 143)
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        # The shell's convention for a process ended by signal N.
        self.exit_status = 128 + self.signum
        super().__init__(f"stopped by {self.name}")


@contextmanager
def stop_on_signals(signums: tuple[signal.Signals, ...] = STOPPING_SIGNALS) -> Iterator[None]:
    """Within the block, each of ``signums`` raises :class:`StoppedBySignal` once; later ones are ignored,
    so closing the run is not interrupted by a second signal. Lightning's own SIGTERM handler, registered
    during ``fit``/``test``, calls this one after its own (which stops the DDP ranks it started)."""
    stopping = False

    def raise_once(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StoppedBySignal(signum)

    previous = {signum: signal.signal(signum, raise_once) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
