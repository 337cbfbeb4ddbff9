"""Training loop for the VAEs of :mod:`augmentor.models`, following App. E of the paper.

Adam, learning rate halved when the validation loss stalls (``ReduceLROnPlateau``),
the weights of the best validation epoch kept, optional early stopping, TensorBoard
logging and resumable checkpoints.

Two budgets: ``epochs`` (passes over the training images, the paper's set-up) or
``max_steps`` (optimiser steps, whatever the number of images). With per-class
VAEs an epoch budget starves the small class: a class of 20 images gets one step
per epoch where a class of 200 gets ten. A step budget gives every class the same
number of updates; the validation loss is then evaluated every ``eval_every``
steps, and the patience settings count those evaluations.

A run is deterministic under its seed on CPU, and a run interrupted and resumed
from its checkpoint ends with exactly the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path
import contextlib
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm.auto import tqdm

from augmentor.utils.batching import index_batches
from augmentor.utils.config import Config
from augmentor.data.inputs import check_images
from augmentor.utils.devices import DEVICE_CHOICES, is_device_name, resolve_device
from augmentor.utils.io import load_tensors, save_tensors
from augmentor.models.vae import VAEConfig
from augmentor.utils.seeding import seed_everything

__all__ = [
    "CHECKPOINT_NAME", "RUN_ONLY_SETTINGS", "SPEED_SETTINGS", "TrainerConfig", "TrainingDivergedError",
    "TrainingResult", "random_flips", "result_settings", "train_vae", "validation_size",
]

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of the checkpoint written into ``checkpoint_dir``."""

RUN_ONLY_SETTINGS = ("progress", "device", "checkpoint_every_s", "data_on_device")
"""Fields of :class:`TrainerConfig` that do not change the trained weights (left out of run identities)."""

SPEED_SETTINGS: dict[str, Any] = {"mixed_precision": None, "channels_last": False, "compile": False}
"""Fields of :class:`TrainerConfig` that trade exactness for speed, with the defaults that train exactly as
without them (the weights then do not depend on these fields)."""

# Left out of run identities and checkpoint fingerprints at these values, so that runs
# recorded before the settings existed still match.
_OMITTED_AT_DEFAULT: dict[str, Any] = {**SPEED_SETTINGS, "weight_decay": 0.0, "flip_axes": []}

# Settings that may change between an interrupted run and its resumption
# without changing the result of the epochs already run.
_RESUMABLE_CHANGES = ("epochs", "image_log_every", *RUN_ONLY_SETTINGS)


@dataclasses.dataclass
class TrainerConfig(Config):
    """Optimisation settings (defaults: the paper's benchmark set-up, App. E).

    Args:
        epochs: maximum number of epochs (ignored when ``max_steps`` is set).
        batch_size: images per optimisation step (at most the number of training
            images under ``max_steps``).
        lr: initial Adam learning rate.
        lr_patience: evaluations without validation improvement before the
            learning rate is halved (one evaluation per epoch, or per
            ``eval_every`` steps under ``max_steps``).
        early_stopping_patience: evaluations without validation improvement
            before training stops; ``None`` never stops early.
        val_fraction: share of ``images`` held out for validation when no
            validation set is given (disjoint from the training images).
        min_val_images: fewest images held out for validation (while at least one
            image, two where batch normalisation needs them, remains for
            training), so that a small class still has a validation loss worth
            stopping on.
        max_steps: optimiser steps to train for, the same for every data set
            size; ``None`` trains for ``epochs`` epochs instead. Each step takes
            ``min(batch_size, n_train)`` images from a reshuffled stream of the
            training images (no image twice in a batch; the remainder of a pass
            too small for a batch is skipped, and the next pass reshuffles).
        eval_every: optimiser steps between validation evaluations under
            ``max_steps`` (the last interval may be shorter).
        seed: seed of the split, the shuffling, the initial weights' RNG and the
            reparameterisation noise.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        progress: show a tqdm progress bar.
        grad_clip: clip the gradient norm to this value; ``None`` does not clip.
        image_log_every: log validation reconstructions to TensorBoard every this
            many epochs (0: never).
        checkpoint_every_s: least seconds between two checkpoints (with a
            ``checkpoint_dir``); the last round always writes one. A checkpoint
            holds the weights, Adam's moments and the best weights: 0.6 GB for the
            OASIS paper VAE, about 2 s to write on a 2-core machine, which can exceed
            a whole epoch on a GPU. 0 writes one after
            every round. A run stopped between two checkpoints resumes from the
            earlier one (and still ends with the same weights).
        data_on_device: copy the training and validation images to the device
            once, instead of every batch from host memory (the same weights);
            false for an image set larger than the device's memory.
        mixed_precision: ``"bf16"`` runs the model's forward pass and loss under
            bfloat16 autocast (CUDA with bfloat16 support, or the CPU), the loss
            returned in float32; ``None`` trains in float32. Changes the weights
            (within bfloat16 rounding).
        channels_last: train convolutional models in the channels-last memory
            layout (``channels_last`` for images, ``channels_last_3d`` for
            volumes), which GPU convolution kernels prefer; no effect on MLPs.
            The weights may differ in the last bits.
        compile: run the loss through ``torch.compile`` (traced at the first
            steps; needs a C++ compiler on the CPU). The weights may differ in
            the last bits, and the reparameterisation noise comes from the
            compiler's generator.
        weight_decay: decoupled weight decay (AdamW) of every parameter; 0 trains
            with plain Adam.
        flip_axes: spatial axes (0 = the first of ``H, W[, D]``) along which each
            training image is mirrored with probability 1/2, drawn anew at every
            step (a left-right flip doubles the images a small class offers, e.g.
            the x axis of atlas-registered brains); validation images are never
            flipped. Empty: no flips.
    """

    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_patience: int = 5
    early_stopping_patience: int | None = 20
    val_fraction: float = 0.2
    min_val_images: int = 1
    max_steps: int | None = None
    eval_every: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    grad_clip: float | None = None
    image_log_every: int = 10
    checkpoint_every_s: float = 60.0
    data_on_device: bool = True
    mixed_precision: Literal["bf16"] | None = None
    channels_last: bool = False
    compile: bool = False
    weight_decay: float = 0.0
    flip_axes: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.epochs < 1:
            self._fail("epochs", f"must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            self._fail("batch_size", f"must be at least 1, got {self.batch_size}")
        if not (0 < self.lr < math.inf):
            self._fail("lr", f"must be a positive number, got {self.lr}")
        if self.lr_patience < 0:
            self._fail("lr_patience", f"must be 0 or more, got {self.lr_patience}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            self._fail("early_stopping_patience", f"must be at least 1 or null, got {self.early_stopping_patience}")
        if not (0 < self.val_fraction < 1):
            self._fail("val_fraction", f"must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.min_val_images < 1:
            self._fail("min_val_images", f"must be at least 1, got {self.min_val_images}")
        if self.max_steps is not None and self.max_steps < 1:
            self._fail("max_steps", f"must be at least 1 or null, got {self.max_steps}")
        if self.eval_every < 1:
            self._fail("eval_every", f"must be at least 1, got {self.eval_every}")
        if not (0 <= self.seed < 2**32):
            self._fail("seed", f"must lie in [0, 2**32), got {self.seed}")
        if not is_device_name(self.device):
            self._fail("device", f"must be {DEVICE_CHOICES}, got {self.device!r}")
        if self.grad_clip is not None and not (0 < self.grad_clip < math.inf):
            self._fail("grad_clip", f"must be a positive number or null, got {self.grad_clip}")
        if self.image_log_every < 0:
            self._fail("image_log_every", f"must be 0 (never) or more, got {self.image_log_every}")
        if not (0 <= self.checkpoint_every_s < math.inf):
            self._fail("checkpoint_every_s", f"must be a number of seconds >= 0, got {self.checkpoint_every_s}")
        if not (0 <= self.weight_decay < math.inf):
            self._fail("weight_decay", f"must be a number >= 0, got {self.weight_decay}")
        if any(axis < 0 for axis in self.flip_axes) or len(set(self.flip_axes)) != len(self.flip_axes):
            self._fail("flip_axes", f"must be distinct spatial axes 0, 1[, 2], got {list(self.flip_axes)}")


def result_settings(trainer: dict[str, Any]) -> dict[str, Any]:
    """The trainer settings the trained weights depend on, for run identities and checkpoints.

    ``trainer`` (a :meth:`TrainerConfig.to_dict`) without :data:`RUN_ONLY_SETTINGS`
    and without the :data:`SPEED_SETTINGS` left at their defaults, so that runs and
    checkpoints recorded before those settings existed still match.
    """
    return {
        key: value for key, value in trainer.items()
        if key not in RUN_ONLY_SETTINGS and not (key in _OMITTED_AT_DEFAULT and value == _OMITTED_AT_DEFAULT[key])
    }


@dataclasses.dataclass
class TrainingResult:
    """Outcome of :func:`train_vae`.

    Attributes:
        history: one dict per evaluation (per epoch, or per ``eval_every`` steps)
            with ``epoch`` (the evaluation's index), ``step`` (optimiser steps so
            far), ``lr`` and the train/validation entries of ``model.loss`` (the
            VAE's ``loss``, ``recon`` and ``kl``), per-image means.
        best_epoch: evaluation (0-based) whose weights were kept.
        best_val_loss: validation loss of that evaluation.
        epochs_run: evaluations completed, counting those before a resumption.
        stopped_early: whether early stopping ended the run.
        steps_run: optimiser steps taken, counting those before a resumption.
        n_train, n_val: images trained on and held out for validation.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    steps_run: int = 0
    n_train: int = 0
    n_val: int = 0


def _digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().data).hexdigest()


def validation_size(n_images: int, config: TrainerConfig, min_train_images: int = 1) -> int:
    """Images :func:`train_vae` holds out for validation from ``n_images`` (no ``val_images`` given).

    ``round(n_images * val_fraction)``, raised to ``min_val_images``, and lowered
    so that at least ``min_train_images`` remain for training (and at least one
    is held out).
    """
    wanted = max(config.min_val_images, round(n_images * config.val_fraction))
    return max(1, min(n_images - min_train_images, wanted))


def _split(
    images: torch.Tensor, val_images: torch.Tensor | None, config: TrainerConfig, generator: torch.Generator,
    min_train_images: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation sets, disjoint; without ``val_images`` a random split of ``images``."""
    if val_images is not None:
        seen = {_digest(image) for image in images}
        shared = sum(_digest(image) in seen for image in val_images)
        if shared:
            raise ValueError(
                f"{shared} of the {len(val_images)} val_images also appear in images; "
                "the validation set must be disjoint from the training set"
            )
        return images, val_images
    n = len(images)
    n_val = validation_size(n, config, min_train_images)
    order = torch.randperm(n, generator=generator)
    return images[order[n_val:]], images[order[:n_val]]


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


LossFunction = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def _memory_format(model: nn.Module, config: TrainerConfig) -> torch.memory_format | None:
    """The channels-last layout of the model's convolutions, or None (not asked for, or no convolution)."""
    if not config.channels_last:
        return None
    kinds = {type(m) for m in model.modules()}
    if nn.Conv3d in kinds or nn.ConvTranspose3d in kinds:
        return torch.channels_last_3d
    if nn.Conv2d in kinds or nn.ConvTranspose2d in kinds:
        return torch.channels_last
    return None


def _loss_function(model: nn.Module, config: TrainerConfig, device: torch.device) -> LossFunction:
    """``model.loss`` with the trainer's speed settings (:data:`SPEED_SETTINGS`); at their defaults, itself.

    Raises:
        ValueError: bfloat16 asked for on a device without it.
    """
    memory_format = _memory_format(model, config)
    if memory_format is not None:
        model.to(memory_format=memory_format)
    loss: LossFunction = torch.compile(model.loss) if config.compile else model.loss
    if config.mixed_precision is None and memory_format is None:
        return loss
    if config.mixed_precision == "bf16" and not (
            device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        raise ValueError(f"trainer.mixed_precision='bf16' needs a CUDA device with bfloat16 or the CPU, "
                         f"not {device}; set it to null")

    def with_speed_settings(x: torch.Tensor) -> dict[str, torch.Tensor]:
        if memory_format is not None:
            x = x.contiguous(memory_format=memory_format)
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.mixed_precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            losses = loss(x)
        return {key: value.float() for key, value in losses.items()}

    return with_speed_settings


def _check_finite(means: dict[str, float]) -> None:
    """Refuse a round whose loss was not finite (a NaN or infinite batch loss makes the sum so too).

    Checked once per round rather than per batch: reading a value every batch would
    make the host wait for the device at every step.
    """
    if not math.isfinite(means["loss"]):
        raise TrainingDivergedError(
            f"the loss became {means['loss']}; lower the learning rate, "
            "set grad_clip or bound the log-variance (VAEConfig.log_var_bound)"
        )


def _add(totals: dict[str, torch.Tensor], losses: dict[str, torch.Tensor], weight: int) -> None:
    """Add ``weight`` x each loss to ``totals``, in float64 on the device.

    The same sums, bit for bit, as adding ``value.item() * weight`` in Python
    floats, without a device-to-host read per batch.
    """
    for key, value in losses.items():
        term = value.detach().double() * weight
        totals[key] = totals[key] + term if key in totals else term


def _optimiser_step(
    loss: LossFunction, model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer, config: TrainerConfig
) -> dict[str, torch.Tensor]:
    """One Adam step on the batch ``x``; returns its losses."""
    losses = loss(x)
    optimizer.zero_grad()
    losses["loss"].backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return losses


def _run_epoch(
    model: nn.Module,
    data: torch.Tensor,
    config: TrainerConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    loss: LossFunction | None = None,
) -> dict[str, float]:
    """One pass over ``data``; trains when ``optimizer`` is given. Returns per-image means and ``steps``."""
    training = optimizer is not None
    loss = loss or model.loss
    model.train(training)
    order = torch.randperm(len(data), generator=generator) if training else torch.arange(len(data))
    totals: dict[str, torch.Tensor] = {}
    batches = index_batches(order, config.batch_size)
    with torch.set_grad_enabled(training):
        for index in batches:
            x = data[index]
            if training:
                x = random_flips(x, config.flip_axes, generator)
            x = x.to(device)
            _add(totals, _optimiser_step(loss, model, x, optimizer, config) if training else loss(x), len(index))
    means = {key: value.item() / len(data) for key, value in totals.items()}
    _check_finite(means)
    return {**means, "steps": len(batches) if training else 0}


def random_flips(x: torch.Tensor, axes: Sequence[int], generator: torch.Generator | None) -> torch.Tensor:
    """Mirror each image of ``x`` ``(B, C, H, W[, D])`` along each of the spatial ``axes`` with probability 1/2.

    The coin flips come from ``generator`` (one per image and axis, axis by axis), so a
    seeded run flips the same images; without ``axes``, ``x`` itself and no draw.

    Raises:
        ValueError: an axis beyond the images' spatial dimensions.
    """
    if not axes:
        return x
    spatial = x.ndim - 2
    if max(axes) >= spatial:
        raise ValueError(f"trainer.flip_axes={list(axes)} names an axis beyond the {spatial} spatial axes of the images")
    for axis in axes:
        flip = (torch.rand(len(x), generator=generator) < 0.5).view(-1, *[1] * (x.ndim - 1))
        x = torch.where(flip.to(x.device), x.flip(axis + 2), x)
    return x


def _next_batch(stream: dict[str, Any], n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """The next ``batch_size`` indices of a reshuffled stream over ``range(n)``.

    ``stream`` (``order`` and ``cursor``) lives in the checkpointed progress record,
    so a resumed run continues the very same stream.
    """
    if stream["cursor"] + batch_size > len(stream["order"]):
        stream["order"], stream["cursor"] = torch.randperm(n, generator=generator), 0
    start = stream["cursor"]
    stream["cursor"] = start + batch_size
    return stream["order"][start : start + batch_size]


def _run_steps(
    run: "_Run", data: torch.Tensor, n_steps: int, config: TrainerConfig, stream: dict[str, Any]
) -> dict[str, float]:
    """``n_steps`` optimiser steps on batches of ``stream``; returns per-image means and ``steps``."""
    run.model.train(True)
    batch_size = min(config.batch_size, len(data))
    totals: dict[str, torch.Tensor] = {}
    for _ in range(n_steps):
        x = data[_next_batch(stream, len(data), batch_size, run.generator)]
        x = random_flips(x, config.flip_axes, run.generator).to(run.device)
        _add(totals, _optimiser_step(run.loss, run.model, x, run.optimizer, config), 1)
    means = {key: value.item() / n_steps for key, value in totals.items()}
    _check_finite(means)
    return {**means, "steps": n_steps}


def _image_grid(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Originals over reconstructions, side by side: ``(C, 2H, n W)`` from ``(n, C, H, W[, D])``.

    Volumes show their middle slice along the last axis; images with other than
    1 or 3 channels show their first channel.
    """
    pair = torch.stack([images, recon])
    if pair.ndim == 6:
        pair = pair[..., pair.shape[-1] // 2]
    if pair.shape[2] not in (1, 3):
        pair = pair[:, :, :1]
    rows = [torch.cat(list(row), dim=-1) for row in pair]
    return torch.cat(rows, dim=-2).clamp(0, 1)


def _log_epoch(
    writer: Any, model: nn.Module, val: torch.Tensor, record: dict[str, float], config: TrainerConfig
) -> None:
    """Per-epoch scalars, and validation reconstructions every ``config.image_log_every`` epochs."""
    epoch = int(record["epoch"])
    for key, value in record.items():
        if key != "epoch":
            writer.add_scalar(key.replace("_", "/", 1), value, epoch)
    if config.image_log_every and epoch % config.image_log_every == 0:
        model.eval()
        x = val[:8].to(next(model.parameters()).device)
        # Decode the posterior means: the display must not draw from the RNG,
        # or logging would change the training run.
        with torch.no_grad():
            recon = model.decode(model.encode(x)[0])
        writer.add_image("val/reconstruction", _image_grid(x.cpu(), recon.cpu()), epoch, dataformats="CHW")
    writer.flush()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def _rng_state(device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    # Only torch generators feed training (shuffling and reparameterisation
    # noise); the noise lives on the device's own generator off the CPU.
    state = {"cpu": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device, generator: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"])
    generator.set_state(state["shuffle"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def _fingerprint(
    config: TrainerConfig, vae_config: VAEConfig, train: torch.Tensor, val: torch.Tensor
) -> dict[str, Any]:
    """What must be unchanged for a checkpoint to be resumed."""
    trainer = {k: v for k, v in result_settings(config.to_dict()).items() if k not in _RESUMABLE_CHANGES}
    return {
        "trainer": trainer,
        "model": vae_config.to_dict(),
        "n_train": len(train),
        "n_val": len(val),
        "train_sha256": _digest(train),
        "val_sha256": _digest(val),
    }


@dataclasses.dataclass
class _Run:
    """The state one training run carries from epoch to epoch (all of it checkpointed)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: ReduceLROnPlateau
    generator: torch.Generator
    device: torch.device
    fingerprint: dict[str, Any]
    loss: LossFunction


def _new_progress() -> dict[str, Any]:
    """The progress record of a run that has not trained yet."""
    return {
        "epoch": 0,
        "steps": 0,
        "stream": {"order": torch.zeros(0, dtype=torch.int64), "cursor": 0},
        "history": [],
        "best_state": None,
        "best_epoch": -1,
        "best_val_loss": math.inf,
        "bad_epochs": 0,
        "stopped_early": False,
    }


def _vae_config(model: nn.Module) -> VAEConfig:
    vae_config = getattr(model, "config", None)
    if not isinstance(vae_config, VAEConfig):
        raise TypeError(
            f"model must carry a VAEConfig in .config (build it with build_vae), got {type(model).__name__}"
        )
    return vae_config


def _start_run(
    model: nn.Module, config: TrainerConfig, train: torch.Tensor, val: torch.Tensor, generator: torch.Generator,
    device: torch.device,
) -> _Run:
    """Adam and the plateau schedule of a fresh run, on ``device``."""
    model.to(device)
    loss = _loss_function(model, config, device)  # before Adam: channels-last may replace the parameters
    optimizer = (torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
                 if config.weight_decay else torch.optim.Adam(model.parameters(), lr=config.lr))
    scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=config.lr_patience)
    return _Run(model, optimizer, scheduler, generator, device, _fingerprint(config, model.config, train, val), loss)


def _resume(path: Path, run: _Run, epochs: int) -> dict[str, Any]:
    """Restore a run from the checkpoint ``path``; returns its progress record."""
    checkpoint = load_tensors(path)
    if checkpoint["fingerprint"] != run.fingerprint:
        differs = sorted(k for k in run.fingerprint if checkpoint["fingerprint"].get(k) != run.fingerprint[k])
        raise ValueError(
            f"checkpoint {path} belongs to a different run (differs in: {', '.join(differs)}); "
            "use a new checkpoint_dir or delete the checkpoint"
        )
    progress = checkpoint["progress"]
    if progress["epoch"] > epochs:
        raise ValueError(f"checkpoint {path} has already run {progress['epoch']} epochs, more than epochs={epochs}")
    if "steps" not in progress:
        raise ValueError(f"checkpoint {path} was written by an older version; use a new checkpoint_dir or delete it")
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    _set_rng_state(checkpoint["rng"], run.device, run.generator)
    return progress


def _save_checkpoint(path: Path, run: _Run, progress: dict[str, Any]) -> None:
    save_tensors(
        path,
        {
            "format_version": 1,
            "fingerprint": run.fingerprint,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": _rng_state(run.device, run.generator),
            "progress": progress,
        },
    )


def _n_rounds(config: TrainerConfig) -> int:
    """Evaluations of a full run: one per epoch, or one per ``eval_every`` steps under ``max_steps``."""
    if config.max_steps is None:
        return config.epochs
    return math.ceil(config.max_steps / config.eval_every)


def _train_one_epoch(
    run: _Run, train: torch.Tensor, val: torch.Tensor, epoch: int, config: TrainerConfig, progress: dict[str, Any]
) -> dict[str, float]:
    """Train one round (an epoch, or ``eval_every`` steps), evaluate on ``val``, step the schedule.

    Returns the round's record.
    """
    lr = run.optimizer.param_groups[0]["lr"]
    if config.max_steps is None:
        train_losses = _run_epoch(run.model, train, config, run.device, run.optimizer, run.generator, run.loss)
    else:
        n_steps = min(config.eval_every, config.max_steps - progress["steps"])
        train_losses = _run_steps(run, train, n_steps, config, progress["stream"])
    progress["steps"] += train_losses.pop("steps")
    val_losses = _run_epoch(run.model, val, config, run.device, loss=run.loss)
    val_losses.pop("steps")
    run.scheduler.step(val_losses["loss"])
    record = {"epoch": epoch, "step": progress["steps"], "lr": lr}
    record.update({f"train_{k}": v for k, v in train_losses.items()})
    record.update({f"val_{k}": v for k, v in val_losses.items()})
    return record


def _record_epoch(progress: dict[str, Any], record: dict[str, float], model: nn.Module, config: TrainerConfig) -> None:
    """Add ``record`` to ``progress``: keep the best weights, count epochs without progress."""
    epoch, val_loss = int(record["epoch"]), record["val_loss"]
    progress["history"].append(record)
    if val_loss < progress["best_val_loss"]:
        progress.update(best_state=_cpu_state(model), best_epoch=epoch, best_val_loss=val_loss, bad_epochs=0)
    else:
        progress["bad_epochs"] += 1
    patience = config.early_stopping_patience
    progress["stopped_early"] = patience is not None and progress["bad_epochs"] >= patience
    progress["epoch"] = epoch + 1


def _open_writer(log_dir: str | Path | None, start: int) -> Any:
    """A TensorBoard writer for ``log_dir`` (None: no logging) that continues at epoch ``start``."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events an interrupted run logged after its last checkpoint.
    return SummaryWriter(log_dir=str(log_dir), purge_step=start or None)


def train_vae(
    model: nn.Module,
    images: torch.Tensor,
    config: TrainerConfig,
    val_images: torch.Tensor | None = None,
    log_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainingResult:
    """Train a VAE (or a peer model of :mod:`augmentor.peers`) by minimising ``model.loss``.

    Each epoch shuffles the training images, takes Adam steps, then evaluates the
    validation loss, which drives ``ReduceLROnPlateau`` (factor 0.5), early
    stopping and the choice of the best epoch. At the end the best epoch's
    weights are loaded into ``model``, which is left in eval mode.

    Args:
        model: a :class:`~augmentor.models.VAE`, :class:`~augmentor.models.MLPVAE`
            or a model of :data:`augmentor.peers.MODELS` (anything with a ``config``
            :class:`~augmentor.models.VAEConfig`, ``encode`` returning the codes
            first, ``decode``, and ``loss(x)`` returning a dict of scalars whose
            ``"loss"`` is minimised; every entry is averaged per image into the history).
        images: training images ``(N, C, H, W[, D])``, float in [0, 1], N >= 2.
        config: optimisation settings.
        val_images: validation images ``(M, C, H, W[, D])``; if ``None``, a random
            ``config.val_fraction`` of ``images`` is held out instead.
        log_dir: TensorBoard folder for per-epoch losses and learning rate, and
            reconstructions of up to 8 validation images (middle slice for volumes).
        checkpoint_dir: folder for ``checkpoint.pt``, rewritten atomically after
            the last epoch and at most every ``config.checkpoint_every_s`` seconds
            before. If it already holds a checkpoint of the same run (same
            data, model and settings except ``epochs``, ``progress``, ``device``
            and ``image_log_every``), training resumes from it.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ValueError: bad images (NaN/Inf, outside [0, 1], wrong shape, fewer than 2),
            an unavailable device, or a checkpoint of another run or of more epochs.
        TypeError: ``model`` has no :class:`~augmentor.models.VAEConfig`.
    """
    vae_config = _vae_config(model)
    images = check_images(images, vae_config.in_shape, "images", min_count=2)
    if val_images is not None:
        val_images = check_images(val_images, vae_config.in_shape, "val_images", min_count=1)
    device = resolve_device(config.device)

    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train, val = _split(images, val_images, config, generator, vae_config.min_train_batch)
    run = _start_run(model, config, train, val, generator, device)
    if config.data_on_device:
        train, val = train.to(device), val.to(device)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    resuming = checkpoint is not None and checkpoint.exists()
    rounds = _n_rounds(config)
    progress = _resume(checkpoint, run, rounds) if resuming else _new_progress()
    start = progress["epoch"]
    end = start if progress["stopped_early"] else rounds

    writer = _open_writer(log_dir, start)
    last_checkpoint = time.monotonic()
    try:
        bar = tqdm(range(start, end), initial=start, total=rounds, desc="VAE", disable=not config.progress)
        for epoch in bar:
            record = _train_one_epoch(run, train, val, epoch, config, progress)
            _record_epoch(progress, record, model, config)
            if writer is not None:
                _log_epoch(writer, model, val, record, config)
            last_round = progress["stopped_early"] or epoch + 1 == end
            if checkpoint is not None and (
                    last_round or time.monotonic() - last_checkpoint >= config.checkpoint_every_s):
                _save_checkpoint(checkpoint, run, progress)
                last_checkpoint = time.monotonic()
            bar.set_postfix(
                train=f"{record['train_loss']:.4g}", val=f"{record['val_loss']:.4g}", lr=f"{record['lr']:.2g}"
            )
            if progress["stopped_early"]:
                break
        bar.close()
    finally:
        if writer is not None:
            writer.close()

    model.load_state_dict(progress["best_state"])
    model.eval()
    return TrainingResult(
        history=progress["history"],
        best_epoch=progress["best_epoch"],
        best_val_loss=progress["best_val_loss"],
        epochs_run=progress["epoch"],
        stopped_early=progress["stopped_early"],
        steps_run=progress["steps"],
        n_train=len(train),
        n_val=len(val),
    )
