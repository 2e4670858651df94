"""The simulated raters: the built-in oracles against hand-computed values, their resolver, one answer."""

from __future__ import annotations

import random

import pytest

from server.ratings.simulated_raters import (
    ORACLES,
    answer,
    composite_oracle,
    diversity_oracle,
    garden_oracle,
    length_oracle,
    load_oracle,
    short_clauses_oracle,
    theme_oracle,
)

GARDEN_TEXT = "The garden grew green, and the bees sang."  # 8 words: garden, grew, green, bees


def test_garden_oracle_scores_the_share_of_garden_words() -> None:
    assert garden_oracle("A walk", GARDEN_TEXT) == 0.5
    assert garden_oracle("", "The sea at night") == 0.0  # the theme oracle's words are not its own
    assert garden_oracle("The garden", "") == 0.0  # the prompt is not scored
    assert garden_oracle("", "42, 7.") == 0.0


def test_short_clauses_oracle_counts_clause_marks_per_word() -> None:
    # 6 words, 5 marks (. , ; : !).
    assert short_clauses_oracle("", "Rain. Bread, warm; a letter: home!") == 5 / 6
    assert short_clauses_oracle("", GARDEN_TEXT) == 2 / 8
    assert short_clauses_oracle("", "no marks at all here") == 0.0
    assert short_clauses_oracle("", "...") == 0.0
    assert short_clauses_oracle("", "") == 0.0


def test_diversity_oracle_is_the_mean_of_distinct_one_and_two() -> None:
    # 6 words, 2 distinct; 5 bigrams, 2 distinct: (2/6 + 2/5) / 2 = 11/30.
    assert diversity_oracle("", "the sea the sea the sea") == pytest.approx(11 / 30, abs=1e-15)
    assert diversity_oracle("", "a cat sat on the mat") == 1.0
    # 7 of 8 words distinct, all 7 bigrams distinct.
    assert diversity_oracle("", GARDEN_TEXT) == (7 / 8 + 1.0) / 2
    assert diversity_oracle("", "one two three four") == 1.0  # the shortest text it judges
    assert diversity_oracle("", "one two three") == 0.0  # too short: it would always win
    assert diversity_oracle("", "") == 0.0


def test_composite_oracle_weighs_the_parts_over_their_ranges() -> None:
    # garden 0.5 → (0.5 − 0) / 0.1 clipped to 1; clauses 0.25 → (0.25 − 0.05) / 0.2 = 1;
    # diversity 0.9375 → (0.9375 − 0.8) / 0.2 = 0.6875.
    assert composite_oracle("", GARDEN_TEXT) == pytest.approx(0.4 + 0.3 + 0.3 * 0.6875, abs=1e-12)
    # garden 1/20 → 0.5; no mark → 0 (clipped from −0.25); 20 distinct words → 1.
    twenty = "garden " + " ".join(f"w{chr(97 + index)}" for index in range(19))
    assert composite_oracle("", twenty) == pytest.approx(0.4 * 0.5 + 0.0 + 0.3, abs=1e-12)
    assert composite_oracle("", "") == 0.0


def test_oracles_are_deterministic_and_ignore_the_prompt() -> None:
    for name, oracle in ORACLES.items():
        first = oracle("The garden", GARDEN_TEXT)
        assert oracle("Another prompt", GARDEN_TEXT) == first, name
        assert oracle("The garden", GARDEN_TEXT) == first, name


def test_the_built_in_names() -> None:
    assert {
        "theme": theme_oracle,
        "length": length_oracle,
        "garden": garden_oracle,
        "short_clauses": short_clauses_oracle,
        "diversity": diversity_oracle,
        "composite": composite_oracle,
    } == ORACLES
    assert all(load_oracle(name) is oracle for name, oracle in ORACLES.items())


def test_load_oracle_takes_module_and_function() -> None:
    assert load_oracle("server.ratings.simulated_raters:length_oracle") is length_oracle


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "best",
            "Unknown oracle 'best': use a built-in name (composite, diversity, garden, length, "
            "short_clauses, theme) or module:function.",
        ),
        (
            ":garden",
            "Unknown oracle ':garden': use a built-in name (composite, diversity, garden, length, "
            "short_clauses, theme) or module:function.",
        ),
        (
            "no_such_module_for_oracles:score",
            "Oracle 'no_such_module_for_oracles:score': cannot import module "
            "'no_such_module_for_oracles' (No module named 'no_such_module_for_oracles').",
        ),
        (
            "server.ratings.simulated_raters:missing",
            "Oracle 'server.ratings.simulated_raters:missing': module "
            "'server.ratings.simulated_raters' has no 'missing'.",
        ),
        (
            "server.ratings.simulated_raters:THEME_WORDS",
            "Oracle 'server.ratings.simulated_raters:THEME_WORDS' is not a function.",
        ),
    ],
)
def test_load_oracle_names_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_oracle(path)
    assert str(raised.value) == message


def test_an_answer_follows_the_oracle_without_noise_and_ties_equal_scores() -> None:
    rng = random.Random(0)
    garden = "The garden grew roses."
    plain = "The man sat down."
    assert answer(prompt="p", left=garden, right=plain, oracle=garden_oracle, noise=0.0, rng=rng) == (
        "left",
        "left",
        False,
    )
    assert (
        answer(prompt="p", left=plain, right=garden, oracle=garden_oracle, noise=0.0, rng=rng)[0] == "right"
    )
    assert answer(prompt="p", left=plain, right=plain, oracle=garden_oracle, noise=0.0, rng=rng)[0] == "tie"


def test_keyed_noise_gives_a_pair_the_same_vote_whatever_the_side_and_the_order() -> None:
    texts = [f"Text number {n} about a garden." if n % 3 else f"Text number {n}." for n in range(40)]
    pairs = [(texts[i], texts[j]) for i in range(0, 40, 2) for j in range(1, 40, 7)]

    def winners(order: list[tuple[str, str]], flip: bool, rng_seed: int) -> dict[tuple[str, str], str]:
        rng = random.Random(rng_seed)  # the unkeyed generator differs and is used in between
        result = {}
        for a, b in order:
            left, right = (b, a) if flip else (a, b)
            rng.random()
            choice, _, _ = answer(
                prompt="p", left=left, right=right, oracle=garden_oracle, noise=0.5, rng=rng, noise_key=7
            )
            result[(a, b)] = {"left": left, "right": right}.get(choice, "tie")
        return result

    first = winners(pairs, flip=False, rng_seed=1)
    assert winners(list(reversed(pairs)), flip=True, rng_seed=2) == first
    # Half the votes are random, and a random vote may pick either text: the noise is there.
    oracle_winners = {
        (a, b): a
        if garden_oracle("p", a) > garden_oracle("p", b)
        else b
        if garden_oracle("p", b) > garden_oracle("p", a)
        else "tie"
        for a, b in pairs
    }
    disagreements = sum(first[pair] != oracle_winners[pair] for pair in pairs)
    assert 0.1 * len(pairs) < disagreements < 0.5 * len(pairs)
    # Another key, other coins.
    rng = random.Random(0)
    other = {
        (a, b): {"left": a, "right": b}.get(
            answer(prompt="p", left=a, right=b, oracle=garden_oracle, noise=0.5, rng=rng, noise_key=8)[0],
            "tie",
        )
        for a, b in pairs
    }
    assert other != first


def test_unkeyed_noise_draws_from_the_raters_generator() -> None:
    votes = [
        answer(
            prompt="p", left="a b c d", right="a b c d", oracle=garden_oracle, noise=1.0, rng=random.Random(3)
        )
        for _ in range(2)
    ]
    assert votes[0] == votes[1]  # the same generator state, the same answer
    rng = random.Random(3)
    drawn = {
        answer(prompt="p", left="x y", right="z w", oracle=garden_oracle, noise=1.0, rng=rng)[0]
        for _ in range(50)
    }
    assert drawn == {"left", "right"}  # a random vote never ties
