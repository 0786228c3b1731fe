"""Errors a user can act on: the command line prints them as one line, without a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class ReprzooError(Exception):
    """A problem with the user's input (a name, a path, a file), explained in the message."""


class UnknownNameError(ReprzooError, KeyError):
    """A name that is not registered; the message lists near matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if not close:  # case-insensitive second try: "simsiam" -> "SimSiam"
            lowered = {k.lower(): k for k in known}
            close = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
        msg = f"unknown {kind} {name!r}.{hint} Known: {shown}"
        super().__init__(msg)
        self.close_matches = close

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
