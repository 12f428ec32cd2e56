"""Probe maths on synthetic features with a planted direction."""

import pytest
import torch

from pipeline.core.errors import DatasetError
from pipeline.values import probes


def planted(n: int = 80, dim: int = 32, noise: float = 0.5, seed: int = 0):
    """Pairs whose preference is the sign of d·w_true, plus a length direction that is
    independent of the preference."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(dim, generator=g)
    w_true /= w_true.norm()
    y = (torch.rand(n, generator=g) > 0.5).long()
    signal = (2 * y.float() - 1) * (1 + torch.rand(n, generator=g))
    dlen = torch.randn(n, generator=g)
    length_axis = torch.zeros(dim)
    length_axis[0] = 1.0
    d = (
        signal[:, None] * w_true
        + 3 * dlen[:, None] * length_axis
        + noise * torch.randn(n, dim, generator=g)
    )
    return d, y, w_true, dlen


def test_a_planted_direction_is_recovered_by_both_probes():
    d, y, w_true, _ = planted()
    for method in probes.METHODS:
        fit = probes.cross_validate(d, y, method, k=5)
        assert fit.accuracy > 0.85, method
        assert probes.cosine(fit.direction, w_true) > 0.6, method


def test_cross_validation_does_not_leak_labels():
    d, _, _, _ = planted()
    noise_labels = (torch.rand(len(d), generator=torch.Generator().manual_seed(5)) > 0.5).long()
    fit = probes.cross_validate(d, noise_labels, "logistic", k=5)
    assert 0.25 < fit.accuracy < 0.75  # labels unrelated to the features: chance, not memory
    train_fit = probes.judged(d, noise_labels, fit.direction)
    assert sum(train_fit) / len(train_fit) > fit.accuracy  # fitting on all pairs overfits


def test_the_length_direction_is_projected_out():
    d, y, _, dlen = planted()
    u = probes.length_direction(d, dlen)
    assert abs(u[0]) > 0.9  # the planted length axis
    assert (probes.without(d, u) @ u).tolist() == pytest.approx([0.0] * len(d), abs=1e-4)
    fit = probes.cross_validate(d, y, "mean_difference", k=5, dlen=dlen)
    assert abs(fit.direction @ fit.length_direction) < 1e-4 and fit.accuracy > 0.8


def test_intervals_folds_cosine_and_the_binomial_test_by_hand():
    low, high = probes.bootstrap_interval([True] * 8 + [False] * 2, samples=2000)
    assert 0.5 <= low <= 0.8 <= high <= 1.0
    assert probes.bootstrap_interval([True] * 5) == (1.0, 1.0)
    parts = probes.folds(10, 3)
    assert sorted(i for f in parts for i in f) == list(range(10)) and len(parts) == 3
    assert probes.cosine(torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0])) == -1.0
    assert probes.below_chance_p(0, 3) == 1 / 8 and probes.below_chance_p(3, 3) == 1.0
    # 90% where people chose the longer, 10% where they chose the shorter: 50% controlled
    length_only = [(True, True)] * 9 + [(True, False)] + [(False, False)] * 9 + [(False, True)]
    assert probes.controlled_below_chance_p(length_only) == pytest.approx(0.5)
    inverted = [(True, False)] * 8 + [(True, True)] * 2 + [(False, False)] * 8 + [(False, True)] * 2
    assert probes.controlled_below_chance_p(inverted) < 0.01
    assert probes.controlled_below_chance_p([(True, False)] * 3) == 1 / 8  # one group: binomial
    with pytest.raises(DatasetError, match="3 labelled pairs cannot be split into 5 folds"):
        probes.cross_validate(torch.zeros(3, 2), torch.tensor([1, 0, 1]), k=5)


def test_one_weighted_fit_is_every_bootstrap_refit():
    d, y, _, _ = planted(n=40, dim=16)
    counts = probes.resamples(len(d), samples=6, seed=3)
    assert counts.sum(1).tolist() == [40.0] * 6 and (counts >= 0).all()
    for method in probes.METHODS:
        joint = probes.resampled_fits(d, y, method, counts)
        for b in range(6):
            drawn = torch.repeat_interleave(torch.arange(len(d)), counts[b].long())
            alone = probes.FITS[method](d[drawn], y[drawn])
            assert probes.cosine(joint[b], alone) > 0.9999, method
            assert (joint[b] - alone).norm() / alone.norm() < 1e-3, method
    assert probes.logistic(d, y).shape == (16,)


def test_a_cosine_interval_is_confident_for_a_planted_direction_and_narrows_with_pairs():
    def interval(n: int, w: torch.Tensor | None = None):
        d, y, w_true, _ = planted(n=n, noise=1.0)
        fits = probes.resampled_fits(d, y, "logistic", probes.resamples(n, seed=1))
        return probes.percentile_interval(probes.cosines(w_true if w is None else w, fits).tolist())

    low, high = interval(200)
    assert 0.5 < low < high <= 1.0
    low_neg, high_neg = interval(200, -planted(n=200, noise=1.0)[2])
    assert (low_neg, high_neg) == pytest.approx((-high, -low), abs=0.01)
    few = interval(30)
    assert few[1] - few[0] > high - low  # fewer pairs, a wider interval


def test_percentiles_and_row_cosines_by_hand():
    assert probes.percentile_interval([float(i) for i in range(200)]) == (5.0, 195.0)
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert probes.cosines(a, torch.tensor([2.0, 0.0])).tolist() == [1.0, 0.0]
    assert probes.cosines(torch.tensor([0.0, 1.0]), a).tolist() == [0.0, 1.0]
