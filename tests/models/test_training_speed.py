"""The trainer's speed settings (augmentor.training.SPEED_SETTINGS, data_on_device) on the CPU.

At their defaults the trainer must train exactly as before they existed, and run
identities must not change; each setting, when on, must act (checked with hooks
on the model's convolutions) and keep the training close to the float32 run.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from augmentor import training
from augmentor.utils.config import ConfigError
from augmentor.models import VAEConfig, build_vae
from augmentor.models.training import RUN_ONLY_SETTINGS, SPEED_SETTINGS, TrainerConfig, result_settings, train_vae

CONV2D = VAEConfig(in_shape=(1, 16, 16), latent_dim=4, channels=(8, 16), strides=(2, 2), kernel_size=4, norm="batch")
CONV3D = VAEConfig(in_shape=(1, 8, 8, 8), latent_dim=3, channels=(4, 8), strides=(2, 2), kernel_size=3, norm="none")


def _images(vae: VAEConfig, n: int = 40) -> torch.Tensor:
    return torch.rand((n, *vae.in_shape), generator=torch.Generator().manual_seed(0))


def _train(vae: VAEConfig, hooks: list | None = None, **settings) -> tuple[nn.Module, training.TrainingResult]:
    torch.manual_seed(0)
    model = build_vae(vae)
    for hook in hooks or []:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                module.register_forward_hook(hook)
    config = TrainerConfig(max_steps=12, eval_every=4, batch_size=8, seed=1, progress=False, device="cpu",
                           **settings)
    return model, train_vae(model, _images(vae), config)


def test_defaults_leave_run_identities_and_checkpoints_as_before() -> None:
    default = result_settings(TrainerConfig().to_dict())
    assert not set(default) & (set(SPEED_SETTINGS) | set(RUN_ONLY_SETTINGS))
    changed = result_settings(TrainerConfig(mixed_precision="bf16", channels_last=True, data_on_device=False).to_dict())
    assert changed == {**default, "mixed_precision": "bf16", "channels_last": True}
    assert TrainerConfig.from_dict(TrainerConfig(compile=True).to_dict()).compile is True
    with pytest.raises(ConfigError, match=r"TrainerConfig\.mixed_precision: 'fp16'"):
        TrainerConfig(mixed_precision="fp16")


def test_data_kept_on_the_host_trains_the_same_weights() -> None:
    on_device, first = _train(CONV2D)
    on_host, second = _train(CONV2D, data_on_device=False)
    assert first.history == second.history
    assert all(torch.equal(a, b) for a, b in zip(on_device.state_dict().values(), on_host.state_dict().values()))


def test_bf16_autocast_runs_the_convolutions_in_bfloat16_and_keeps_the_loss_float32() -> None:
    dtypes: set[torch.dtype] = set()
    _, reference = _train(CONV2D)
    model, result = _train(CONV2D, hooks=[lambda module, inputs, output: dtypes.add(output.dtype)],
                           mixed_precision="bf16")
    assert dtypes == {torch.bfloat16}
    loss = training._loss_function(model, TrainerConfig(mixed_precision="bf16"), torch.device("cpu"))
    assert loss(_images(CONV2D, 4))["loss"].dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the losses follow the float32 run within a few per cent.
    for ours, theirs in zip(result.history, reference.history):
        assert math.isfinite(ours["train_loss"])
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=0.05)


@pytest.mark.parametrize(("vae", "layout"), [(CONV2D, torch.channels_last), (CONV3D, torch.channels_last_3d)])
def test_channels_last_feeds_the_convolutions_that_layout_and_trains_alike(vae, layout) -> None:
    layouts: set[bool] = set()
    _, reference = _train(vae)
    hook = lambda module, inputs, output: layouts.add(inputs[0].is_contiguous(memory_format=layout))  # noqa: E731
    model, result = _train(vae, hooks=[hook], channels_last=True)
    assert layouts == {True}
    # One loss of the same weights and noise: equal up to float32 sums taken in another order ...
    torch.manual_seed(0)
    model = build_vae(vae).eval()
    x = _images(vae, 8)
    torch.manual_seed(1)
    expected = model.loss(x)["loss"].detach()
    loss = training._loss_function(model, TrainerConfig(channels_last=True), torch.device("cpu"))
    torch.manual_seed(1)
    assert loss(x)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    # ... which Adam's normalised steps carry on: after 12 steps the losses agree to 1 %.
    for ours, theirs in zip(result.history, reference.history):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-2)


def test_compile_wraps_the_loss(monkeypatch) -> None:
    compiled = []

    def fake_compile(function):
        compiled.append(function)
        return function

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, _ = _train(CONV3D, compile=True)
    assert len(compiled) == 1 and compiled[0] == model.loss


def test_a_diverged_round_is_refused_with_its_loss(monkeypatch) -> None:
    monkeypatch.setattr(type(build_vae(CONV3D)), "loss",
                        lambda self, x: {"loss": self.decode(self.encode(x)[0]).sum() * float("inf")})
    with pytest.raises(training.TrainingDivergedError, match="the loss became (inf|nan)"):
        _train(CONV3D)
