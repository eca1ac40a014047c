"""The okra scene renderer: procedural photos of okra and look-alikes with exact masks.

``render_scene(seed, size, kind)`` renders one :class:`Scene`; ``render_dataset(out, n, seed, ...)``
writes a data set folder. See ``docs/synth.md`` for what is varied and why.
"""

from okrainsight.synth.render import render_dataset
from okrainsight.synth.scenes import KINDS, RENDERER_VERSION, Scene, render_scene

__all__ = ["KINDS", "RENDERER_VERSION", "Scene", "render_dataset", "render_scene"]
