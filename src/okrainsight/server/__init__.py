"""``okra serve``: the live camera web app, the click-to-label page and the REST API.

Import :func:`create_app` from :mod:`okrainsight.server.app`; the submodules hold one page each
(``live``, ``label``, ``explore``) plus the JSON API (``api``). FastAPI and uvicorn come with the
``serve`` extra.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    """See :func:`okrainsight.server.app.create_app` (imported lazily so FastAPI stays optional)."""
    from okrainsight.server.app import create_app as _create_app

    return _create_app(*args, **kwargs)
