"""SIGINT and SIGTERM while a command or a run is active: the one handler of the package.

Used by every ``evopose-*`` command's shell (:func:`evopose_sdk.cli_shell.run_main`: a
signal interrupts at once, exit 130), by ``evopose-infer`` around its frame loop (the first
signal keeps the frames done) and by the trainer (the first signal finishes the step in hand
and checkpoints). Only the standard library is imported here.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable

__all__ = ["StopSignals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM handlers for a ``with`` block, installed from the main thread only
    (elsewhere the block runs with the handlers it finds); the previous ones come back on exit.

    What a signal does depends on the phase its owner has set:

    - at once (the default): raise ``KeyboardInterrupt("SIGINT")`` (or ``"SIGTERM"``);
    - :attr:`graceful`: the first signal is only recorded in :attr:`received` (and handed to
      ``on_stop``), so a loop that checks it stops after the work in hand and keeps it; a
      second one of ``abort_on`` raises ``KeyboardInterrupt``;
    - :attr:`finishing`: signals are recorded and ignored, so finalising outputs is never cut
      short.

    Args:
        graceful: start in the graceful phase.
        abort_on: the signals that, coming again in the graceful phase, raise.
        keep_ignored: leave a signal the process started with ignored (``SIG_IGN``, as a
            shell's background job has SIGINT) ignored.
        catch_unraisable: keep a KeyboardInterrupt that Python could not raise (the signal
            came while it ran a finaliser or a gc callback, e.g. TensorFlow's) in
            :attr:`swallowed`, silently, so the command still ends as interrupted.
        on_stop: called with the signal's name when the first signal asks a graceful stop.
    """

    def __init__(self, *, graceful: bool = False, abort_on: Iterable[int] = _SIGNALS,
                 keep_ignored: bool = True, catch_unraisable: bool = False,
                 on_stop: Callable[[str], None] | None = None) -> None:
        self.graceful = graceful
        self.finishing = False
        #: the name of the first signal received (``"SIGINT"`` / ``"SIGTERM"``), or None
        self.received: str | None = None
        #: a KeyboardInterrupt's message that Python could not raise (``catch_unraisable``)
        self.swallowed: str | None = None
        self._abort_on = frozenset(int(s) for s in abort_on)
        self._keep_ignored = keep_ignored
        self._catch_unraisable = catch_unraisable
        self._on_stop = on_stop
        self._old: dict[int, object] = {}
        self._old_hook = sys.unraisablehook

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                if not (self._keep_ignored and signal.getsignal(sig) is signal.SIG_IGN):
                    self._old[sig] = signal.signal(sig, self._handle)
            if self._catch_unraisable:
                self._old_hook = sys.unraisablehook
                sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        if self._catch_unraisable and sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._old_hook

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        first = self.received is None
        self.received = self.received or name
        if self.finishing:
            return
        if self.graceful and (first or signum not in self._abort_on):
            if first and self._on_stop is not None:
                self._on_stop(name)
            return
        raise KeyboardInterrupt(name)

    def _unraisable(self, info: sys.UnraisableHookArgs) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            self.swallowed = self.swallowed or (str(info.exc_value) or "SIGINT")
        else:
            self._old_hook(info)
