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

While a run trains, SIGCHLD keeps its default disposition (ignored: the kernel builds no signal
frame for it). A DataLoader with worker processes otherwise installs a Python SIGCHLD handler
in the main process and never removes it (torch.utils.data._utils.signal_handling); with it,
every child that exits interrupts the main process with a signal. The test suite met a
kernel-forced SIGSEGV in such a delivery (docs/training.md, "The SIGSEGV of the test suite").
Without the handler a worker that dies is still found: the loader checks its workers whenever
it has waited 5 s for a batch, and raises naming them.

A plain module: imports nothing of the project.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from torch.utils.data._utils import signal_handling

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by `signum`: 128 + its number (SIGTERM: 143)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    """signal.SIGTERM -> "SIGTERM"."""
    return signal.Signals(signum).name


class StopSignals:
    """Once installed (a context manager, or ``install()`` ... ``restore()``), SIGINT, SIGTERM
    and SIGUSR1 set ``signum`` instead of ending the process, and SIGCHLD stays at its default
    (torch's DataLoader does not install its handler meanwhile); the previous handlers come back
    on restore. A second SIGINT raises KeyboardInterrupt. Only the main thread can take
    signals in Python: installed from another thread, nothing changes."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._torch_sigchld: bool | None = None  # torch's "handler installed" flag, to restore

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> StopSignals:
        """Take the stop signals over from their current handlers; returns self."""
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
            # torch installs its SIGCHLD handler only while this flag is False
            self._torch_sigchld = signal_handling._SIGCHLD_handler_set
            signal_handling._SIGCHLD_handler_set = True
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return self

    def restore(self) -> None:
        """Give the stop signals their previous handlers back."""
        for signum, handler in self._previous.items():
            # None: a handler installed from outside Python, which cannot be put back
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
        if self._torch_sigchld is not None:
            signal_handling._SIGCHLD_handler_set = self._torch_sigchld
            self._torch_sigchld = None

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
