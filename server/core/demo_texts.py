"""What the text demo asks and how its two versions decode: plain data, with no Django import, so
that ``bench.demo_quality`` builds and samples the demo model exactly as the demo does
(``server.core.demo`` seeds the prompts, ``server.generators.demo`` enrols the versions)."""

from __future__ import annotations

from typing import Any

# Each prompt is the opening sentence of a short story; the versions write what comes next. An
# opening gives the small demo model a scene to stay in (a title such as "The sea at night" asked it
# to continue a phrase, and it rarely wrote a sentence that made sense of it). None of them occurs in
# the demo corpus, so the model continues an opening it has not read (bench.demo_quality counts
# the continuations that are mostly copied from the corpus).
DEMO_PROMPTS_TRAIN = [
    "The sea was calm and dark that night.",
    "A girl wrote a letter to the moon.",
    "The old clock in the kitchen stopped at noon.",
    "Rain fell on the city all morning.",
    "The lighthouse keeper climbed the stairs at dawn.",
    "In winter the garden was white and quiet.",
    "The night train left the station on time.",
    "The baker opened his shop at five.",
    "An old man sat by the river every evening.",
    "The fishing boats came back to the harbour late.",
    "The library was empty after closing time.",
    "A weaver sat down at her loom.",
    "A small cat slept on a warm roof.",
    "Two friends walked through the park in autumn.",
    "My grandmother kept every letter she was sent.",
    "A boy built a machine out of old clocks.",
]
DEMO_PROMPTS_HOLDOUT = [
    "The first snow fell in the night.",
    "A lamp was burning in the window.",
    "The tide came in slowly over the sand.",
    "We walked by the river in the evening.",
]

# Two decoding settings of the same weights: raters see whether bolder sampling reads as more
# creative or as more broken. "bold" samples at temperature 0.8 over the whole vocabulary; at 1 (the
# model's own distribution) the demo model's tail breaks its grammar ("A farmer had a young couple's
# happened in the top of a river."), which would only measure breakage. "careful" is cooler and
# cuts the tail (4-gram novelty 50 % against bold's 69 %). Both end a text that runs out of tokens
# after its last complete sentence, so that neither reads as broken off (bench.demo_quality).
DEMO_VERSIONS: dict[str, dict[str, Any]] = {
    "careful": {
        "temperature": 0.6,
        "top_p": 0.9,
        "max_new_tokens": 48,
        "stop": ["\n\n"],
        "end_at_sentence": True,
    },
    "bold": {
        "temperature": 0.8,
        "top_p": 1.0,
        "max_new_tokens": 48,
        "stop": ["\n\n"],
        "end_at_sentence": True,
    },
}
