"""The shell every ``evopose-*`` command runs in: parser, logging, exit codes.

``evopose-infer``, ``evopose-export``, ``evopose-train`` and ``evopose-search`` share:

- :class:`ArgumentParser`: no abbreviated options, and an unknown option is answered with the
  nearest real one (``unrecognized option --no-flp; did you mean --no-flip?``);
- :func:`add_verbosity_options` and :func:`setup_logging`: ``-q/--quiet`` (warnings and errors
  only), ``-v/--verbose`` (debug messages, and the traceback of an error), one format;
- :func:`run_main`: environment defaults set first (:mod:`evopose_sdk._env`), then the
  command's body, with errors mapped to exit codes and one-line messages: 0 ok, 2 usage or
  bad arguments, 1 a runtime failure (:class:`~evopose_sdk.errors.EvoPoseError`, an
  ``OSError``), 130 interrupted (SIGINT, SIGTERM or
  :class:`~evopose_sdk.errors.RunInterrupted`).

Only the standard library is imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from evopose_sdk._env import set_env_defaults
from evopose_sdk.errors import EvoPoseError, RunInterrupted, did_you_mean
from evopose_sdk.signals import StopSignals

logger = logging.getLogger("evopose_sdk.cli")

#: Exit codes of every command.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ArgumentParser(argparse.ArgumentParser):
    """argparse without abbreviated options; an unknown option gets a "did you mean" hint.

    Sub-command parsers made with ``add_subparsers`` are of this class too, and the hint
    names an option of the sub-command given.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's, but an unknown ``--option`` is a usage error named first, before
        argparse can complain about something else (a required option it stands for)."""
        args = list(sys.argv[1:] if args is None else args)
        commands = {name for a in self._actions if isinstance(a, argparse._SubParsersAction)
                    for name in a.choices}
        unknown = []
        for token in args:  # a sub-command's own parser checks the tokens after it
            if token == "--" or token in commands:
                break
            if token.startswith("--") and token.split("=", 1)[0] not in \
                    self._option_string_actions:
                unknown.append(token)
        if unknown:
            self.error(self._unknown_message(unknown))
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """Parse ``args``; unknown arguments are a usage error (exit 2) with a hint."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(self._unknown_message(unknown, parsed))
        return parsed

    def _unknown_message(self, unknown: list[str],
                         parsed: argparse.Namespace | None = None) -> str:
        options = [t for t in unknown if t.startswith("-") and len(t) > 1]
        if not options:
            return f"unrecognized arguments: {' '.join(unknown)}"
        known = [o for o in _option_strings(self, parsed) if o.startswith("--")]
        parts = []
        for token in options:
            match = did_you_mean(token.split("=", 1)[0], known, cutoff=0.5, quote=False) \
                if token.startswith("--") else ""
            hint = match or f"see {self.prog} --help"
            parts.append(f"unrecognized option {token}; {hint}")
        return "\n  ".join(parts)


def _option_strings(parser: argparse.ArgumentParser,
                    parsed: argparse.Namespace | None) -> list[str]:
    """Option strings of ``parser`` and of the sub-command chosen in ``parsed``; those of
    every sub-command when ``parsed`` does not say which, none before one is parsed."""
    out = []
    for action in parser._actions:
        out += action.option_strings
        if isinstance(action, argparse._SubParsersAction) and parsed is not None:
            chosen = getattr(parsed, action.dest, None)
            subs = [action.choices[chosen]] if chosen in action.choices else \
                list(action.choices.values())
            for sub in subs:
                out += _option_strings(sub, parsed)
    return out


def add_verbosity_options(parser: argparse._ActionsContainer) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose`` (mutually exclusive) to a parser or group."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="only warnings and errors (and no progress bar)")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="also debug messages, and the traceback of an error")


def setup_logging(prog: str, quiet: bool = False, verbose: bool = False, *,
                  default: int = logging.INFO, log_file: str | os.PathLike | None = None,
                  timestamps: bool = False) -> None:
    """Log evopose_sdk's messages to stderr (and ``log_file``); other libraries: warnings.

    Args:
        prog: the command's name, the prefix of every stderr line
            (``evopose-infer: ERROR: ...``).
        quiet: warnings and errors only.
        verbose: debug messages too (``run_main`` then adds the traceback of an error).
        default: the level without ``quiet`` / ``verbose`` (``evopose-infer``: WARNING, as
            its progress bar and summary line say what happens).
        log_file: also log here, with time stamps and logger names (folders are created).
        timestamps: start stderr lines with the time too (long runs).

    Calling it again replaces the handlers an earlier call installed.
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose else default
    _remove_handlers()
    root = logging.getLogger()
    stderr_fmt = f"{prog}: %(levelname)s: %(message)s"
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(logging.Formatter(
        f"%(asctime)s {stderr_fmt}" if timestamps else stderr_fmt))
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        handlers[1].setFormatter(logging.Formatter(_FILE_FORMAT))
    for handler in handlers:
        handler._evopose_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("evopose_sdk").setLevel(level)


def _remove_handlers() -> None:
    """Remove (and close) the handlers :func:`setup_logging` installed."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_evopose_cli", False)]:
        root.removeHandler(handler)
        handler.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_main(prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None = None,
             *, failures: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's ``body(argv)`` in the shell; returns the exit code.

    Sets the environment defaults and a provisional logging set-up (``body`` calls
    :func:`setup_logging` with its options), then maps what ``body`` raises: argparse's
    exit (``--help`` 0, usage 2) passes through; ``KeyboardInterrupt`` (SIGINT, and SIGTERM
    here) and :class:`RunInterrupted` give 130; :class:`EvoPoseError`, ``OSError`` and the
    ``failures`` types give 1 with their message's first line on stderr, no traceback (it is
    logged at debug level, shown with ``--verbose``). Anything else is a bug and propagates
    with its traceback. The logging set-up is undone on return, so calling ``main()`` in a
    process (a test, a benchmark) leaves no handlers behind.

    Args:
        prog: the command's name (``evopose-train``).
        body: parses its ``argv`` and runs; returns an exit code.
        argv: the arguments (default ``sys.argv[1:]``).
        failures: more exception types that are runtime failures of this command.
    """
    set_env_defaults()
    root, package = logging.getLogger(), logging.getLogger("evopose_sdk")
    levels = root.level, package.level
    setup_logging(prog)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # a signal interrupts at once; commands that stop gracefully set their own phases
        # inside (evopose-infer's frame loop, the trainer)
        with StopSignals(catch_unraisable=True) as interrupts:
            code = body(args)
        if interrupts.swallowed:
            raise KeyboardInterrupt(interrupts.swallowed)
        return code
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    except KeyboardInterrupt as exc:
        logger.warning("interrupted%s", f" by {exc.args[0]}" if exc.args else "")
        return EXIT_INTERRUPTED
    except RunInterrupted as exc:
        logger.warning("%s", _one_line(exc))
        return EXIT_INTERRUPTED
    except (EvoPoseError, OSError, *failures) as exc:
        logger.error("%s", _one_line(exc))
        logger.debug("traceback of the error above", exc_info=True)
        return EXIT_FAILURE
    finally:
        _remove_handlers()
        root.setLevel(levels[0])
        package.setLevel(levels[1])


def run_subcommand(prog: str, commands: dict[str, Callable[[list[str]], int]],
                   argv: Sequence[str] | None = None) -> int:
    """``commands[argv[0]](argv[1:])`` for a module run as ``python -m <prog> NAME ...``
    (``argv`` default ``sys.argv[1:]``); without a known NAME, the usage on stderr and
    :data:`EXIT_USAGE`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in commands:
        print(f"usage: python -m {prog} {{{','.join(commands)}}} ... (-h after one for its "
              "options)", file=sys.stderr)
        return EXIT_USAGE
    return commands[args[0]](args[1:])
