"""Latent geometry and sampling: the Riemannian metric (:mod:`.metric`), batched HMC
(:mod:`.hmc`) and its diagnostics (:mod:`.diagnostics`), the latent samplers
(:mod:`.samplers`), geodesic interpolation (:mod:`.interpolation`), the hardware query of
the HMC's precision option (:mod:`.hardware`) and the per-class draw of synthetic latents
that every generator of synthetic subjects goes through (:mod:`.latents`)."""

from .latents import draw_class_latents, draw_latents

__all__ = ["draw_class_latents", "draw_latents"]
