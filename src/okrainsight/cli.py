"""The ``okra`` command line: one thin function per verb.

Each verb parses its options, calls the library, and prints. Errors raised as
:class:`~okrainsight.errors.OkraError` become one line on stderr and a non-zero
exit code; ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console

from okrainsight import __version__
from okrainsight.errors import OkraError

app = typer.Typer(
    name="okra",
    help=(
        "OkraInsight: tell a good okra from a bad one with a phone camera.\n\n"
        "Render training scenes, label photos with a teacher (SAM), train small students, "
        "segment photos and export to phones.\n\n"
        "Example:  okra synth data/synth --n 200 --seed 0"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"okrainsight {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logging."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (or a single number for a square) into ``(width, height)``."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x", 1)
            size = (int(w), int(h))
        else:
            size = (int(text), int(text))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a size; write it as WIDTHxHEIGHT, e.g. 512x384") from exc
    if min(size) < 16 or max(size) > 8192:
        raise typer.BadParameter(f"{text!r}: width and height must be between 16 and 8192 pixels")
    return size


# ----------------------------------------------------------------------------------
# Verbs. Each verb lives in one function below; the library does the work.
# ----------------------------------------------------------------------------------

# --- end of verbs ---


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app (click's standalone mode sets the exit code), turning
    :class:`OkraError` into a one-line message on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="okra")
    except OkraError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"okra: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("okra: interrupted")
        sys.exit(130)


__all__ = ["app", "main", "parse_size", "console", "err_console"]
