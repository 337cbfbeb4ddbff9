"""Template anatomy on the T88 grid and the class-effect measure it gives.

The simulated cohort (:mod:`oasis.simulate`) builds its AD effect from regions of
the MNI152 template that nilearn ships: the lateral and third ventricles (CSF in a
box around them) and the hippocampal regions (ellipsoids intersected with grey
matter). The same regions, on the grid of a study's images, say whether a set of
images, real or synthetic, carries that effect, independently of any classifier:

* **ventricle size**: the CSF volume (mL; 2D slices: area in cm^2) inside the
  ventricle region widened by :data:`VENTRICLE_MARGIN_MM`, so that the enlarged
  ventricles of AD subjects (up to about 6 mm of displacement) stay inside it. A
  voxel counts as CSF by its intensity relative to the image's own white-matter
  level, linearly from 0 at the template's grey-matter level to 1 at its
  ventricle level (partial volumes and blurred synthetic images count in part);
* **hippocampal-region intensity**: the mean intensity inside the hippocampal
  regions relative to the image's white-matter level (AD: atrophy brings darker
  CSF into the region).

Relative intensities make both measures independent of the per-image min-max
scaling of :func:`oasis.loader.load_oasis` and of the simulated global gain.
The regions are the template's (not warped per subject): the subject-specific
deformation of the simulator is a few mm, within the margin. The measure applies
to any image on the T88 field of view (a real OASIS-1 copy as well).

Grids. A 3D image ``(X, Y, Z)`` is measured on the template resampled to its
grid. A 2D image is the transposed axial slice ``(Y, X)`` of
:func:`oasis.loader.extract_axial_slice`: the regions are built on the volume grid
``(X, Y, Z)`` with ``Z`` giving the T88 voxel aspect, and the same slice is taken.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from oasis.loader import T88_SHAPE

__all__ = [
    "VENTRICLE_MARGIN_MM",
    "ClassEffect",
    "EffectRegions",
    "TemplateAnatomy",
    "anatomy_measures",
    "class_effect",
    "effect_regions",
    "template_anatomy",
]

# MNI coordinates (mm) of T88 voxel (0, 0, 0) and the direction of each voxel axis.
T88_ORIGIN_MM = np.array([88.0, -120.0, -76.0])
T88_AXIS_SIGN = np.array([-1.0, 1.0, 1.0])
# Template-space anatomy, MNI mm.
VENTRICLE_BOX_MM = ((-30.0, 30.0), (-45.0, 30.0), (-5.0, 35.0))
HIPPOCAMPUS_CENTRES_MM = ((-28.0, -22.0, -14.0), (28.0, -22.0, -14.0))
HIPPOCAMPUS_RADII_MM = (8.0, 17.0, 8.0)

VENTRICLE_MARGIN_MM = 8.0
"""Widening of the template ventricles for the measure: the simulator's largest
ventricle displacement (3 mm x effect_size 1.5 x CDR 2 severity 1.3 x 1.25, plus
ageing) stays within it."""
_TISSUE_CORE = 0.8  # a voxel counts as pure grey / white matter above this template probability


def mni_to_t88(image: Any) -> np.ndarray:
    """Place a 1 mm MNI image onto the full T88 grid by integer shifts; ``(176, 208, 176)`` float32."""
    affine = np.asarray(image.affine)
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise RuntimeError(f"expected a 1 mm RAS template from nilearn, got affine {affine.tolist()}")
    data = np.asarray(image.dataobj, dtype=np.float32)
    out = np.zeros(T88_SHAPE, dtype=np.float32)
    index = [np.arange(n) for n in T88_SHAPE]
    # MNI voxel index of each T88 voxel along each axis: (origin + sign * i - offset).
    source = [np.rint(T88_ORIGIN_MM[a] + T88_AXIS_SIGN[a] * index[a] - affine[a, 3]).astype(int) for a in range(3)]
    valid = [(s >= 0) & (s < data.shape[a]) for a, s in enumerate(source)]
    out[np.ix_(*valid)] = data[np.ix_(*(s[v] for s, v in zip(source, valid)))]
    return out


def area_resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Area-average a ``(C, X, Y, Z)`` or ``(X, Y, Z)`` array onto a coarser grid."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    squeeze = tensor.ndim == 3
    tensor = tensor[None] if squeeze else tensor
    out = F.interpolate(tensor[None], size=shape, mode="area")[0]
    return (out[0] if squeeze else out).numpy()


@dataclasses.dataclass(frozen=True)
class TemplateAnatomy:
    """nilearn's MNI152 maps and the simulator's regions on one grid ``(X, Y, Z)``.

    Attributes:
        t1, gm, wm, mask: template T1 in [0, 1], grey- and white-matter probability,
            brain mask (area-averaged, so fractional at the border).
        csf: CSF probability, ``mask - gm - wm`` clipped to [0, 1].
        ventricles: lateral and third ventricles (CSF in the ventricle box).
        hippocampi: hippocampal regions (ellipsoids intersected with grey matter).
        mni: the MNI coordinate (mm) of the voxel centres along each axis.
        voxel_mm: ``(3,)`` voxel size.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    csf: np.ndarray
    ventricles: np.ndarray
    hippocampi: np.ndarray
    mni: tuple[np.ndarray, np.ndarray, np.ndarray]
    voxel_mm: np.ndarray


@functools.lru_cache(maxsize=4)
def template_anatomy(shape: tuple[int, int, int]) -> TemplateAnatomy:
    """Load nilearn's packaged MNI152 maps onto ``shape`` (same field of view as T88) and derive the regions."""
    from nilearn import datasets

    t1, gm, wm, mask = (
        area_resize(mni_to_t88(load()), shape)
        for load in (
            datasets.load_mni152_template,
            datasets.load_mni152_gm_template,
            datasets.load_mni152_wm_template,
            datasets.load_mni152_brain_mask,
        )
    )
    voxel_mm = np.array(T88_SHAPE, dtype=np.float64) / np.array(shape)
    # Voxel centres of the coarse grid in full-resolution index units, then MNI mm.
    axes = [(np.arange(n) + 0.5) * v - 0.5 for n, v in zip(shape, voxel_mm)]
    mni = tuple(T88_ORIGIN_MM[a] + T88_AXIS_SIGN[a] * axes[a] for a in range(3))
    csf = np.clip(mask - gm - wm, 0, 1)
    brain = mask > 0.5

    in_box = np.ones(shape, dtype=bool)
    for a, (low, high) in enumerate(VENTRICLE_BOX_MM):
        inside = (mni[a] > low) & (mni[a] < high)
        in_box &= inside.reshape([-1 if b == a else 1 for b in range(3)])
    ventricles = (csf > 0.5) & brain & in_box

    grid_mm = np.meshgrid(*mni, indexing="ij")
    hippocampi = np.zeros(shape, dtype=bool)
    for centre in HIPPOCAMPUS_CENTRES_MM:
        distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid_mm, centre, HIPPOCAMPUS_RADII_MM))
        hippocampi |= distance <= 1
    hippocampi &= gm > 0.3
    return TemplateAnatomy(t1, gm, wm, mask, csf, ventricles, hippocampi, mni, voxel_mm)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the measure


@dataclasses.dataclass(frozen=True)
class EffectRegions:
    """Where and how :func:`anatomy_measures` measures, on a study's image grid.

    Attributes:
        ventricle: boolean ``(H, W)`` or ``(X, Y, Z)`` region holding the ventricles
            of every subject (template ventricles widened by :data:`VENTRICLE_MARGIN_MM`).
        hippocampus: boolean hippocampal regions.
        white_matter: boolean core white matter, the per-image intensity reference.
        csf_level, gm_level: the template's ventricle and grey-matter intensity
            relative to its white matter.
        voxel_size: volume of one voxel in mL (3D) or area of one pixel in cm^2 (2D).
    """

    ventricle: np.ndarray
    hippocampus: np.ndarray
    white_matter: np.ndarray
    csf_level: float
    gm_level: float
    voxel_size: float


def _volume_grid(image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The ``(X, Y, Z)`` grid whose regions apply to images of ``image_shape``."""
    if len(image_shape) == 3:
        return tuple(image_shape)  # type: ignore[return-value]
    if len(image_shape) == 2:
        height, width = image_shape  # the transposed axial slice: (Y, X)
        return width, height, max(1, round(width * T88_SHAPE[2] / T88_SHAPE[0]))
    raise ValueError(f"expected a 2D (H, W) or 3D (X, Y, Z) image shape, got {tuple(image_shape)}")


@functools.lru_cache(maxsize=8)
def effect_regions(image_shape: tuple[int, ...], axial_index: int | None = None) -> EffectRegions:
    """The measuring regions for images of ``image_shape`` (``(H, W)`` slices or ``(X, Y, Z)`` volumes).

    Args:
        image_shape: spatial shape of the images, each side at least 18 (about T88 / 9:
            coarser grids lose the ventricles).
        axial_index: for 2D images, the axial slice ``k`` of the volume grid they were
            cut from (default the middle one, as :func:`oasis.loader.extract_axial_slice`).
    """
    image_shape = tuple(int(s) for s in image_shape)
    grid = _volume_grid(image_shape)
    if min(grid) < 18:
        raise ValueError(f"images of shape {image_shape} are too coarse to show the ventricles (each side >= 18)")
    anatomy = template_anatomy(grid)
    brain = anatomy.mask > 0.5
    distance = ndimage.distance_transform_edt(~anatomy.ventricles, sampling=anatomy.voxel_mm)
    ventricle = (distance <= VENTRICLE_MARGIN_MM) & (anatomy.mask > 0.2)
    white_matter = (anatomy.wm > _TISSUE_CORE) & brain
    wm_level = float(anatomy.t1[white_matter].mean())
    csf_level = float(anatomy.t1[anatomy.ventricles].mean()) / wm_level
    gm_level = float(anatomy.t1[(anatomy.gm > _TISSUE_CORE) & brain].mean()) / wm_level
    regions = (ventricle, anatomy.hippocampi, white_matter)
    if len(image_shape) == 2:
        k = grid[2] // 2 if axial_index is None else axial_index
        if not 0 <= k < grid[2]:
            raise IndexError(f"axial index {k} outside 0..{grid[2] - 1}")
        regions = tuple(region[:, :, k].T for region in regions)
        voxel_size = float(np.prod(anatomy.voxel_mm[:2])) / 100.0
    else:
        voxel_size = float(np.prod(anatomy.voxel_mm)) / 1000.0
    if not regions[2].any():
        raise ValueError(f"no core white matter on the grid of {image_shape}: nothing to scale intensities by")
    return EffectRegions(*regions, csf_level=csf_level, gm_level=gm_level, voxel_size=voxel_size)


def anatomy_measures(images: torch.Tensor, axial_index: int | None = None) -> dict[str, np.ndarray]:
    """Ventricle size and hippocampal-region intensity of each image.

    Args:
        images: ``(N, 1, H, W)`` transposed axial slices or ``(N, 1, X, Y, Z)``
            volumes on the T88 field of view, any intensity scale (non-negative).
        axial_index: for slices, see :func:`effect_regions`.

    Returns:
        ``ventricle`` ``(N,)``: CSF volume (mL) or area (cm^2) in the ventricle region;
        ``hippocampus`` ``(N,)``: mean hippocampal-region intensity relative to white matter
        (NaN where the images hold no hippocampal region, as the middle axial slice).
    """
    if images.ndim not in (4, 5) or images.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) or (N, 1, X, Y, Z) images, got {tuple(images.shape)}")
    regions = effect_regions(tuple(images.shape[2:]), axial_index)
    x = images[:, 0].detach().cpu().double().numpy()
    white = x[:, regions.white_matter].mean(1)
    if (white <= 0).any():
        raise ValueError("an image has no intensity in white matter: not a brain image on the T88 grid")
    relative = x / white.reshape(-1, *[1] * (x.ndim - 1))
    csf = np.clip((regions.gm_level - relative[:, regions.ventricle]) / (regions.gm_level - regions.csf_level), 0, 1)
    hippocampus = relative[:, regions.hippocampus]
    return {
        "ventricle": csf.sum(1) * regions.voxel_size,
        "hippocampus": hippocampus.mean(1) if hippocampus.shape[1] else np.full(len(x), np.nan),
    }


@dataclasses.dataclass(frozen=True)
class ClassEffect:
    """Per-class mean and std of the measures of a set of images, and the AD-minus-CN effects.

    Attributes:
        ventricle_cn, ventricle_ad: mean ventricle size per class; ``*_std`` their std (ddof 1).
        hippocampus_cn, hippocampus_ad: mean hippocampal-region intensity per class.
        ventricle_effect, hippocampus_effect: AD minus CN.
        n_cn, n_ad: images per class.
    """

    ventricle_cn: float
    ventricle_cn_std: float
    ventricle_ad: float
    ventricle_ad_std: float
    ventricle_effect: float
    hippocampus_cn: float
    hippocampus_cn_std: float
    hippocampus_ad: float
    hippocampus_ad_std: float
    hippocampus_effect: float
    n_cn: int
    n_ad: int

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) and not np.isnan(values).all() else float("nan")


def class_effect(images: torch.Tensor, labels: torch.Tensor, axial_index: int | None = None) -> ClassEffect:
    """Measure a labelled set (label 0 = CN, 1 = AD) with :func:`anatomy_measures`.

    Raises:
        ValueError: a class has no image.
    """
    y = labels.detach().cpu().numpy().reshape(-1)
    if len(y) != len(images):
        raise ValueError(f"{len(images)} images but {len(y)} labels")
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("the class effect needs images of both classes (label 0 = CN and 1 = AD)")
    measures = anatomy_measures(images, axial_index)
    out: dict[str, Any] = {}
    for name, values in measures.items():
        cn, ad = values[y == 0], values[y == 1]
        out.update({f"{name}_cn": _mean(cn), f"{name}_cn_std": _std(cn), f"{name}_ad": _mean(ad),
                    f"{name}_ad_std": _std(ad), f"{name}_effect": _mean(ad) - _mean(cn)})
    return ClassEffect(**out, n_cn=int((y == 0).sum()), n_ad=int((y == 1).sum()))
