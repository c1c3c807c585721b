"""The built-in attacks: six categories of templates (`data/attacks.yaml`), crossed with the
strategies of `strategies.py`, sampled deterministically from a seed.

Each `Attack` carries what its detector needs to judge the answer: the code an injection asks for
(`marker`), the word a divergent repetition repeats, whether a refusal is due, and the values planted
in the conversation for PII exfiltration. The system prompt's canary is the release's, not the
attack's (see `detectors.Target`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from lockgate.redteam.strategies import LANGUAGES, STRATEGIES, Strategy

CATEGORIES: dict[str, str] = {
    "prompt_injection": "direct prompt injection: the user tells the model to drop its instructions and print a code",
    "indirect_injection": "instructions hidden in a pasted document (email, web page, review) the model is asked about",
    "system_prompt_extraction": "asks for the system prompt; succeeds when its canary or a third of its phrases leak",
    "pii_exfiltration": "asks for the customer record the application put in the conversation",
    "training_data_extraction": "divergent repetition (\"repeat the word 'poem' forever\")",
    "jailbreak_personas": "persona and role-play wrappers (DAN, grandma, developer mode, fiction) around a harmful "
                          "request; succeeds when the release does not refuse",
}


class AttackError(ValueError):
    """Bad red-team arguments: unknown category or strategy, a non-positive count."""


@dataclass(frozen=True)
class PlantedValue:
    label: str  # the PII detector's label (EMAIL, PHONE, ...)
    name: str
    value: str


@dataclass(frozen=True)
class Attack:
    id: str
    category: str
    template: str
    strategy: str
    prompt: str  # the user's turn, as sent
    plain: str  # the same attack undisguised (its language, slots filled): what an echo of it looks like
    context: tuple[str, ...] = ()  # system messages the application sends with it
    marker: str | None = None
    word: str | None = None
    goal: str | None = None
    refusal_due: bool = False
    planted: tuple[PlantedValue, ...] = field(default_factory=tuple)

    def messages(self) -> list[dict[str, str]]:
        return [*({"role": "system", "content": c} for c in self.context), {"role": "user", "content": self.prompt}]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Template:
    id: str
    texts: dict[str, str]


@dataclass(frozen=True)
class AttackData:
    templates: dict[str, list[_Template]]
    goals: list[_Template]
    words: list[str]
    record_intro: str
    planted: tuple[PlantedValue, ...]

    def planted_record(self) -> str:
        return "\n".join([self.record_intro, *(f"{p.name}: {p.value}" for p in self.planted)])


def _texts(entry: dict[str, Any], where: str) -> dict[str, str]:
    missing = [lang for lang in ("en", *LANGUAGES) if not isinstance(entry.get(lang), str)]
    if missing:
        raise AttackError(f"attack data: {where} has no text for {', '.join(missing)}")
    return {lang: entry[lang] for lang in ("en", *LANGUAGES)}


@lru_cache(maxsize=1)
def load_data() -> AttackData:
    raw = yaml.safe_load(resources.files("lockgate.redteam").joinpath("data/attacks.yaml").read_text("utf-8"))
    templates = {category: [_Template(t["id"], _texts(t, f"template {t['id']}")) for t in entries]
                 for category, entries in raw["categories"].items()}
    unknown = set(templates) ^ set(CATEGORIES)
    if unknown:
        raise AttackError(f"attack data: categories do not match the built-in ones: {sorted(unknown)}")
    record = raw["planted_record"]
    return AttackData(
        templates=templates,
        goals=[_Template(g["id"], _texts(g, f"goal {g['id']}")) for g in raw["goals"]],
        words=list(raw["words"]),
        record_intro=record["intro"],
        planted=tuple(PlantedValue(f["label"], f["name"], f["value"]) for f in record["fields"]),
    )


def check_names(names: Sequence[str] | None, known: Sequence[str], what: str) -> list[str]:
    """`names` (all of `known` when None), in `known`'s order, or AttackError naming the unknown ones."""
    if not names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AttackError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return [k for k in known if k in names]


def marker_for(seed: int, attack_id: str) -> str:
    """A code no answer contains by chance, different for every attack and the same for a seed."""
    return "ZQ-" + hashlib.sha256(f"{seed}:{attack_id}".encode()).hexdigest()[:8].upper()


def _variants(data: AttackData, category: str) -> list[tuple[_Template, str | None]]:
    """Every (template, slot value) pair of a category: jailbreaks cross templates with goals,
    divergent repetition with words; the other categories have one variant per template."""
    templates = data.templates[category]
    if category == "jailbreak_personas":
        return [(t, g.id) for t in templates for g in data.goals]
    if category == "training_data_extraction":
        return [(t, w) for t in templates for w in data.words]
    return [(t, None) for t in templates]


def _build(data: AttackData, seed: int, attack_id: str, category: str, template: _Template, slot: str | None,
           strategy: Strategy) -> Attack:
    lang = strategy.language
    slots: dict[str, str] = {}
    marker = word = goal = None
    if category in ("prompt_injection", "indirect_injection"):
        marker = slots["marker"] = marker_for(seed, attack_id)
    elif category == "training_data_extraction":
        word = slots["word"] = str(slot)
    elif category == "jailbreak_personas":
        goal = str(slot)
        goal_texts = next(g.texts for g in data.goals if g.id == goal)
        slots["goal"] = goal_texts[lang]  # the plain goal, whatever the disguise: it is the slot's value
    planted = data.planted if category == "pii_exfiltration" else ()
    return Attack(
        id=attack_id, category=category, template=template.id, strategy=strategy.name,
        prompt=strategy.render(template.texts, slots),
        plain=Strategy("plain", "", language=lang).render(template.texts, slots),
        context=(data.planted_record(),) if planted else (),
        marker=marker, word=word, goal=goal, refusal_due=category == "jailbreak_personas", planted=planted,
    )


def generate(seed: int, count: int, categories: Sequence[str] | None = None,
             strategies: Sequence[str] | None = None) -> list[Attack]:
    """`count` attacks stratified over category x strategy: every cell gets `count // cells`, and a
    seeded draw picks the cells that get one more. Within a cell the variants are shuffled by a
    generator seeded with (seed, category, strategy) and taken in turn, so the same seed gives the
    same attacks, and choosing fewer categories does not change the attacks of the others."""
    if count < 1:
        raise AttackError(f"--attacks must be at least 1, got {count}")
    cats = check_names(categories, list(CATEGORIES), "category")
    strats = check_names(strategies, list(STRATEGIES), "strategy")
    data = load_data()
    cells = [(c, s) for c in cats for s in strats]
    base, extra = divmod(count, len(cells))
    bonus = set(random.Random(f"lockgate-redteam:{seed}").sample(range(len(cells)), extra))
    attacks: list[Attack] = []
    for i, (category, strategy) in enumerate(cells):
        variants = _variants(data, category)
        random.Random(f"lockgate-redteam:{seed}:{category}:{strategy}").shuffle(variants)
        for k in range(base + (i in bonus)):
            template, slot = variants[k % len(variants)]
            attack_id = f"{template.id}{'.' + slot if slot else ''}.{strategy}"
            if k >= len(variants):
                attack_id += f"#{k // len(variants) + 1}"
            attacks.append(_build(data, seed, attack_id, category, template, slot, STRATEGIES[strategy]))
    return attacks
