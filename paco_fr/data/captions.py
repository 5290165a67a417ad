"""Captions for the FaRL-style image-text objective, built from SynthFace's labels.

FaRL pre-trains on LAION-Face alt-text: captions that mention a few visible traits, are often
wrong or generic, and rarely describe the whole face. The old SynthFace caption named the
expression, the gender and *every* true attribute -- image-text contrast on it was supervised
training on the evaluation labels. So by default (`farl.captions.mode: noisy`) each image gets
one fixed caption (like an alt-text), drawn from (seed, image index):

* with `generic_prob` a generic sentence with no label in it ("a photo of a face", ...);
* otherwise `a photo of a [<expression>] <man|woman|person> [with <attr>, <attr>, ...]` where
  - the subject is "person" with `person_word_prob`, else man / woman, swapped with `gender_wrong_prob`;
  - the expression word is dropped with `expression_drop_prob`, else wrong with `expression_wrong_prob`;
  - n ~ uniform{0..max_attributes} attributes are named; each is, with `wrong_attribute_prob`, one
    the face does not have, else one it has (24 CelebA-style attributes, "Male" is the subject word);
* a caption that would still state the full label vector (right gender, right expression, exactly
  the true attribute set) gets "person" as its subject: no caption equals the labels.

`mode: oracle` returns the old template (every true label): a clearly labelled *upper bound*
(supervised), never used as "FaRL-style" in the study. `caption_claims` reads back what a caption
states (tests).
"""

from __future__ import annotations

import numpy as np

from paco_fr.defaults import DEFAULTS

GENERIC = ("a photo of a face", "a close-up portrait of a person", "a picture of someone's face",
           "a face looking at the camera", "a cropped photo of a head")
TEMPLATE_PREFIX = "a photo of a "
SUBJECTS = ("man", "woman", "person")
DEFAULT_NOISE = DEFAULTS["farl"]["captions"]  # the documented defaults (paco_fr/defaults.py)


def phrase(attribute: str) -> str:
    return attribute.replace("_", " ").lower()


def _sentence(expression: str | None, subject: str, attributes: list[str]) -> str:
    words = TEMPLATE_PREFIX + (f"{expression} " if expression else "") + subject
    return words + (f" with {', '.join(phrase(a) for a in attributes)}" if attributes else "")


def oracle_caption(attrs: np.ndarray, expr: int, attribute_names, expressions) -> str:
    """Every true label (the pre-2.2 template): an upper bound, supervised by construction."""
    on = [a for a, v in zip(attribute_names, attrs) if v]
    subject = "man" if "Male" in on else "woman"
    return _sentence(expressions[int(expr)], subject, [a for a in on if a != "Male"])


def noisy_caption(attrs: np.ndarray, expr: int, rng: np.random.Generator, noise: dict, attribute_names,
                  expressions) -> str:
    n = {**DEFAULT_NOISE, **(noise or {})}
    if rng.random() < float(n["generic_prob"]):
        return GENERIC[int(rng.integers(len(GENERIC)))]
    names = list(attribute_names)
    male = bool(attrs[names.index("Male")]) if "Male" in names else None
    if male is None or rng.random() < float(n["person_word_prob"]):
        subject = "person"
    else:
        subject = "man" if male != (rng.random() < float(n["gender_wrong_prob"])) else "woman"
    expression = None
    if rng.random() >= float(n["expression_drop_prob"]):
        e = int(expr)
        if rng.random() < float(n["expression_wrong_prob"]):
            e = int(rng.choice([i for i in range(len(expressions)) if i != int(expr)]))
        expression = expressions[e]
    on = [a for a, v in zip(names, attrs) if v and a != "Male"]
    off = [a for a, v in zip(names, attrs) if not v and a != "Male"]
    named: list[str] = []
    for _ in range(int(rng.integers(0, int(n["max_attributes"]) + 1))):
        wrong = rng.random() < float(n["wrong_attribute_prob"])
        pool = [a for a in (off if wrong else on) if a not in named]
        if pool:
            named.append(pool[int(rng.integers(len(pool)))])
    full = (subject == ("man" if male else "woman") and expression == expressions[int(expr)]
            and set(named) == set(on))
    if full:  # would state the whole label vector: leave the gender out
        subject = "person"
    return _sentence(expression, subject, named)


def build_captions(attributes: np.ndarray, expression: np.ndarray, noise: dict | None, seed: int,
                   attribute_names, expressions) -> list[str]:
    """One fixed caption per image; caption i depends only on (seed, i, the labels, the noise)."""
    n = {**DEFAULT_NOISE, **(noise or {})}
    if n["mode"] == "oracle":
        return [oracle_caption(a, e, attribute_names, expressions) for a, e in zip(attributes, expression)]
    if n["mode"] != "noisy":
        raise ValueError(f"farl.captions.mode must be noisy or oracle, got {n['mode']!r}")
    return [noisy_caption(a, e, np.random.default_rng([int(seed), 7919, i]), n, attribute_names, expressions)
            for i, (a, e) in enumerate(zip(attributes, expression))]


def caption_claims(caption: str, attribute_names, expressions) -> dict:
    """What a caption states: {"gender": "man"|"woman"|None, "expression": str|None,
    "attributes": set of attribute names}."""
    out = {"gender": None, "expression": None, "attributes": set()}
    if not caption.startswith(TEMPLATE_PREFIX):
        return out
    head, _, tail = caption[len(TEMPLATE_PREFIX):].partition(" with ")
    words = head.split()
    if words and words[-1] in ("man", "woman"):
        out["gender"] = words[-1]
    if len(words) > 1 and words[0] in expressions:
        out["expression"] = words[0]
    by_phrase = {phrase(a): a for a in attribute_names}
    out["attributes"] = {by_phrase[p] for p in tail.split(", ") if p in by_phrase} if tail else set()
    return out


def label_claims(attrs: np.ndarray, expr: int, attribute_names, expressions) -> dict:
    """The full label vector in caption_claims' form."""
    on = {a for a, v in zip(attribute_names, attrs) if v}
    return {"gender": "man" if "Male" in on else "woman", "expression": expressions[int(expr)],
            "attributes": on - {"Male"}}
