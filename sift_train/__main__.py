"""python -m sift_train {describe,train,sweep}: Sparse-IFT models, sparse training and sweeps."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from . import cli_describe, cli_train

    parser = argparse.ArgumentParser(prog="python -m sift_train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cli_describe.register(sub)
    cli_train.register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
