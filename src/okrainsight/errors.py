"""Error types of OkraInsight.

Every failure a user can cause (a bad file, a bad argument, a missing optional
dependency) raises a subclass of :class:`OkraError`. Its message is one line that
names the thing at fault and, where possible, how to fix it. The command line
prints that line and exits non-zero, without a traceback unless ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class OkraError(Exception):
    """Base class of every error OkraInsight raises on purpose."""


class ImageReadError(OkraError):
    """An image or mask file could not be read: missing, empty, truncated, not an image, too large."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class DatasetError(OkraError):
    """A dataset folder is missing parts or its files disagree with each other."""


class ConfigError(OkraError):
    """A command-line option, config file or argument has an invalid value."""


class ModelError(OkraError):
    """A model, checkpoint or card could not be loaded or does not fit the request."""


class MissingDependencyError(OkraError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{package}' package: install it with pip install 'okrainsight[{extra}]'"
        )
