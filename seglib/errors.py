"""The one exception type a user sees, and the wrapper that turns it into a message.

Message form: `<where>: <what is wrong>, got <value>; <what to do>`.
"""
import sys


class SegError(Exception):
    """A problem the user can fix (bad params, bad files). Printed as one message, exit 2."""


def run_cli(main, argv=None):
    """Run `main(argv)`; print a SegError as `error: ...` on stderr and exit 2."""
    try:
        main(argv)
    except SegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
