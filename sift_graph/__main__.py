"""python -m sift_graph COMMAND: the sift_graph command line (``docs/analyze.md``).

Exit status, for every command: 0 everything done; 1 some inputs were skipped (each reported on one
``skipped:`` line); 2 usage error (bad option, nonexistent path, no runs found, unusable output
folder); 3 sift itself failed (a bug: one line naming the traceback file; ``--debug`` prints it).

Each command is a module listed in :data:`COMMANDS` with ``add_parser(sub, parents)`` (register its
subparser, ``parents`` giving the common options) and ``run(args) -> exit status``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from . import cli_analyze, cli_metrics
from .analysis.options import UsageError
from .files import atomic_write_text

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
COMMANDS = (cli_analyze, cli_metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sift_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="on a crash of sift, print the traceback instead of writing it to a file")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub, [common])
    return parser


def _report_crash(exc: BaseException, debug: bool) -> None:
    where = "above"
    if not debug:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        report = Path(tempfile.gettempdir()) / f"sift-crash-{stamp}-{os.getpid()}.txt"
        try:
            atomic_write_text(report, traceback.format_exc())
            where = f"in {report}"
        except OSError:  # no writable temporary folder: the traceback goes to stderr after all
            debug = True
    if debug:
        traceback.print_exc()
    message = str(exc).splitlines()[0] if str(exc) else ""
    print(f"error: sift crashed ({type(exc).__name__}: {message}); traceback {where}; "
          "please report it", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - everything else is a bug of sift: exit 3, not a traceback
        _report_crash(exc, args.debug)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
