"""Encoding speed of the numpy all-MiniLM-L6-v2 encoder (lockgate.embeddings.minilm) on short texts.

    PYTHONPATH=src .venv/bin/python bench/embeddings.py [--n 512]

Short texts are support-style questions of 6 to 14 words. One timed pass after a warm-up; prints
sentences per second and the machine's load, and appends nothing: copy the line to
bench/results/embeddings.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from lockgate.embeddings.minilm import get_encoder

TEMPLATES = [
    "How do I reset my password for account {i}?",
    "What are the support hours on day {i} of the month?",
    "Can I get a refund for order number {i} that I placed last week?",
    "Why does request {i} return an error about the rate limit?",
    "Please cancel subscription {i} and send me a confirmation email.",
    "Which model does release {i} of the support bot use by default?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="Sentences to encode (default 512).")
    args = parser.parse_args()
    texts = [TEMPLATES[i % len(TEMPLATES)].format(i=i) for i in range(args.n)]
    started = time.perf_counter()
    encoder = get_encoder()
    load_s = time.perf_counter() - started
    encoder.embed(texts[:32])  # warm-up: first BLAS calls, page faults on the weights
    started = time.perf_counter()
    encoder.embed(texts)
    elapsed = time.perf_counter() - started
    print(f"{args.n} short sentences in {elapsed:.2f} s: {args.n / elapsed:.0f} sentences/s "
          f"(batch {encoder.batch_size}); model load {load_s:.2f} s; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
