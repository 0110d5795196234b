"""The same sequences as one unpacked batch and as packed rows (docs/packing.md), in numpy, for
the packed-vs-unpacked equivalence tests of both frameworks (tests/tf, tests/pytorch).

Built by hand here rather than by the packer, so the test of the models does not depend on
the packer's choices: row ``r`` holds the sequences ``ROWS[r]`` back to back."""

from __future__ import annotations

import numpy as np

SEQ = 32          # row length (packed) = padded length (unpacked)
PRED = 5          # masked-LM slots per sequence
LENGTHS = (9, 14, 7, 12, 5, 20, 11)  # 7 sequences
ROWS = ((0, 1, 2), (3, 4), (5, 6))   # which sequences share a packed row (each fits in SEQ)
PER_PACK = 3


def sequences(vocab_size: int, seed: int = 0) -> list[dict]:
    """Each sequence: [CLS] a [SEP] b [SEP] token ids, segments, masked positions and ids, NSP."""
    rng = np.random.default_rng(seed)
    out = []
    for n in LENGTHS:
        ids = rng.integers(5, vocab_size, n)
        ids[0], ids[-1] = 1, 2  # [CLS] ... [SEP]
        split = max(2, n // 2)
        ids[split - 1] = 2
        segments = np.r_[np.zeros(split, int), np.ones(n - split, int)]
        npred = min(PRED, n - 2)
        positions = np.sort(rng.choice(np.arange(1, n - 1), npred, replace=False))
        labels = rng.integers(5, vocab_size, npred)
        out.append({"ids": ids, "segments": segments, "mlm_positions": positions,
                    "mlm_ids": labels, "nsp": int(rng.integers(0, 2))})
    return out


def unpacked_batch(seqs: list[dict]) -> dict[str, np.ndarray]:
    b = len(seqs)
    batch = {k: np.zeros((b, SEQ), np.int64) for k in ("input_ids", "input_mask", "segment_ids")}
    batch.update({k: np.zeros((b, PRED), np.int64) for k in ("masked_lm_positions",
                                                             "masked_lm_ids")})
    batch["masked_lm_weights"] = np.zeros((b, PRED), np.float32)
    batch["next_sentence_labels"] = np.zeros((b, 1), np.int64)
    for i, s in enumerate(seqs):
        n, m = len(s["ids"]), len(s["mlm_ids"])
        batch["input_ids"][i, :n] = s["ids"]
        batch["input_mask"][i, :n] = 1
        batch["segment_ids"][i, :n] = s["segments"]
        batch["masked_lm_positions"][i, :m] = s["mlm_positions"]
        batch["masked_lm_ids"][i, :m] = s["mlm_ids"]
        batch["masked_lm_weights"][i, :m] = 1.0
        batch["next_sentence_labels"][i, 0] = s["nsp"]
    return batch


def packed_batch(seqs: list[dict]) -> dict[str, np.ndarray]:
    """Packed rows; masked-LM slots: PRED + PER_PACK per row (the packer's default)."""
    rows, slots = len(ROWS), PRED * PER_PACK
    batch = {k: np.zeros((rows, SEQ), np.int64)
             for k in ("input_ids", "input_mask", "segment_ids", "positions")}
    batch.update({k: np.zeros((rows, slots), np.int64) for k in ("masked_lm_positions",
                                                                 "masked_lm_ids")})
    batch["masked_lm_weights"] = np.zeros((rows, slots), np.float32)
    for k in ("next_sentence_positions", "next_sentence_labels"):
        batch[k] = np.zeros((rows, PER_PACK), np.int64)
    batch["next_sentence_weights"] = np.zeros((rows, PER_PACK), np.float32)
    for r, members in enumerate(ROWS):
        start = slot = 0
        for j, i in enumerate(members):
            s = seqs[i]
            n, m = len(s["ids"]), len(s["mlm_ids"])
            batch["input_ids"][r, start:start + n] = s["ids"]
            batch["input_mask"][r, start:start + n] = j + 1
            batch["segment_ids"][r, start:start + n] = s["segments"]
            batch["positions"][r, start:start + n] = np.arange(n)
            batch["masked_lm_positions"][r, slot:slot + m] = s["mlm_positions"] + start
            batch["masked_lm_ids"][r, slot:slot + m] = s["mlm_ids"]
            batch["masked_lm_weights"][r, slot:slot + m] = j + 1
            batch["next_sentence_positions"][r, j] = start
            batch["next_sentence_labels"][r, j] = s["nsp"]
            batch["next_sentence_weights"][r, j] = 1.0
            start, slot = start + n, slot + m
    return batch


def unpacked_order() -> list[tuple[int, int]]:
    """(row, place in row) of each sequence, in sequence order."""
    where = {i: (r, j) for r, members in enumerate(ROWS) for j, i in enumerate(members)}
    return [where[i] for i in range(len(LENGTHS))]


def per_sequence_mlm(values: np.ndarray, batch: dict, packed: bool) -> list[np.ndarray]:
    """Per-slot MLM values ([rows, slots]) grouped into one array per sequence."""
    w = batch["masked_lm_weights"]
    if not packed:
        return [values[i][w[i] > 0] for i in range(len(LENGTHS))]
    return [values[r][w[r] == j + 1] for r, j in unpacked_order()]


def per_sequence_nsp(log_probs: np.ndarray, batch: dict, packed: bool) -> np.ndarray:
    """NSP cross-entropy of each sequence from log-probabilities [B, 2] (unpacked) or
    [rows, K, 2] (packed), in sequence order."""
    labels = batch["next_sentence_labels"]
    if not packed:
        return np.array([-log_probs[i, labels[i, 0]] for i in range(len(LENGTHS))])
    return np.array([-log_probs[r, j, labels[r, j]] for r, j in unpacked_order()])


def assert_same_per_sequence(slots_unpacked: np.ndarray, slots_packed: np.ndarray,
                             nsp_unpacked: np.ndarray, nsp_packed: np.ndarray,
                             unpacked: dict, packed: dict, tol: float = 1e-5) -> None:
    """Each sequence's MLM slot losses and NSP loss agree between the two layouts."""
    for u, p in zip(per_sequence_mlm(slots_unpacked, unpacked, packed=False),
                    per_sequence_mlm(slots_packed, packed, packed=True)):
        assert len(u) == len(p) > 0
        np.testing.assert_allclose(p, u, rtol=tol, atol=tol)
    np.testing.assert_allclose(nsp_packed, nsp_unpacked, rtol=tol, atol=tol)
