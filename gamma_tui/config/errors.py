"""The one error a preset problem becomes (a module of its own: every part raises it)."""

from __future__ import annotations


class PresetError(Exception):
    """A preset could not be used; the message names the file, the key path and a fix."""
