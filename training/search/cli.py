"""``evopose-search``: run, resume and report an EvoPose2D neuroevolution search.

Examples::

    evopose-search run --config search.json runs/search            # local Ray if installed
    evopose-search run --config search.json runs/search --workers 2 --set generations=3
    evopose-search run --config search.json runs/search --address auto   # a Ray cluster
    evopose-search resume runs/search                               # after a crash / Ctrl-C
    evopose-search report runs/search --out docs/search

SIGINT or SIGTERM stops the search with its state on disk and exits 130; ``resume``
continues it. Exit codes (:mod:`evopose_sdk.cli_shell`): 0 ok, 1 error (one line), 2 usage
or a bad search config, 130 interrupted.

On a cluster (``--address``) the search runs in a child process, its Ray driver, that this
one waits for: Ray may end a driver whose node died without a word (its core worker exits
the process), and then this process says the one line a lost cluster gets, with the resume
command.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options, run_main, setup_logging
from evopose_sdk.errors import RunInterrupted

log = logging.getLogger("evopose_sdk.training.search")

PROG = "evopose-search"
#: Set for the child that runs a cluster search (see :func:`_drive`): the file descriptor of
#: the pipe on which it tells its parent the head's GCS address and its own exit code.
DRIVER_FD_ENV = "EVOPOSE_SEARCH_DRIVER_FD"


def _add_exec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("auto", "ray", "sequential"), default="auto",
                   help="auto: Ray when installed, else sequential (default)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://host:10001); "
                   "default: a local Ray")
    p.add_argument("--workers", type=int, help="CPU-only local Ray: children trained at once")
    p.add_argument("--log-file", help="also log to this file (for background runs)")
    add_verbosity_options(p)


def build_parser() -> ArgumentParser:
    """The ``evopose-search`` argument parser with its run / resume / report sub-commands."""
    p = ArgumentParser(prog=PROG, description="EvoPose2D (mu, lambda) neuroevolution search.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start a search in DIR")
    r.add_argument("dir", help="search folder (must not hold a search)")
    r.add_argument("--config", "-c", required=True, help="search config JSON")
    r.add_argument("--set", "-s", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a search config field (repeatable)")
    _add_exec_args(r)
    s = sub.add_parser("resume", help="continue the search in DIR")
    s.add_argument("dir")
    _add_exec_args(s)
    t = sub.add_parser("report", help="table and plots of the search in DIR")
    t.add_argument("dir")
    t.add_argument("--out", help="output folder (default: DIR)")
    t.add_argument("--top", type=int, default=10, help="rows of the table (default 10)")
    add_verbosity_options(t)
    return p


def make_executor(kind: str, address: str | None, workers: int | None):
    """The executor a CLI call asks for (``auto``: Ray when importable)."""
    from evopose_sdk.training.search.ray_runner import RayExecutor, ray_available  # noqa: PLC0415
    from evopose_sdk.training.search.runner import SequentialExecutor  # noqa: PLC0415

    if kind == "sequential" or (kind == "auto" and not ray_available() and not address):
        if kind == "auto":
            log.info("Ray is not installed: training children sequentially")
        return SequentialExecutor()
    return RayExecutor(address=address, workers=workers)


def _tell_parent(key: str, value: object) -> None:
    """One ``KEY VALUE`` line to the parent that runs this search as its Ray driver."""
    fd = os.environ.get(DRIVER_FD_ENV)
    if fd:
        with contextlib.suppress(OSError, ValueError):
            os.write(int(fd), f"{key} {value}\n".encode())


def _die_with_parent() -> None:
    """In the driver child, before it runs (Linux): SIGTERM it when its parent dies, so a
    killed ``evopose-search`` leaves no search running on."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _drive(argv: list[str], search_dir: str, address: str) -> int:
    """Run this command again as a child process, the search's Ray driver, and return its
    exit code; SIGINT and SIGTERM are passed on to it (it stops as a search does, 130).

    The child tells this process the head's GCS address and, at its end, its exit code (its
    own one line is said by then). A child that ends without telling was ended by Ray, or
    killed: this process then raises the one-line :class:`SearchClusterError` (the cluster
    is called lost when its head refuses connections within ``HEAD_TIMEOUT_S``).
    """
    from evopose_sdk.training.search.ray_runner import (  # noqa: PLC0415
        HEAD_TIMEOUT_S,
        SearchClusterError,
        port_answers,
        resume_hint,
    )

    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evopose_sdk.training.search.cli", *argv],
        env=dict(os.environ, **{DRIVER_FD_ENV: str(write_fd)}), pass_fds=(write_fd,),
        start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
    os.close(write_fd)
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt as exc:  # run_main's SIGINT / SIGTERM: the child stops
            proc.send_signal(signal.SIGTERM if "SIGTERM" in str(exc) else signal.SIGINT)
    os.set_blocking(read_fd, False)  # what the child wrote is in the pipe already; a
    data = b""                          # process it started may still hold the write end
    with contextlib.suppress(BlockingIOError), os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(4096):
            data += chunk
    told = dict(line.split(" ", 1) for line in data.decode().splitlines() if " " in line)
    if "exit" in told:
        return int(told["exit"])
    gcs = told.get("gcs") or (address if ":" in address else None)
    t0 = time.monotonic()
    while gcs and port_answers(gcs) and time.monotonic() - t0 < HEAD_TIMEOUT_S:
        time.sleep(0.5)
    if gcs and not port_answers(gcs):
        why = f"lost the Ray cluster at {address}: its head at {gcs} does not answer"
    else:
        why = f"the Ray cluster at {address} still answers"
    raise SearchClusterError(f"{why}, and the search's Ray driver ended without a word "
                             f"(exit {rc}); {resume_hint(search_dir, address)}")


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(PROG, args.quiet, args.verbose, log_file=getattr(args, "log_file", None),
                  timestamps=True)
    if (args.command in ("run", "resume") and args.address and args.executor != "sequential"
            and DRIVER_FD_ENV not in os.environ):
        return _drive(argv, args.dir, args.address)
    from evopose_sdk.training.search.config import SearchConfig, SearchConfigError  # noqa: PLC0415
    from evopose_sdk.training.search.report import write_report  # noqa: PLC0415
    from evopose_sdk.training.search.runner import Search, SearchInterrupted  # noqa: PLC0415

    if args.command == "report":
        paths = write_report(args.dir, args.out, args.top)
        print(paths["markdown"].read_text(encoding="utf-8"))
        return 0
    if args.command == "run":
        try:
            config = SearchConfig.from_any(args.config, args.set)
        except SearchConfigError as exc:
            parser.error(str(exc))
        search = Search.create(args.dir, config)
    else:
        search = Search.open(args.dir)
    executor = make_executor(args.executor, args.address, args.workers)
    _tell_parent("gcs", getattr(executor, "gcs_address", None) or "")
    try:
        search.run(executor)
    except (SearchInterrupted, KeyboardInterrupt) as exc:
        what = str(exc) if isinstance(exc, SearchInterrupted) else \
            f"interrupted{f' by {exc.args[0]}' if exc.args else ''}"
        where = f" --address {args.address}" if args.address else ""
        raise RunInterrupted(f"{what}; continue with '{PROG} resume {args.dir}{where}'") from None
    finally:
        executor.close()
    best = search.best(1)
    if best:
        b = best[0]
        print(f"best {b['id']} {b['genotype_str']} params {b['params']} "
              f"val_loss {b['val_loss']:.6g} fitness {b['fitness']:.6g}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evopose-search``; returns the exit code."""
    code = run_main(PROG, _main, argv)
    _tell_parent("exit", code)  # a driver child has said its line: its parent says none
    return code


if __name__ == "__main__":
    raise SystemExit(main())
