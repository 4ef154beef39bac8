"""How every parser of the command line formats its help: descriptions as written, each
option's default shown, a command's one-line help as its description."""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's default shown unless its help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text
                and (action.option_strings or action.nargs in ("?", "*"))):
            text += " (default: %(default)s)"
        return text


def described(add_parser: Any, **defaults: Any) -> Any:
    """``add_parser`` whose parsers format help alike, show their one-line help as their
    description, and take ``defaults`` (e.g. ``parents``)."""
    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs = {"formatter_class": HelpFormatter, **defaults, **kwargs}
        kwargs.setdefault("description", kwargs.get("help"))
        return add_parser(name, **kwargs)
    return add


def verbs(group: argparse.ArgumentParser, dest: str, metavar: str) -> Any:
    """Subcommands of a group (``collections create``), formatted like the commands."""
    found = group.add_subparsers(dest=dest, required=True, metavar=metavar)
    found.add_parser = described(found.add_parser)
    return found
