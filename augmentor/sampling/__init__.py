"""Drawing latents: the per-class draw every generator of synthetic subjects goes through."""

from .latents import draw_class_latents, draw_latents

__all__ = ["draw_class_latents", "draw_latents"]
