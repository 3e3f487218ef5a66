"""``evopose-search``: run, resume and report an EvoPose2D neuroevolution search.

Examples::

    evopose-search run --config search.json runs/search            # local Ray if installed
    evopose-search run --config search.json runs/search --workers 2 --set generations=3
    evopose-search run --config search.json runs/search --address auto   # a Ray cluster
    evopose-search resume runs/search                               # after a crash / Ctrl-C
    evopose-search report runs/search --out docs/search
"""

from __future__ import annotations

import argparse
import logging
import sys

from evopose_sdk.training.cli import _env_defaults
from evopose_sdk.training.cli import _setup_logging as _train_logging

log = logging.getLogger("evopose_sdk.training.search")


def _setup_logging(log_file: str | None, verbose: bool) -> None:
    _train_logging(log_file, verbose, logger="evopose_sdk.training.search")


def _add_exec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("auto", "ray", "sequential"), default="auto",
                   help="auto: Ray when installed, else sequential (default)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://host:10001); "
                   "default: a local Ray")
    p.add_argument("--workers", type=int, help="CPU-only local Ray: children trained at once")
    p.add_argument("--log-file", help="also log to this file (for background runs)")
    p.add_argument("--verbose", "-v", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evopose-search",
                                description="EvoPose2D (mu, lambda) neuroevolution search.")
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
    t.add_argument("--verbose", "-v", action="store_true")
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


def main(argv: list[str] | None = None) -> int:
    _env_defaults()
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "log_file", None), args.verbose)
    from evopose_sdk.training.search.config import SearchConfig, SearchConfigError  # noqa: PLC0415
    from evopose_sdk.training.search.report import write_report  # noqa: PLC0415
    from evopose_sdk.training.search.runner import Search, SearchInterrupted  # noqa: PLC0415
    from evopose_sdk.training.search.state import SearchStateError  # noqa: PLC0415

    try:
        if args.command == "report":
            paths = write_report(args.dir, args.out, args.top)
            print(paths["markdown"].read_text(encoding="utf-8"))
            return 0
        if args.command == "run":
            search = Search.create(args.dir, SearchConfig.from_any(args.config, args.set))
        else:
            search = Search.open(args.dir)
        executor = make_executor(args.executor, args.address, args.workers)
        try:
            search.run(executor)
        finally:
            executor.close()
        best = search.best(1)
        if best:
            b = best[0]
            print(f"best {b['id']} {b['genotype_str']} params {b['params']} "
                  f"val_loss {b['val_loss']:.6g} fitness {b['fitness']:.6g}")
        return 0
    except SearchInterrupted as exc:
        print(f"evopose-search: interrupted ({exc}); continue with 'evopose-search resume "
              f"{args.dir}'", file=sys.stderr)
        return 130
    except (SearchConfigError, SearchStateError, FileExistsError, FileNotFoundError,
            ValueError, RuntimeError) as exc:
        print(f"evopose-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evopose-search: interrupted; continue with 'evopose-search resume "
              f"{args.dir}'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
