"""The one exception type a user sees, and the wrapper that turns it into a message.

Message form: `<where>: <what is wrong>, got <value>; <what to do>`.
"""
import sys

MAX_LISTED = 25


class SegError(Exception):
    """A problem the user can fix (bad params, bad files). Printed as one message, exit 2."""


def run_cli(main, argv=None):
    """Run `main(argv)`; print a SegError as `error: ...` on stderr and exit 2."""
    try:
        main(argv)
    except SegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def format_problems(problems, what="dataset check"):
    """Many problems as one message: a count, then one line each (the first MAX_LISTED)."""
    listed = "\n".join(f"  - {e}" for e in problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{what} found {len(problems)} problem(s):\n{listed}{more}"
