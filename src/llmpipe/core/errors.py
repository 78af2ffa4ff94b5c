"""User errors versus bugs: the one convention every stage and the `llmpipe` CLI follow.

A user error (bad params, a missing or malformed input file, a refused gate, a full disk) prints
one line to stderr, ``PROG: error: KEY-OR-FILE: what is wrong: what to do``, and exits with
status 2. Anything else is a bug and keeps its traceback.

Library code raises `UserError` (or a subclass: `ParamsError`, `SourceError`, `CostGateError`,
...) with a message that names the key, file, row or rule. Stage scripts wrap their `main` in
`entry(PROG)`, which turns those exceptions (and the OS errors a user fixes: no space, no such
file, permission denied) into that line and status 2.
"""
from __future__ import annotations

import errno
import functools
import sys
from typing import Callable

EXIT_USER = 2


class UserError(ValueError):
    """A problem the user fixes; the message is the whole story (one line, no traceback).

    A ValueError, so callers that caught ValueError before keep working."""


# OS errors that come from the machine or the user's paths, not from llmpipe's code.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOENT, errno.EACCES,
                errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EPERM}
_HINTS = {
    errno.ENOSPC: "free disk space (or point the outputs at a bigger disk) and rerun",
    errno.EDQUOT: "free space within your quota and rerun",
    errno.EFBIG: "the file is larger than this filesystem allows: write somewhere else",
    errno.EIO: "the device reported an I/O error: check the disk (dmesg) and rerun",
    errno.EACCES: "check the path's permissions",
    errno.EROFS: "the filesystem is read-only: write somewhere else",
}


def user_message(exc: BaseException) -> str | None:
    """The one-line message for a user error, or None when `exc` is a bug."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
        where = exc.filename if exc.filename is not None else ""
        what = exc.strerror or str(exc)
        msg = f"{where}: {what}" if where else what
        hint = _HINTS.get(exc.errno)
        return f"{msg}: {hint}" if hint else msg
    if isinstance(exc, FileNotFoundError):  # raised with a message of ours, no errno
        return str(exc)
    return None


def one_line(msg: str) -> str:
    """Collapse a message onto one line (multi-line library texts keep their content)."""
    return " ".join(part.strip() for part in msg.splitlines() if part.strip())


def report(prog: str, exc: BaseException) -> int:
    """Print `exc` as the one-line user error of `prog`; returns the exit status (2)."""
    print(f"{prog}: error: {one_line(user_message(exc) or str(exc))}", file=sys.stderr, flush=True)
    return EXIT_USER


def _stage_name(prog: str, argv: list[str]) -> str:
    """`clean` run with `--source c4` is `clean@c4`, as dvc.yaml names it."""
    for i, a in enumerate(argv):
        if a == "--source" and i + 1 < len(argv):
            return f"{prog}@{argv[i + 1]}"
        if a.startswith("--source="):
            return f"{prog}@{a.split('=', 1)[1]}"
    return prog


def entry(prog: str) -> Callable[[Callable[..., int | None]], Callable[..., int]]:
    """Decorator for a stage's `main(argv) -> int`: user errors become one line and status 2."""

    def wrap(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return int(main(argv) or 0)
            except Exception as e:  # noqa: BLE001 - re-raised unless it is a user error
                if user_message(e) is None:
                    raise
                return report(_stage_name(prog, sys.argv[1:] if argv is None else argv), e)

        return run

    return wrap
