"""The student registry: names -> builders of segmentation networks.

A *student* is an ``nn.Module`` mapping a float tensor ``(N, 3, H, W)`` (RGB,
normalised as its card says) to okra logits ``(N, 1, H, W)`` at the same ``H, W``,
for any input size. Students trained with deep supervision (U-2-Net) also offer
``forward_train(x) -> list[Tensor]``: the fused logits first, then each side
output, every one ``(N, 1, H, W)``.

Register a builder with ``@register_student("name")``; the name must be new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from okrainsight.errors import ModelError

_REGISTRY: dict[str, Callable[..., Any]] = {}

#: The student the project trains and ships by default, chosen by measurement (see
#: ``bench/bench_students.py`` and ``docs/benchmarks.md``): the only student whose median
#: ONNX Runtime latency at 256x256 on 2 CPU threads met the 4 ms goal (2.4 ms measured;
#: ``okra_unet_tiny`` 11 ms in the same run), at 0.29 M parameters.
DEFAULT_STUDENT = "okra_lraspp_small"


def register_student(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name``.

    Raises:
        ValueError: when ``name`` is already registered (a programming error).
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"student {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_students() -> list[str]:
    """Registered student names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_builder(name: str) -> Callable[..., Any]:
    """The builder registered under ``name``; :class:`ModelError` naming the choices otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown student architecture {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_student(name: str, **kwargs: Any) -> Any:
    """Build the student ``name``. Keyword arguments that are ``None`` are dropped, so
    command-line defaults never override the architecture's own defaults."""
    builder = get_builder(name)
    return builder(**{k: v for k, v in kwargs.items() if v is not None})


def _load_builtin() -> None:
    """Import the modules that register the built-in students (idempotent)."""
    import okrainsight.students  # noqa: F401  (the package imports every architecture file)
