"""Do the 3D study's per-class VAEs fit, and do their samplers carry the class effect? One seed, no classifiers.

    PYTHONPATH=. python benchmarks/vae3d_fit.py [--config oasis_3d_quick] [--seed 0] [--classes 0,1]
        [--samplers gmm,riemannian] [--figure runs/vae3d_fit.png] [--set vae.trainer.lr=3e-3 ...]

Runs what one seed's ``generate`` job of the study runs, with the same config sections
(``--set`` overrides them as on the study's command line): the seed's split of the
cohort, the seed's augmentor (per-class VAEs with the study's trainer and seeds, then
the samplers). Prints per class the held-out and training reconstruction error over
the class-mean baseline, the held-out SSIM and the training time; with both classes,
the ventricle effect (oasis.anatomy) of ``n_per_class`` synthetic volumes per class and
sampler against the real training subjects' effect; writes the axial / coronal /
sagittal mid-slices of held-out volumes, reconstructions and synthetic volumes.
``--classes 1`` trains the AD VAE only (a fast check of its fit).
"""

from __future__ import annotations

import argparse
import time

import torch

from augmentor import GeometricAugmentor
from augmentor.models import build_vae
from augmentor.models.fit_report import class_mean_error, ssim
from augmentor.models.training import train_vae
from augmentor.models.vae import reconstruction_error
from augmentor.utils.allocator import keep_large_buffers
from augmentor.utils.seeding import seed_everything
from augmentor.utils.volume_figure import save_orthogonal_slices
from oasis.anatomy import class_effect
from pipelines.oasis_study.config import load_study_config
from pipelines.common.cli import parse_override
from pipelines.common.study_data import load_study_data, split_subjects
from pipelines.oasis_study.config import CLASS_NAMES
from pipelines.common.jobs import SEED_STRIDE, augmentor_config, job_environment
from pipelines.oasis_study.jobs import _fit_view_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/oasis_3d_quick.yaml")
    parser.add_argument("--seed", type=int, default=0, help="the study's repetition (split, trainer seeds)")
    parser.add_argument("--classes", default="0,1", help="classes whose VAE is trained")
    parser.add_argument("--samplers", default="gmm,riemannian", help="samplers whose class effect is measured")
    parser.add_argument("--figure", default="runs/vae3d_fit.png")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_large_buffers()
    config = load_study_config(args.config, dict(parse_override(text) for text in args.overrides) or None)
    config = config.replace(progress=False)
    data = load_study_data(config.data, progress=False)
    split = {k: torch.tensor(v) for k, v in split_subjects(data.subject_ids, data.labels, args.seed, config.split).items()}
    classes = [int(c) for c in args.classes.split(",")]
    train, held = split["train"], split["val"]
    train = train[torch.isin(data.labels[train], torch.tensor(classes))]
    x, y = data.images[train], data.labels[train]
    held_x, held_y = data.images[held], data.labels[held]

    start = time.perf_counter()
    settings = augmentor_config(config, args.seed, tuple(data.images.shape[1:]))
    with job_environment(config, (config.vae.trainer.seed + SEED_STRIDE * args.seed) % 2**31):  # as the study's job
        if len(classes) == 2:
            augmentor = GeometricAugmentor(settings).fit(x, y)
            encode, decode = augmentor.encode, augmentor.decode
        else:  # one class (the augmentor needs two): its VAE alone, with the seed the augmentor gives that class
            index = [0, 1].index(classes[0])
            trainer = settings.trainer.replace(seed=settings.trainer.seed + index, device=config.device)
            seed_everything(trainer.seed)
            model = build_vae(settings.vae)
            history = train_vae(model, x, trainer).history
            model.eval()
            encode = lambda images, label: model.encode(images)  # noqa: E731
            decode = lambda z, labels: model.decode(z)  # noqa: E731
    seconds = time.perf_counter() - start
    with torch.no_grad():
        for label in classes:
            mine, theirs = x[y == label], held_x[held_y == label]
            scores = []  # (per-image error, per-image class-mean error): held-out, then training
            for images in (theirs, mine):
                recon = decode(encode(images, label)[0], torch.full((len(images),), label))
                scores.append((reconstruction_error(recon, images), class_mean_error(mine, images)))
            ratios = [float(errors.mean() / baseline.mean()) for errors, baseline in scores]
            per_subject = scores[0][0] / scores[0][1]
            similarity = float(ssim(theirs, decode(encode(theirs, label)[0], torch.full((len(theirs),), label))).mean())
            steps = augmentor.histories[label] if len(classes) == 2 else history
            print(f"class {CLASS_NAMES[label]}: {len(mine)} training volumes, {len(theirs)} held out; "
                  f"held-out / class mean {ratios[0]:.3f}, training / class mean {ratios[1]:.3f}, "
                  f"held-out SSIM {similarity:.3f}, best of {len(steps)} evaluations", flush=True)
            print("  held-out subjects, error / class-mean error each: "
                  + " ".join(f"{r:.3f}" for r in per_subject.tolist()), flush=True)
    print(f"training: {seconds:.0f} s for {len(classes)} VAE(s)")
    synthetic = {}
    if len(classes) == 2:
        real = class_effect(x, y)
        print(f"real: ventricle CN {real.ventricle_cn:.2f} AD {real.ventricle_ad:.2f} mL, effect {real.ventricle_effect:.2f}")
        for sampler in [s for s in args.samplers.split(",") if s]:
            start = time.perf_counter()
            z, labels = augmentor.class_latents(config.sampling.n_per_class, sampler, seed=args.seed)
            with torch.no_grad():
                images = augmentor.decode(z, labels)
            synthetic[sampler] = (images, labels)
            effect = class_effect(images, labels)
            print(f"{sampler}: ventricle CN {effect.ventricle_cn:.2f} AD {effect.ventricle_ad:.2f} mL, effect "
                  f"{effect.ventricle_effect:.2f}, ratio {effect.ventricle_effect / real.ventricle_effect:.2f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    if len(classes) == 2:
        with torch.no_grad():
            rows = _fit_view_rows(augmentor, held_x, held_y, synthetic)
        print("figure:", save_orthogonal_slices(rows, args.figure, f"{args.config} seed {args.seed}", class_names=CLASS_NAMES))


if __name__ == "__main__":
    main()
