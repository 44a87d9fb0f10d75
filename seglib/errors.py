"""The one exception type a user sees, and the wrapper that turns it into a message.

Message form: `<where>: <what is wrong>, got <value>; <what to do>`.
"""
import errno
import sys

MAX_LISTED = 25


EXIT_USER, EXIT_SYSTEM = 2, 3  # 1 stays predict's "some files were skipped"
SYSTEM_ADVICE = {errno.ENOSPC: "the disk is full: free space, then run again",
                 errno.EDQUOT: "the disk quota is used up: free space, then run again",
                 errno.EROFS: "a read-only file system: write somewhere else",
                 errno.EACCES: "permission denied: use a place you may read and write",
                 errno.EPERM: "permission denied: use a place you may read and write"}


class SegError(Exception):
    """A problem the user can fix (bad params, bad files). Printed as one message, exit 2."""


def run_cli(main, argv=None):
    """Run `main(argv)`; print a SegError as `error: ...` on stderr and exit 2. The file system refusing
    (disk full, read-only, no permission) is one message naming the path, exit 3: outputs are written
    whole through a temporary file, so none was left half-written."""
    try:
        main(argv)
    except SegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER)
    except OSError as exc:
        if exc.errno not in SYSTEM_ADVICE:
            raise
        print(f"error: {exc.filename or 'a file'}: {exc.strerror}; {SYSTEM_ADVICE[exc.errno]} "
              "(no output was left half-written)", file=sys.stderr)
        sys.exit(EXIT_SYSTEM)


def format_problems(problems, what="dataset check"):
    """Many problems as one message: a count, then one line each (the first MAX_LISTED)."""
    listed = "\n".join(f"  - {e}" for e in problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{what} found {len(problems)} problem(s):\n{listed}{more}"
