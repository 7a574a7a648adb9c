"""The `qcstack` command line: build, bring up, test and inspect the stack."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from stack.process import CommandError
from stack.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]


def cmd_build(settings: Settings, args: argparse.Namespace) -> int:
    from stack.build.images import build_all

    for tag in build_all(settings):
        print(tag)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="qcstack", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build every image from local inputs")
    build.set_defaults(handler=cmd_build)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = Settings()
        return handler(settings, args)
    except CommandError as error:
        print(f"qcstack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
