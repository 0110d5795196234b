"""SPFHP / NNLSHP on histograms: every sequence placed once, packs within limits, figures right,
deterministic; the keyed permutations behind the packer's shuffling."""

from __future__ import annotations

import numpy as np
import pytest

from models.bert_large import packing as pk


def _histogram(seed: int, max_len: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.integers(2, int(max_len * 1.5), size=n), max_len)
    return np.bincount(lengths, minlength=max_len + 1)


@pytest.mark.parametrize("algorithm", pk.ALGORITHMS)
@pytest.mark.parametrize("max_len,depth,seed", [(32, 3, 0), (64, 2, 1), (128, 3, 2), (48, 5, 3),
                                                (20, 1, 4)])
def test_every_sequence_placed_once_within_limits(algorithm, max_len, depth, seed):
    h = _histogram(seed, max_len, 3000)
    plan = pk.pack_histogram(h, max_len, depth, algorithm)
    assert np.array_equal(plan.placed_histogram(), h)  # each sequence exactly once
    assert all(sum(s) <= max_len and 1 <= len(s) <= depth for s in plan.strategies)
    assert all(c > 0 for c in plan.counts)
    assert list(plan.strategies) == sorted(plan.strategies, reverse=True)
    assert all(list(s) == sorted(s, reverse=True) for s in plan.strategies)
    # deterministic
    assert pk.pack_histogram(h, max_len, depth, algorithm) == plan


@pytest.mark.parametrize("algorithm", pk.ALGORITHMS)
def test_summary_figures_are_computed_from_the_packs(algorithm):
    max_len = 64
    h = _histogram(7, max_len, 5000)
    plan = pk.pack_histogram(h, max_len, 3, algorithm)
    s = pk.plan_summary(h, plan)
    packs = [(strategy, count) for strategy, count in zip(plan.strategies, plan.counts)]
    n_packs = sum(c for _, c in packs)
    real = sum(sum(st) * c for st, c in packs)
    n_seq = int(h.sum())
    tokens = int((np.arange(max_len + 1) * h).sum())
    assert real == tokens
    assert s["new_number_of_samples"] == n_packs
    assert s["original_number_of_samples"] == n_seq
    assert s["sequences_dropped"] == 0
    assert s["packing_efficiency"] == pytest.approx(tokens / (n_packs * max_len))
    assert s["padding_tokens_packed_dataset"] == n_packs * max_len - tokens
    assert s["padding_tokens_original_dataset"] == n_seq * max_len - tokens
    assert s["theoretical_speedup"] == pytest.approx(n_seq * max_len / tokens)
    assert s["expected_speedup"] == pytest.approx(n_seq / n_packs)
    assert s["compression_ratio"] == pytest.approx(1 - n_packs / n_seq)
    assert s["avg_seq_per_sample"] == pytest.approx(n_seq / n_packs)
    assert s["num_strategies_utilized"] == len(plan.strategies)
    top = s["top_8_strategies"]
    assert len(top) == min(8, len(packs))
    assert [t["count"] for t in top] == sorted((c for _, c in packs), reverse=True)[:8]
    # packing cannot beat the theoretical bound, and these histograms pack well
    assert s["expected_speedup"] <= s["theoretical_speedup"] + 1e-12
    assert s["packing_efficiency"] > 0.97


def test_spfhp_best_fit_on_a_small_histogram():
    # lengths 6, 5, 4, 3, 2, 1 at max 8: 6 opens a pack (room 2), 5 another (room 3),
    # 4 another (room 4), 3 -> the pack with room 3, 2 -> room 2, 1 -> room 4 (least room left)
    h = np.zeros(9, np.int64)
    h[[1, 2, 3, 4, 5, 6]] = 1
    plan = pk.spfhp(h, 8, 3)
    assert dict(zip(plan.strategies, plan.counts)) == {(6, 2): 1, (5, 3): 1, (4, 1): 1}


def test_spfhp_counts_not_sequences():
    h = np.zeros(513, np.int64)
    h[256] = 10_000_000
    h[512] = 5
    plan = pk.spfhp(h, 512, 3)
    assert dict(zip(plan.strategies, plan.counts)) == {(512,): 5, (256, 256): 5_000_000}


def test_nnlshp_fills_rows_exactly_where_it_can():
    h = np.zeros(101, np.int64)
    h[60], h[40], h[30], h[10] = 1000, 600, 400, 400   # 600 x (60, 40) + 400 x (60, 30, 10)
    plan = pk.nnlshp(h, 100, 3)
    s = pk.plan_summary(h, plan)
    assert s["packing_efficiency"] == pytest.approx(1.0)
    assert all(sum(st) == 100 for st in plan.strategies)
    assert s["new_number_of_samples"] == 1000


def test_check_plan_rejects_a_plan_that_loses_or_repeats_sequences():
    h = _histogram(1, 32, 500)
    plan = pk.spfhp(h, 32, 3)
    broken = pk.PackingPlan(32, 3, plan.strategies, (plan.counts[0] + 1,) + plan.counts[1:],
                            "spfhp")
    with pytest.raises(AssertionError, match="plan places"):
        pk.check_plan(h, broken)
    too_long = pk.PackingPlan(32, 3, ((20, 13),), (1,), "spfhp")
    with pytest.raises(AssertionError, match="invalid pack"):
        pk.check_plan(np.zeros(33, np.int64), too_long)


def test_histogram_is_checked():
    with pytest.raises(ValueError, match="max_sequence_length \\+ 1"):
        pk.spfhp(np.zeros(10, np.int64), 32)
    with pytest.raises(ValueError, match="unknown packing algorithm"):
        pk.pack_histogram(np.zeros(33, np.int64), 32, 3, "ffd")


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_keyed_permutation_is_a_bijection_chosen_by_the_key(n):
    perm = pk.KeyedPermutation(n, 12345, 1, 7)
    values = perm(np.arange(n))
    assert sorted(values.tolist()) == list(range(n))
    assert perm(np.arange(n)).tolist() == values.tolist()
    if n >= 17:
        other = pk.KeyedPermutation(n, 12346, 1, 7)(np.arange(n))
        assert other.tolist() != values.tolist()
        assert values.tolist() != list(range(n))
    with pytest.raises(ValueError):
        perm(np.array([n]))
