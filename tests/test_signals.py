"""The one SIGINT/SIGTERM handler (:class:`evopose_sdk.signals.StopSignals`) in the phases its
three users set: the command shell (at once), ``evopose-infer``'s frame loop (graceful, then
finishing) and the trainer (graceful from the start, a second SIGINT aborts, installed over an
inherited SIG_IGN). Real signals raised in this process; the end-to-end runs (Ctrl-C keeps the
frames done and exits 130, the trainer stops with a checkpoint) are in test_cli.py and
test_cli_shell.py."""

from __future__ import annotations

import signal

import pytest

from evopose_sdk.signals import StopSignals

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture(autouse=True)
def terminal_handlers():
    """A shell's background job (pytest started with ``&``) inherits SIGINT ignored, which
    StopSignals keeps ignored by default: test the case of a terminal's Ctrl-C, and check
    that every test leaves the handlers it found."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = {s: signal.getsignal(s) for s in SIGNALS}
        yield
        assert {s: signal.getsignal(s) for s in SIGNALS} == before  # handlers restored
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_command_phases_stop_at_once_keep_work_or_ignore():
    """evopose-infer: before the frame loop a signal stops at once; in it the first only asks
    to stop after the frame in hand and a second stops at once; while finalising, signals
    are ignored."""
    with StopSignals(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        signal.raise_signal(signal.SIGTERM)
    with StopSignals() as sig:
        sig.graceful = True
        signal.raise_signal(signal.SIGINT)
        assert sig.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
    with StopSignals() as sig:
        sig.graceful = True
        signal.raise_signal(signal.SIGTERM)
        sig.finishing = True
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        assert sig.received == "SIGTERM"


def test_trainer_phase_stops_after_the_step_and_aborts_on_a_second_sigint():
    stops: list[str] = []
    with StopSignals(graceful=True, abort_on=(signal.SIGINT,), on_stop=stops.append) as sig:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # not an abort signal: still a graceful stop
        assert (sig.received, stops) == ("SIGTERM", ["SIGTERM"])
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            signal.raise_signal(signal.SIGINT)
    assert stops == ["SIGTERM"]  # told once


@pytest.mark.parametrize("keep_ignored", [True, False])
def test_a_signal_started_ignored_stays_ignored_unless_asked(keep_ignored):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals(graceful=True, abort_on=(), keep_ignored=keep_ignored) as sig:
            signal.raise_signal(signal.SIGINT)
            assert sig.received == (None if keep_ignored else "SIGINT")
            signal.raise_signal(signal.SIGTERM)  # not ignored: handled either way
            assert sig.received == ("SIGTERM" if keep_ignored else "SIGINT")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_nested_handlers_restore_the_outer_ones():
    """run_main's handler (at once) around a command's graceful one."""
    with StopSignals() as outer:
        with StopSignals(graceful=True) as inner:
            signal.raise_signal(signal.SIGINT)
        assert (inner.received, outer.received) == ("SIGINT", None)
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            signal.raise_signal(signal.SIGINT)
        assert outer.received == "SIGINT"


def test_an_interrupt_python_could_not_raise_is_kept():
    """A KeyboardInterrupt raised in a finaliser is lost to the code that runs; with
    catch_unraisable it is kept in ``swallowed``, without a message."""
    import sys

    class LosesTheInterrupt:
        def __del__(self):
            raise KeyboardInterrupt("SIGTERM")

    hook = sys.unraisablehook
    with StopSignals(catch_unraisable=True) as sig:
        LosesTheInterrupt()
    assert sig.swallowed == "SIGTERM" and sys.unraisablehook is hook
