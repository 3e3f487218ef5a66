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
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options, run_main, setup_logging
from evopose_sdk.errors import RunInterrupted

log = logging.getLogger("evopose_sdk.training.search")

PROG = "evopose-search"


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


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(PROG, args.quiet, args.verbose, log_file=getattr(args, "log_file", None),
                  timestamps=True)
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
    try:
        search.run(executor)
    except (SearchInterrupted, KeyboardInterrupt) as exc:
        what = str(exc) if isinstance(exc, SearchInterrupted) else \
            f"interrupted{f' by {exc.args[0]}' if exc.args else ''}"
        raise RunInterrupted(f"{what}; continue with '{PROG} resume {args.dir}'") from None
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
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
