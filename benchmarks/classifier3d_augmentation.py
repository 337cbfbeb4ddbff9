"""Does the 3D classifier learn with the classical (TorchIO) augmentation? Test balanced accuracy per variant.

    PYTHONPATH=. python benchmarks/classifier3d_augmentation.py none,aug,aug_noscale 0

Variants (comma-separated): ``none`` (real training subjects as they are), ``aug`` (the
config's affine + elastic augmentation), ``aug_noscale`` (without scaling), ``aug_noelastic``;
a suffix ``ep20`` trains 20 epochs. Second argument: the split's seed. Reads the cached quick
cohort at the size of CONFIG (environment variable, default configs/oasis_3d_quick.yaml);
prints per variant the test balanced accuracy, the best epoch and the training losses.
"""
import os, sys, time, torch, json
torch.set_num_threads(1)
from augmentor.utils.allocator import keep_large_buffers; keep_large_buffers()
from oasis import load_oasis
from oasis.simulate import simulate_cohort
from pipelines.oasis_study.config import load_study_config
from pipelines.common.study_data import split_subjects
from pipelines.common.classifier import TorchIOAugmentation, train_classifier, predict, classification_metrics
cfg = load_study_config(os.environ.get("CONFIG", "configs/oasis_3d_quick.yaml"))
d = load_oasis(str(simulate_cohort(cfg.data.simulation, progress=False)), dim=3, image_size=cfg.data.image_size)
variants = sys.argv[1].split(",")
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
sp = {k: torch.tensor(v) for k, v in split_subjects(d.subject_ids, d.labels, seed, cfg.split).items()}
x, y = d.images[sp["train"]], d.labels[sp["train"]]
for v in variants:
    t = time.time()
    ccfg = cfg.classifier
    aug = None
    if v.startswith("aug"):
        a = cfg.augmentation
        if "noscale" in v: a = a.replace(scales=0.0)
        if "noelastic" in v: a = a.replace(p_elastic=0.0)
        aug = TorchIOAugmentation(a, d.images.shape[2:], 1)
    if "ep20" in v: ccfg = ccfg.replace(epochs=20)
    tr = train_classifier(x, y, d.images[sp["val"]], d.labels[sp["val"]], ccfg, seed=1, augment=aug)
    pred = predict(tr.model, d.images[sp["test"]], 32, "cpu")
    m = classification_metrics(d.labels[sp["test"]].numpy(), pred, [0, 1])
    print(v, "seed", seed, "test BA %.3f" % m["balanced_accuracy"], "best epoch", tr.best_epoch, "val BA %.3f" % tr.best_val_balanced_accuracy,
          "train loss", [round(h.get("train_loss", float("nan")), 3) for h in tr.history], "%.0f s" % (time.time() - t), flush=True)
