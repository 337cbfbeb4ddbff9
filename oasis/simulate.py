"""An embedded, simulated OASIS-1 cohort, written in the real on-disk layout.

The default data source when no OASIS-1 copy is given. Subjects are generated from
the MNI152 (ICBM 2009a symmetric) T1 template and its grey-/white-matter maps that
nilearn ships *inside its package* (``nilearn/datasets/data/*.nii.gz``, read by
``load_mni152_template``, ``load_mni152_gm_template``, ``load_mni152_wm_template``
and ``load_mni152_brain_mask``, which never download), then written as
``disc<d>/OAS1_XXXX_MR1/PROCESSED/MPRAGE/T88_111/OAS1_XXXX_MR1_mpr_n<3|4>_anon_111_t88_masked_gfc.{hdr,img}``
(Analyze 7.5, int16 big-endian, brain-masked, shape ``(X, Y, Z, 1)``) with an
``oasis_cross-sectional.csv`` in the real column format, so that
:func:`oasis.loader.load_oasis` is what reads it.

Grid. The T88 grid is 176 x 208 x 176 at 1 mm. Voxel ``(i, j, k)`` is placed at
MNI coordinates ``x = 88 - i, y = j - 120, z = k - 76`` (mm): the x axis runs right
to left as nibabel reads an Analyze file (LAS), and the 176 x 208 x 176 mm box holds
the whole template brain (x -72..72, y -107..73, z -72..82). This is an
approximation of Talairach-1988 space (MNI is not T88), good enough for a
simulation; on it the template is resampled by integer shifts only. A smaller
``shape`` covers the same field of view with larger voxels (area averaging).

Per subject (all at the target grid):

* *AD effect* (scaled by ``effect_size`` and by CDR 0.5 / 1 / 2): ventricles are
  enlarged by a displacement field along the gradient of the smoothed ventricle
  mask (CSF within a box around the lateral and third ventricles), the hippocampal
  regions (ellipsoids at MNI (+-28, -22, -14) mm intersected with grey matter) shrink
  by the opposite field, and grey matter next to CSF or the brain surface (the
  cortical ribbon, also the caudate along the ventricles) loses intensity towards
  that of CSF, a thinning at the resolution of the images. Milder versions of the
  three grow with age in both classes, as in real ageing.
* *Subject variability*: a smooth random displacement field (low-frequency cosine
  basis, computed at half resolution and upsampled), a global head-size scaling,
  a global intensity scaling, a smooth multiplicative bias field, and Rician (or
  Gaussian) noise. The background is zeroed outside the warped brain mask (the
  warped template above 0.2, the rule of ``load_mni152_brain_mask``).

Generation is cached: :func:`simulate_cohort` builds the cohort in a temporary
folder beside ``cache_root/<hash of the parameters>/`` and renames it into place
when complete (with a checksum manifest, :func:`augmentor.io.saved_folder`), so a
half-written cohort is never used, and later calls return the existing folder.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm.auto import tqdm

from augmentor.utils.config import Config
from augmentor.utils.io import CorruptSaveError, read_saved_folder, saved_folder, write_bytes, write_json
from oasis.anatomy import area_resize, template_anatomy
from oasis.loader import CSV_COLUMNS, CSV_NAME, T88_FOLDER, T88_SHAPE, OasisData, load_oasis, t88_image_name

__all__ = [
    "CACHE_KIND",
    "GENERATOR_VERSION",
    "SimulationConfig",
    "cohort_hash",
    "default_cache_root",
    "load_simulated",
    "simulate_cohort",
]

# Bump when the generated images change for the same parameters (invalidates caches).
GENERATOR_VERSION = 1
CACHE_KIND = "oasis1-simulated-cohort"

_VENTRICLE_SMOOTH_MM = 5.0
_HIPPOCAMPUS_SMOOTH_MM = 4.0
_CORTEX_SMOOTH_MM = 1.5
# Effect sizes at effect_size = 1 and CDR 1: maximum displacement (mm) and grey-matter loss.
_AD_VENTRICLE_MM = 3.0
_AD_HIPPOCAMPUS_MM = 2.0
_AD_CORTEX_LOSS = 0.3
_CDR_SEVERITY = {0.5: 0.7, 1.0: 1.0, 2.0: 1.3}
_CDR_PROBABILITY = (0.70, 0.28, 0.02)  # CDR 0.5 / 1 / 2 among AD, as in the real table
# Ageing at 80 years (linear from 20), in both classes.
_AGE_VENTRICLE_MM = 1.5
_AGE_HIPPOCAMPUS_MM = 0.5
_AGE_CORTEX_LOSS = 0.1
_MASK_THRESHOLD = 0.2  # nilearn's load_mni152_brain_mask threshold on the template
_INTENSITY_TO_INT16 = 1000.0  # the template's maximum (1.0) maps to about this value


@dataclasses.dataclass
class SimulationConfig(Config):
    """Parameters of a simulated OASIS-1 cohort; every field enters the cache hash.

    Attributes:
        n_cn: number of cognitively normal subjects (label 0).
        n_ad: number of AD subjects (label 1, CDR 0.5 / 1 / 2).
        effect_size: scale of the AD effect (0 = no class difference).
        seed: random seed in [0, 2**32); equal parameters give byte-identical cohorts.
        noise: ``"rician"`` (magnitude MRI) or ``"gaussian"``.
        noise_std: noise standard deviation relative to the white-matter intensity.
        deformation_mm: standard deviation (mm) of the smooth random displacement.
        head_size_std: relative standard deviation of the global head-size scaling.
        intensity_scale_std: relative standard deviation of the global intensity scaling.
        bias_field: amplitude of the log bias field (0.1 is about +-10 %).
        young_cn_fraction: share of CN subjects aged 18-59 whose CDR, MMSE, Educ and
            SES are blank, as for the young controls of the real table.
        shape: grid ``(X, Y, Z)``; smaller than T88 for quick tests (same field of view).
        subjects_per_disc: subjects per ``disc<d>`` folder.
    """

    n_cn: int = 20
    n_ad: int = 20
    effect_size: float = 1.0
    seed: int = 0
    noise: Literal["rician", "gaussian"] = "rician"
    noise_std: float = 0.03
    deformation_mm: float = 2.0
    head_size_std: float = 0.04
    intensity_scale_std: float = 0.1
    bias_field: float = 0.1
    young_cn_fraction: float = 0.5
    shape: tuple[int, int, int] = T88_SHAPE
    subjects_per_disc: int = 40

    def validate(self) -> None:
        for name in ("n_cn", "n_ad"):
            if getattr(self, name) < 0:
                self._fail(name, "must be >= 0")
        if not 0 <= self.seed < 2**32:
            self._fail("seed", f"must lie in [0, 2**32), got {self.seed}")
        if not 1 <= self.n_cn + self.n_ad <= 9999:
            self._fail("n_cn", "n_cn + n_ad must be between 1 and 9999 (four-digit OASIS IDs)")
        scales = ("effect_size", "noise_std", "deformation_mm", "head_size_std", "intensity_scale_std", "bias_field")
        for name in scales:
            if getattr(self, name) < 0:
                self._fail(name, "must be >= 0")
        if self.head_size_std > 0.2:
            self._fail("head_size_std", "must be <= 0.2 (a wider spread of head sizes is not plausible)")
        if self.intensity_scale_std > 0.3:
            self._fail("intensity_scale_std", "must be <= 0.3 (gains are clipped to [0.5, 1.5])")
        if not 0 <= self.young_cn_fraction <= 1:
            self._fail("young_cn_fraction", "must be in [0, 1]")
        # Below about T88 / 9 per axis the ventricles vanish and every image comes out empty.
        if min(self.shape) < 18 or any(s > t for s, t in zip(self.shape, T88_SHAPE)):
            self._fail("shape", f"3 sizes, each between 18 and the T88 grid {T88_SHAPE}")
        if self.subjects_per_disc < 1:
            self._fail("subjects_per_disc", "must be >= 1")


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/geometric-augmentor/oasis-sim`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geometric-augmentor" / "oasis-sim"


def cohort_hash(config: SimulationConfig) -> str:
    """16 hex digits identifying the parameters, the generator version and nilearn's templates."""
    import nilearn

    key = {"config": config.to_dict(), "generator": GENERATOR_VERSION, "nilearn": nilearn.__version__}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- anatomy


@dataclasses.dataclass
class _Anatomy:
    """Everything about the template on one grid that does not depend on the subject.

    Attributes:
        t1: ``(X, Y, Z)`` template T1 in [0, 1] (0 outside the brain).
        cortex_loss: ``(X, Y, Z)`` T1 intensity lost by full cortical thinning.
        ventricle_field, hippocampus_field: ``(3, x, y, z)`` unit displacement fields
            (mm, max length 1) on the half-resolution grid enlarging the ventricles /
            shrinking the hippocampi.
        centre_mm: ``(3,)`` brain centroid in voxel-axis mm coordinates.
        low_coords_mm: ``(3, x, y, z)`` voxel-axis mm coordinates of the half-resolution grid.
        voxel_mm: ``(3,)`` voxel size.
        wm_intensity: mean T1 of white matter (reference for the noise level).
        low_identity: ``(3, x, y, z)`` identity sampling grid on the half-resolution grid,
            in torch's normalised ``(W, H, D)`` coordinate order.
    """

    t1: torch.Tensor
    cortex_loss: torch.Tensor
    ventricle_field: np.ndarray
    hippocampus_field: np.ndarray
    centre_mm: np.ndarray
    low_coords_mm: np.ndarray
    voxel_mm: np.ndarray
    wm_intensity: float
    low_identity: np.ndarray


def _unit_gradient_field(region: np.ndarray, smooth_mm: float, voxel_mm: np.ndarray) -> np.ndarray:
    """``(3, X, Y, Z)`` gradient (in mm) of the smoothed region, scaled to a maximum length of 1."""
    smooth = ndimage.gaussian_filter(region.astype(np.float32), smooth_mm / voxel_mm)
    gradient = np.stack([g / v for g, v in zip(np.gradient(smooth), voxel_mm)])
    return gradient / max(float(np.sqrt((gradient**2).sum(0)).max()), 1e-12)


@functools.lru_cache(maxsize=2)
def _anatomy(shape: tuple[int, int, int]) -> _Anatomy:
    """Load nilearn's packaged MNI152 maps and derive the subject-independent fields on ``shape``."""
    template = template_anatomy(shape)
    t1, gm, wm, mask, csf = template.t1, template.gm, template.wm, template.mask, template.csf
    ventricles, hippocampi, voxel_mm = template.ventricles, template.hippocampi, template.voxel_mm
    brain = mask > 0.5

    # Thinning acts where grey matter borders CSF or the outside of the brain.
    outside = np.clip(csf + (1 - mask), 0, 1)
    near_csf = np.clip(2 * ndimage.gaussian_filter(outside, _CORTEX_SMOOTH_MM / voxel_mm), 0, 1)
    gm_intensity = float(t1[(gm > 0.8) & brain].mean())
    csf_intensity = float(t1[(csf > 0.8) & brain].mean())
    cortex_loss = gm * near_csf * (gm_intensity - csf_intensity)

    low_shape = _low_shape(shape)
    ventricle_field = area_resize(_unit_gradient_field(ventricles, _VENTRICLE_SMOOTH_MM, voxel_mm), low_shape)
    hippocampus_field = -area_resize(_unit_gradient_field(hippocampi, _HIPPOCAMPUS_SMOOTH_MM, voxel_mm), low_shape)
    # Voxel-axis mm coordinates (index * voxel size), the frame the displacements live in.
    low_axes = [np.linspace(0, (n - 1) * v, m) for n, v, m in zip(shape, voxel_mm, low_shape)]
    low_coords_mm = np.stack(np.meshgrid(*low_axes, indexing="ij")).astype(np.float32)
    centre_mm = np.argwhere(brain).mean(0) * voxel_mm
    return _Anatomy(
        t1=torch.from_numpy(t1),
        cortex_loss=torch.from_numpy(cortex_loss.astype(np.float32)),
        ventricle_field=ventricle_field,
        hippocampus_field=hippocampus_field,
        centre_mm=centre_mm,
        low_coords_mm=low_coords_mm,
        voxel_mm=voxel_mm,
        wm_intensity=float(t1[(wm > 0.8) & brain].mean()),
        low_identity=np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in low_shape], indexing="ij")[::-1]),
    )


def _low_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Half-resolution grid on which smooth fields are computed before upsampling."""
    return tuple(max(4, n // 2) for n in shape)  # type: ignore[return-value]


def _smooth_random_field(rng: np.random.Generator, shape: tuple[int, ...], channels: int, order: int) -> np.ndarray:
    """``(channels, *shape)`` smooth random field with zero mean and unit standard deviation per channel.

    A sum of separable cosines of frequency 0..order-1 per axis with coefficients
    decaying as 1 / (1 + |k|^2): cheap, smooth and free of boundary artefacts.
    """
    bases = [np.cos(np.pi * np.outer((np.arange(n) + 0.5) / n, np.arange(order))) for n in shape]
    k2 = sum(np.meshgrid(*[np.arange(order) ** 2] * 3, indexing="ij"))
    fields = []
    for _ in range(channels):
        coefficients = rng.standard_normal((order,) * 3) / (1.0 + k2)
        field = np.einsum("pqr,ip,jq,kr->ijk", coefficients, *bases, optimize=True)
        fields.append((field - field.mean()) / max(float(field.std()), 1e-12))
    return np.stack(fields).astype(np.float32)


# --------------------------------------------------------------------------- subjects


@dataclasses.dataclass
class _Subject:
    """Clinical record and simulation severities of one subject."""

    subject_id: str
    disc: int
    n_averages: int
    row: dict[str, Any]
    head_scale: float
    ad_severity: float
    age_fraction: float


def _demographics(config: SimulationConfig, rng: np.random.Generator) -> list[_Subject]:
    """Labels in random order and plausible clinical values per class (see the real table)."""
    labels = rng.permutation(np.array([0] * config.n_cn + [1] * config.n_ad))
    subjects = []
    for index, label in enumerate(labels):
        subject_id = f"OAS1_{index + 1:04d}_MR1"
        male = bool(rng.random() < 0.4)
        young = label == 0 and bool(rng.random() < config.young_cn_fraction)
        if label == 1:
            age = int(np.clip(round(rng.normal(77, 7)), 62, 96))
            cdr = float(rng.choice(list(_CDR_SEVERITY), p=_CDR_PROBABILITY))
            mmse = int(np.clip(round(rng.normal({0.5: 25.5, 1.0: 21.0, 2.0: 16.0}[cdr], 3)), 4, 30))
            severity = config.effect_size * _CDR_SEVERITY[cdr] * float(rng.uniform(0.75, 1.25))
        elif young:
            age, cdr, mmse, severity = int(rng.integers(18, 60)), None, None, 0.0
        else:
            age = int(np.clip(round(rng.normal(73, 9)), 60, 94))
            cdr, mmse, severity = 0.0, int(np.clip(round(rng.normal(29, 1.2)), 25, 30)), 0.0
        age_fraction = float(np.clip((age - 20) / 60, 0, None))
        head_scale = float(rng.normal(1.03 if male else 0.98, config.head_size_std))
        etiv = round(1480 * head_scale**3)
        nwbv = 0.86 - 0.0022 * (age - 18) - 0.03 * severity + rng.normal(0, 0.01)
        row = {
            "ID": subject_id,
            "M/F": "M" if male else "F",
            "Hand": "R",
            "Age": age,
            "Educ": "" if young else int(rng.integers(1, 6)),
            "SES": "" if young else int(rng.integers(1, 6)),
            "MMSE": "" if mmse is None else mmse,
            "CDR": "" if cdr is None else f"{cdr:g}",
            "eTIV": etiv,
            "nWBV": f"{nwbv:.3f}",
            "ASF": f"{1755 / etiv:.3f}",
            "Delay": "",
        }
        n_averages = 3 if rng.random() < 0.3 else 4
        disc = index // config.subjects_per_disc + 1
        subjects.append(_Subject(subject_id, disc, n_averages, row, head_scale, severity, age_fraction))
    return subjects


def _simulate_volume(subject: _Subject, config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """One brain-masked T1 volume ``(X, Y, Z)`` as int16."""
    anatomy = _anatomy(config.shape)
    shape = config.shape
    low_shape = _low_shape(shape)

    ventricle_mm = _AGE_VENTRICLE_MM * subject.age_fraction + _AD_VENTRICLE_MM * subject.ad_severity
    hippocampus_mm = _AGE_HIPPOCAMPUS_MM * subject.age_fraction + _AD_HIPPOCAMPUS_MM * subject.ad_severity
    cortex_loss = min(0.8, _AGE_CORTEX_LOSS * subject.age_fraction + _AD_CORTEX_LOSS * subject.ad_severity)

    # Displacement (mm, voxel axes) where each output voxel samples the template:
    # output(p) = template(p + u(p)); a head scale s > 1 samples closer to the centre.
    random_mm = config.deformation_mm * _smooth_random_field(rng, low_shape, 3, order=4)
    centre = anatomy.centre_mm.reshape(3, 1, 1, 1)
    scale_mm = (anatomy.low_coords_mm - centre) * (1 / subject.head_scale - 1)
    displacement_mm = (
        random_mm
        + scale_mm
        + ventricle_mm * anatomy.ventricle_field
        + hippocampus_mm * anatomy.hippocampus_field
    )
    log_bias = config.bias_field * _smooth_random_field(rng, low_shape, 1, order=3)
    # Smooth fields live at half resolution; upsampling the sampling grid itself (identity
    # plus displacement, exact for the linear identity) saves a full-resolution addition.
    # torch orders grid coordinates (W, H, D) = voxel axes (2, 1, 0), normalised to [-1, 1].
    to_normalised = (2 / (anatomy.voxel_mm * (np.array(shape) - 1))).reshape(3, 1, 1, 1)
    low = np.concatenate([anatomy.low_identity + (displacement_mm * to_normalised)[::-1], log_bias])
    # Channels-last output gives grid_sample its (X, Y, Z, 3) grid as a view, without a copy.
    low_tensor = torch.from_numpy(low.astype(np.float32))[None].contiguous(memory_format=torch.channels_last_3d)
    fields = F.interpolate(low_tensor, size=shape, mode="trilinear", align_corners=True)[0]
    template = torch.add(anatomy.t1, anatomy.cortex_loss, alpha=-cortex_loss)[None, None]
    # grid_sample on CPU parallelises over the batch only: cut the grid into slabs along
    # the first axis, one per thread, sampling the same (expanded, not copied) template.
    slabs = max(k for k in range(1, torch.get_num_threads() + 1) if shape[0] % k == 0)
    grid = fields[:3].permute(1, 2, 3, 0).reshape(slabs, shape[0] // slabs, *shape[1:], 3)
    warped = F.grid_sample(
        template.expand(slabs, -1, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    ).reshape(shape)

    # In-place operations: each full-resolution pass costs about as much as the arithmetic.
    gain = float(np.clip(rng.normal(1.0, config.intensity_scale_std), 0.5, 1.5))
    image = warped.clamp_min(0).mul_(fields[3].exp())
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    noise = torch.randn((2, *shape), generator=generator).mul_(config.noise_std * anatomy.wm_intensity)
    if config.noise == "rician":
        image = torch.hypot(image.add_(noise[0]), noise[1])
    else:
        image = image.add_(noise[0]).clamp_min_(0)
    # The brain mask follows the warp: nilearn's own rule (template > 0.2) on the warped template.
    image.masked_fill_(warped <= _MASK_THRESHOLD, 0)
    return image.mul_(gain * _INTENSITY_TO_INT16).round_().clamp_(0, 32767).numpy().astype(np.int16)


def _analyze_bytes(volume: np.ndarray, voxel_mm: np.ndarray) -> tuple[bytes, bytes]:
    """``(.hdr, .img)`` bytes of an Analyze 7.5 int16 big-endian ``(X, Y, Z, 1)`` image."""
    import nibabel as nib

    header = nib.AnalyzeHeader(endianness=">")
    header.set_data_dtype(np.int16)
    header.set_data_shape((*volume.shape, 1))
    header.set_zooms((*(float(v) for v in voxel_mm), 1.0))
    image = nib.AnalyzeImage(volume[..., None], None, header=header)
    file_map = nib.AnalyzeImage.make_file_map({"header": io.BytesIO(), "image": io.BytesIO()})
    image.to_file_map(file_map)
    return file_map["header"].fileobj.getvalue(), file_map["image"].fileobj.getvalue()


def _generate(config: SimulationConfig, folder: Path, progress: bool) -> None:
    """Write the whole cohort (images, clinical table, parameters) into ``folder``."""
    import nilearn

    seeds = np.random.SeedSequence(config.seed).spawn(config.n_cn + config.n_ad + 1)
    subjects = _demographics(config, np.random.default_rng(seeds[0]))
    voxel_mm = _anatomy(config.shape).voxel_mm
    for subject, seed in zip(tqdm(subjects, desc="Simulating OASIS-1 cohort", disable=not progress), seeds[1:]):
        volume = _simulate_volume(subject, config, np.random.default_rng(seed))
        header, data = _analyze_bytes(volume, voxel_mm)
        t88 = folder / f"disc{subject.disc}" / subject.subject_id / T88_FOLDER
        name = t88_image_name(subject.subject_id, subject.n_averages)
        write_bytes(t88 / name.replace(".img", ".hdr"), header)
        write_bytes(t88 / name, data)
    table = pd.DataFrame([s.row for s in subjects], columns=list(CSV_COLUMNS))
    write_bytes(folder / CSV_NAME, table.to_csv(index=False).encode())
    write_json(
        folder / "simulation.json",
        {
            "config": config.to_dict(),
            "generator_version": GENERATOR_VERSION,
            "nilearn_version": nilearn.__version__,
            "note": "simulated from nilearn's MNI152 template; not real OASIS-1 data",
        },
    )


# --------------------------------------------------------------------------- public API


def simulate_cohort(
    config: SimulationConfig | None = None, cache_root: str | Path | None = None, *, progress: bool = True
) -> Path:
    """Return the folder of the simulated cohort for ``config``, generating it on first use.

    Args:
        config: simulation parameters (default :class:`SimulationConfig()`).
        cache_root: where cohorts are cached; default :func:`default_cache_root`.
        progress: show a progress bar while generating.

    Returns:
        ``cache_root/<cohort_hash(config)>``, laid out like the OASIS-1 distribution
        (``disc*/OAS1_XXXX_MR1/...`` and ``oasis_cross-sectional.csv``).

    Raises:
        CorruptSaveError: the cached folder exists but is incomplete or modified
            (delete it to regenerate).
    """
    config = SimulationConfig() if config is None else config
    root = default_cache_root() if cache_root is None else Path(cache_root)
    target = root / cohort_hash(config)
    if not target.exists():
        try:
            with saved_folder(target, CACHE_KIND) as tmp:
                _generate(config, tmp, progress)
        except OSError:
            # Another process may have published the same cohort first; use it if so.
            if not target.is_dir():
                raise
    try:
        return read_saved_folder(target, CACHE_KIND)
    except CorruptSaveError as err:
        raise CorruptSaveError(f"{err}; delete {target} to generate the cohort again") from err


def load_simulated(
    config: SimulationConfig | None = None,
    cache_root: str | Path | None = None,
    *,
    progress: bool = True,
    **loader_options: Any,
) -> OasisData:
    """Simulate (or reuse) a cohort and read it with :func:`oasis.loader.load_oasis`.

    ``loader_options`` are passed on (``dim``, ``slice_index``, ``image_size``,
    ``downsample``, ``cohort``); the data ``source`` says the data are simulated.
    """
    folder = simulate_cohort(config, cache_root, progress=progress)
    data = load_oasis(folder, progress=progress, **loader_options)
    data.source = f"simulated cohort {data.source}"
    return data
