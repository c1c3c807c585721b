"""Prompts for drift tests: English support questions, the same questions in German, and English
cooking questions of about the same length (a change of topic alone)."""

from __future__ import annotations

import random

SUPPORT_EN = [
    "How do I reset the password of my {thing}?",
    "Why was my {thing} charged twice this month?",
    "Can I move my {thing} to another account?",
    "Where do I find the invoice for my {thing}?",
    "My {thing} stopped working after the last update, what should I do?",
    "How do I cancel the subscription for my {thing}?",
    "Is there a discount when I renew my {thing} for a year?",
    "Who do I contact when my {thing} is locked?",
    "How long does a refund for my {thing} take?",
    "Can two people share one {thing} login?",
]
SUPPORT_DE = [
    "Wie setze ich das Passwort für mein {thing} zurück?",
    "Warum wurde mein {thing} diesen Monat zweimal abgebucht?",
    "Kann ich mein {thing} auf ein anderes Konto übertragen?",
    "Wo finde ich die Rechnung für mein {thing}?",
    "Mein {thing} funktioniert seit dem letzten Update nicht mehr, was soll ich tun?",
    "Wie kündige ich das Abonnement für mein {thing}?",
    "Gibt es einen Rabatt, wenn ich mein {thing} für ein Jahr verlängere?",
    "An wen wende ich mich, wenn mein {thing} gesperrt ist?",
    "Wie lange dauert eine Rückerstattung für mein {thing}?",
    "Können zwei Personen ein {thing} Login gemeinsam nutzen?",
]
THINGS_EN = ["account", "team plan", "API key", "workspace", "license", "premium plan", "user profile"]
THINGS_DE = ["Konto", "Teamabo", "Arbeitsbereich", "Benutzerprofil", "Premiumabo", "Zugangskonto"]
COOKING_EN = [
    "How long should I roast a {thing} in the oven?",
    "What spices go well with {thing} in a stew?",
    "Can I freeze leftover {thing} for next week?",
    "Why does my {thing} always turn out dry when I bake it?",
    "What wine would you pair with grilled {thing}?",
    "How do I keep {thing} crispy after frying it?",
    "Is it safe to eat {thing} that was left out overnight?",
    "What is a good vegetarian substitute for {thing} in lasagna?",
    "How thin should I slice {thing} for a salad?",
    "Should I marinate the {thing} before grilling it?",
]
THINGS_COOKING = ["chicken", "salmon", "pork belly", "eggplant", "sourdough bread", "beef brisket", "tofu"]


def prompts(kind: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    templates, things = {"support_en": (SUPPORT_EN, THINGS_EN), "support_de": (SUPPORT_DE, THINGS_DE),
                         "cooking_en": (COOKING_EN, THINGS_COOKING)}[kind]
    return [rng.choice(templates).format(thing=rng.choice(things)) for _ in range(n)]
