"""Stop signals of a training run: SIGINT, SIGTERM and SIGUSR1 end it cleanly after a step.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
for 1000 epochs, which on a shared cluster means being stopped: SLURM sends SIGTERM on
preemption and at the time limit and kills the job for good after a grace period (30 s by
default), and can send SIGUSR1 ahead of that (``#SBATCH --signal``); torchrun's agent passes
SIGTERM and SIGINT on to its workers. ``StopSignals`` turns each of these into a request that
the training loop (utils/training/trainer.py) honours after the step in progress: the whole
training state goes to interrupted.pth and the process exits with ``exit_status(signum)``,
128 + the signal's number as a shell reports a process ended by it (130 SIGINT, 138 SIGUSR1,
143 SIGTERM). A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt at once.

Data-loader worker processes ignore the stop signals (``ignore_stop_signals``, run by the
loop's ``worker_init_fn``). A signal sent to the whole process group or job (Ctrl-C in a
terminal, SLURM) reaches them too, and a worker that ended on it would make the loader raise
in the main process before the checkpoint is written; the main process stops them itself.

A plain module: imports nothing of the project.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by `signum`: 128 + its number (SIGTERM: 143)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    """signal.SIGTERM -> "SIGTERM"."""
    return signal.Signals(signum).name


class StopSignals:
    """Once installed (a context manager, or ``install()`` ... ``restore()``), SIGINT, SIGTERM
    and SIGUSR1 set ``signum`` instead of ending the process; the previous handlers come back
    on restore. A second SIGINT raises KeyboardInterrupt. Only the main thread can take
    signals in Python: installed from another thread, nothing changes."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> StopSignals:
        """Take the stop signals over from their current handlers; returns self."""
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """Give the stop signals their previous handlers back."""
        for signum, handler in self._previous.items():
            # None: a handler installed from outside Python, which cannot be put back
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # only records: printing here could re-enter a print the signal interrupted
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum


def ignore_stop_signals() -> None:
    """Ignore the stop signals in this process (a data-loader worker: see the module doc)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
