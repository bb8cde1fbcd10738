"""The one exception the stack raises; its message is meant to be shown to the user as is."""

from __future__ import annotations


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message says why and what to do."""
