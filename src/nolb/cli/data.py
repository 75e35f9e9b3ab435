"""`nolb data` (placeholder until its issue lands; the owner replaces this file)."""

from nolb.errors import NolbError


def register(subparsers):
    parser = subparsers.add_parser("data", help="(in development)")
    parser.set_defaults(func=_run)


def _run(args):
    raise NolbError("'nolb data' is not implemented yet")
