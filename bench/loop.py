"""The loop, measured over seeds: simulated raters → snapshot → reward model → child → its samples → …

Run: ``.venv/bin/python -m bench.loop --oracle garden`` (needs the PostgreSQL of this machine; it
creates and drops its own database ``lovelace_bench_loop``, or the one named by
``LOVELACE_BENCH_LOOP_DATABASE``). Not part of the test run.

Images: ``--modality image`` runs ``bench.image_loop`` instead (no database; its own oracles
``warmth``, ``symmetry``; see that module for its options and figures).

Options: ``--oracle NAME|module:function`` (any oracle ``manage.py simulate_raters`` accepts:
``theme``, ``length``, ``garden``, ``short_clauses``, ``diversity``, ``composite``), ``--seeds N``
(3), ``--first-seed K`` (0: seeds K … K+N−1, for a confirmation on seeds not seen before),
``--strategies random,active`` (also ``thompson``: double Thompson sampling; ``margin``: the pairs
whose winner the reward model is surest of; ``ceiling`` and ``ceiling_all``: margin with the oracle
itself as the reward model, from round 2 or from round 1, the most selection could give),
``--methods dpo,rloo`` (rloo = RLOO against the
round's reward model), ``--reward-model heads|lora`` (``REWARD_MODELS``), ``--rounds`` (3),
``--labels-per-round`` (96: 6 pairs on each of 16 prompts), ``--control`` (also run control
chains: random pairs, every vote random; each strategy's final must then beat the control's).

Each (strategy, method, seed) is one chain with its own study. Simulated raters judge over the
real HTTP API (gunicorn) with the oracle and 10 % random answers; nothing in training sees the
oracle, only the votes carry it. The prompts are opening sentences of short stories and the base
versions the demo's two (careful and bold decoding of the demo model), as the demo shows them.
Each round: select pairs (random; active or thompson from the last round's reward ensemble, random
in round 1, which has none) → raters vote → snapshot → reward model → leaderboard → child of the
leaderboard's best (DPO on the snapshot, or RLOO on the reward model) → the child generates. A
seed fixes which prompts the loop sees, the pairs, the votes' noise and the training seeds.
``--noise 1`` (every vote random) is the control: a loop that "rises" there rises without learning
anyone's preference.

The score of a round is the oracle's mean over the samples of the version the round produced (its
child) on evaluation prompts that no step of the loop sees: not the raters, not training, not the
leaderboard (they sit in a separate study). Round 0 is the better of the two base versions by the
oracle itself, a baseline favoured by selection, so the comparison errs against the loop. Taking
the oracle's best of all versions instead would rise with no learning at all (a maximum over more
noisy means).

Printed: per round, mean ± standard error over seeds of the score, the labels used and the reward
model's validation accuracy; a verdict per strategy and method (``evaluation.loop_verdict``:
final − round 0 must reach 2 standard errors of the per-seed differences; a flat line never
passes; one seed cannot tell); for each other strategy, the labels it needed to reach random's
final score as a share of random's, the difference paired by seed with its standard error, and
whether reaching (or missing) is within noise; and last one line per strategy and method:
``summary <strategy> <method>: round0 <x> final <y> se <s> labels <n>``.

Target (the issue's): on each of garden, short_clauses, diversity and composite the final score
beats round 0 by ≥ 2 standard errors with ≤ 300 labels, and active reaches random's final score
with ≤ 70 % of its labels on at least three of the four.

Measured 2026-12-01 (TRL 1.16, peft 0.21; DPO_CONFIG below), ``--seeds 3``, 3 rounds × 96 labels
(288), on the demo model of that day (Muon, 2.1 MB corpus) with the openings and decodings above;
final − round 0 with the se of the per-seed differences. random and active ran together
(``--methods dpo``); thompson ran apart with the same seeds (same prompts, same base models), its
chains paired with that run's random ones (its figures printed by this module's ``report`` from
the two runs' round lines, which hold 4 decimals):

    DPO            round 0   random final         active final         thompson final
    garden         0.0057    0.0144 (+0.0087,     0.0135 (+0.0079,     0.0149 (+0.0092,
                             se 0.0028) rises     se 0.0031) rises     se 0.0029) rises
    short_clauses  0.1097    0.1917 (+0.0820,     0.2078 (+0.0981,     0.2196 (+0.1099,
                             se 0.0128) rises     se 0.0066) rises     se 0.0182) rises
    diversity      0.8297    0.9101 (+0.0804,     0.9147 (+0.0850,     0.9250 (+0.0953,
                             se 0.0111) rises     se 0.0129) rises     se 0.0124) rises
    composite      0.2204    0.3542 (+0.1338,     0.3606 (+0.1402,     0.3514 (+0.1310,
                             se 0.0360) rises     se 0.0230) rises     se 0.0175) rises

Labels to reach random's final score (288), difference from it paired by seed:

    DPO            active                                thompson
    garden         192 = 67 % (+0.0004 ± 0.0077, noise)   288 (+0.0004 ± 0.0041, noise)
    short_clauses  288 (+0.0161 ± 0.0138, noise)          288 (+0.0280 ± 0.0200, noise)
    diversity      288 (+0.0046 ± 0.0061, noise)          192 = 67 % (+0.0046 ± 0.0041, noise)
    composite      288 (+0.0064 ± 0.0549, noise)          not reached (−0.0028 ± 0.0309, noise)

The first target, as the issue states it (the final against round 0), is met with DPO: every
built-in oracle rises by more than 2 standard errors with 288 labels, under each strategy (against
the control below, 11 of the 12). The second is not: active reaches random's final score with
≤ 70 % of the labels on one oracle of four (garden), thompson on one (diversity), and both only
within noise; every difference between strategies here is within its noise. What limits it: the
reward model, which active selection relies on, scores 0.45-0.74 on validation pairs at these
label counts (a sentence encoder's features with 96-288 votes, many of them ties or coin flips);
round 1 has no reward model, so a strategy can differ from random only in rounds 2 and 3; and
three seeds give standard errors as large as the differences sought.

Margin selection (``--strategies random,margin``, 5 seeds, DPO; measured 2026-12-01 evening, the
same settings, before ``noise_key``): the pairs whose winner the reward model is surest of, after
Muldrew et al. 2024, who found such pairs made DPO more label-efficient. Final − round 0 (se), and
the labels margin needed to reach random's final, paired by seed:

    DPO            round 0   random final              margin final              margin reaches
    garden         0.0079    0.0198 (+0.0119, 0.0040)  0.0140 (+0.0061, 0.0023)  not (−0.0047 ± 0.0026)
    short_clauses  0.1081    0.1978 (+0.0897, 0.0042)  0.1932 (+0.0852, 0.0124)  not (−0.0045 ± 0.0094)
    diversity      0.8074    0.9134 (+0.1060, 0.0225)  0.9155 (+0.1081, 0.0258)  288 (+0.0021 ± 0.0141)
    composite      0.2374    0.3495 (+0.1120, 0.0196)  0.3685 (+0.1310, 0.0267)  192 = 67 % (+0.0043 ± 0.0125)

Confirmation on seeds 5-8 with the LoRA reward model ranking the pairs (``--first-seed 5 --seeds 4
--reward-model lora``, after ``noise_key``), the same columns:

    DPO            round 0   random final              margin final              margin reaches
    garden         0.0079    0.0212 (+0.0133, 0.0021)  0.0181 (+0.0102, 0.0032)  not (−0.0031 ± 0.0036)
    short_clauses  0.1036    0.1964 (+0.0928, 0.0102)  0.1745 (+0.0709, 0.0067)  not (−0.0219 ± 0.0127)
    diversity      0.7849    0.9148 (+0.1299, 0.0336)  0.9307 (+0.1457, 0.0306)  192 = 67 % (+0.0009 ± 0.0060)
    composite      0.2370    0.3422 (+0.1052, 0.0169)  0.3684 (+0.1314, 0.0253)  288 (+0.0262 ± 0.0256)

Every cell rises, and the second target is again not met: margin reaches random's final with
≤ 70 % of the labels on one oracle of four in each run (composite, then diversity), within noise,
and every difference from random is within its noise; the better reward model did not make margin
better (short clauses fell 1.7 se below random), and garden was below random in both runs. What
limits it: the reward models that rank the pairs agree with the oracle on 0.55-0.75 of held-out
pairs at these label counts (``bench.reward_quality``), and the chains of a seed were not truly
paired in the first run: round 1, random in both strategies, differed between them (short_clauses
0.1407 against 0.1489)
because which pair got a random vote depended on the order and sides the server drew. Since then
the simulated raters key their noise by the pair (``noise_key``): the same pairs get the same votes
in every chain of a seed. The chains still differ in which prompts the snapshot holds out for
validation (a hash of the study's id and the prompt's), so round 1 is closer but not identical.

How much could any selection give? (``--strategies random,ceiling`` and a separate ``ceiling_all``
run, 4 seeds, DPO, heads reward model, measured 2026-12-01 night; ``ceiling_all`` paired with the
first run's random chains by seed.) ``ceiling`` is margin's rule with the oracle itself as the
reward model, from round 2 like every strategy that asks one; ``ceiling_all`` the same from round
1. Score per round (labels 96, 192, 288), and the labels each needed to reach random's final:

    DPO            strategy     round 1  round 2  round 3  reaches random's final
    garden         random       0.0123   0.0151   0.0243   (ties: 60, 115, 168 of the labels)
                   ceiling      0.0132   0.0221   0.0238   not (−0.0004 ± 0.0033)
                   ceiling_all  0.0164   0.0223   0.0222   not (−0.0019 ± 0.0074)
    short_clauses  random       0.1542   0.1839   0.2039
                   ceiling      0.1530   0.1862   0.1997   not (−0.0042 ± 0.0074)
                   ceiling_all  0.1601   0.1936   0.1970   not (−0.0069 ± 0.0081)
    diversity      random       0.8976   0.9062   0.9171
                   ceiling      0.8982   0.9129   0.9153   not (−0.0018 ± 0.0076)
                   ceiling_all  0.9129   0.9270   0.9321   192 = 67 % (+0.0098 ± 0.0137, noise)
    composite      random       0.2858   0.3400   0.3842
                   ceiling      0.3008   0.3612   0.4034   288 (+0.0192 ± 0.0021)
                   ceiling_all  0.3137   0.3629   0.4039   288 (+0.0197 ± 0.0177)

Round 0: garden 0.0077, short_clauses 0.1074, diversity 0.8030, composite 0.2364. Even a reward
model that is the preference itself, choosing from the first vote, makes margin reach random's
final with ≤ 70 % of the labels on one oracle of four (diversity, within noise): the second
target is out of reach of pair selection under this protocol, not only of our reward models. The
selected pairs are clearer (garden: 100 ties in 288 labels instead of 168; the others: no tie
after round 1) and rounds 1-2 rise faster, but the lead does not compound: each round's child is
one DPO run (2 epochs, β 0.1 to its parent) and moves about as far whatever the votes, so the
score follows the rounds more than the labels. Label efficiency would need the loop to learn more
per round (more optimisation per round, or more rounds of fewer labels), which changes what is
compared, not which pairs are asked.

That last guess was then tested, and it does not hold: with three times the optimisation per round
(``--dpo-epochs 6``; random and ceiling, 3 seeds, 2026-12-02) random learns more (composite final
0.4418 against 0.3842 at 2 epochs, short_clauses 0.2189 against 0.2039), and ceiling still reaches
random's final with ≤ 70 % of the labels only on diversity (192 = 67 %, +0.0097 ± 0.0093, within
noise; random is flat there after round 1). Garden not (−0.0033 ± 0.0019), composite not (−0.0224 ±
0.0518), and on short_clauses ceiling ends *below* random (−0.0199 ± 0.0042). The clearest pairs,
each sample in at most two, teach DPO less than random pairs once it trains longer: clarity is not
what this trainer lacks, and a selection rule that beats random here would have to bring something
else (which samples are compared, not how clearly).

Nor does a finer protocol (``--rounds 6 --labels-per-round 48``, the same 288 labels; random and
ceiling, 3 seeds, 2026-12-02), where "≤ 70 %" means by round 4 (192 labels) and a selection rule
has three rounds to make a difference instead of one. Score per round (48 … 288 labels) and the
labels ceiling needed to reach random's final, paired by seed (all within noise):

    DPO            strategy  r1      r2      r3      r4      r5      r6      reaches random's final
    garden         random    0.0083  0.0119  0.0144  0.0140  0.0150  0.0223
                   ceiling   0.0086  0.0163  0.0322  0.0313  0.0290  0.0291  144 = 50 % (+0.0099 ± 0.0125)
    short_clauses  random    0.1360  0.1638  0.1850  0.1883  0.2020  0.2262
                   ceiling   0.1428  0.1785  0.1803  0.2050  0.2107  0.2162  not (−0.0100 ± 0.0088)
    diversity      random    0.8807  0.9077  0.9226  0.9287  0.9328  0.9504
                   ceiling   0.8968  0.9112  0.9097  0.9366  0.9424  0.9343  not (−0.0080 ± 0.0136)
    composite      random    0.3006  0.3217  0.3384  0.3812  0.4119  0.4659
                   ceiling   0.3052  0.3715  0.4285  0.4408  0.4542  0.4673  288 (+0.0014 ± 0.0174)

Round 0: garden 0.0071, short_clauses 0.1061, diversity 0.7947, composite 0.2327. Every cell rises
(2 se). The oracle as selector leads early on garden and composite (composite at 144 labels is
where random is at about 240) and random catches up by the final; on short_clauses and diversity
it never leads beyond noise. One oracle of four within noise, as at 3 × 96: the second target is
not reachable by pair selection here even with a perfect reward model. Random itself ends higher
with six rounds of 48 than with three of 96 on three oracles (short_clauses 0.2262 against
0.2039, diversity 0.9504 against 0.9171, composite 0.4659 against 0.3842): more rounds, each
training from the leaderboard's best on every vote so far, teach more than the same labels in
fewer rounds.

Control (``--control``; measured as a separate ``--strategies random --noise 1`` run with the same
seeds): random pairs, every vote a coin flip, DPO. Its final score, and each strategy's final
against it, paired by seed:

    DPO            control final          random − control      active − control      thompson − control
    garden         0.0077 (+0.0021,       +0.0067 (se 0.0038)   +0.0058 (se 0.0020)   +0.0071 (se 0.0019)
                   se 0.0014) no          NOT beyond            beyond                beyond
    short_clauses  0.1166 (+0.0069,       +0.0751 (se 0.0172)   +0.0912 (se 0.0071)   +0.1030 (se 0.0182)
                   se 0.0046) no          beyond                beyond                beyond
    diversity      0.8161 (−0.0135,       +0.0940 (se 0.0069)   +0.0986 (se 0.0115)   +0.1088 (se 0.0124)
                   se 0.0063) no          beyond                beyond                beyond
    composite      0.2430 (+0.0226,       +0.1112 (se 0.0428)   +0.1176 (se 0.0232)   +0.1084 (se 0.0253)
                   se 0.0081) RISES       beyond                beyond                beyond

The composite control rises (+0.023, a sixth of the loop's +0.134): DPO on coin-flip votes still
moves the model in a way this oracle rewards (three seeds and a 2-se rule also let chance through:
a t-test at that level would ask 4.3 se). Hence ``--control``: the final must beat the control's
final, not only round 0. Beyond 2 se of the control: 11 of the 12 DPO cells; random selection on
garden is 1.8 se above it.

RLOO against the round's reward model (RLOO_CONFIG), the same run settings (``--methods rloo``):

    RLOO           round 0   random final                        active final
    garden         0.0057    0.0170 (+0.0113, se 0.0013) rises   0.0116 (+0.0060, se 0.0028) rises
    short_clauses  0.1097    0.1241 (+0.0145, se 0.0065) rises   0.1149 (+0.0052, se 0.0044) no
    diversity      0.8297    0.8441 (+0.0144, se 0.0124) no      0.8494 (+0.0198, se 0.0058) rises
    composite      0.2204    0.2502 (+0.0298, se 0.0197) no      0.2448 (+0.0244, se 0.0141) no

RLOO learns less than DPO here: it optimises the reward model, which scores 0.52-0.67 on its
validation pairs, where DPO learns from the votes themselves; its rises are a fifth of DPO's or
less. No RLOO control was run (the DPO control's drift does not carry over to another trainer).

RLOO against a reward model on the policy's own base with LoRA (``--reward-model lora``,
``REWARD_MODELS``; random pairs, 3 seeds, measured 2026-12-01 evening in a separate run, so its
round 0 differs a little; each row's verdict is within its run):

    RLOO, lora RM  round 0   random final                        heads RM above, random final
    garden         0.0071    0.0156 (+0.0085, se 0.0026) rises   +0.0113 (se 0.0013) rises
    short_clauses  0.1061    0.1548 (+0.0487, se 0.0092) rises   +0.0145 (se 0.0065) rises
    diversity      0.7947    0.8979 (+0.1032, se 0.0261) rises   +0.0144 (se 0.0124) no
    composite      0.2327    0.2936 (+0.0609, se 0.0106) rises   +0.0298 (se 0.0197) no

With the LoRA reward model RLOO rises on all four oracles with 288 labels, and learns three to
seven times as much on the style oracles (short clauses, repetition), where the heads' frozen
sentence features see little (``bench.reward_quality``: at 288 labels LoRA agrees with short
clauses 0.75 against 0.58); on the topical garden oracle the heads are the better reward model and
RLOO with them the better loop. Its rises approach DPO's on diversity and reach half of DPO's on
short clauses and composite. The reward model takes 30-45 s a round instead of ~10 s.

Timing on 2 CPU cores, four runs side by side under ``OMP_NUM_THREADS=1`` (with other work beside
them): one oracle's DPO matrix (random and active, 3 seeds, 6 chains × 3 rounds) 10-12 minutes;
thompson or the control alone (3 chains) 13-14 minutes with eight runs side by side; the RLOO
matrix 48 minutes (20 RLOO steps of 32 completions per round), RLOO with the LoRA reward model
and random pairs alone (3 chains) 19-21 minutes; random and margin DPO with 5 seeds (10 chains)
26-31 minutes, with 4 seeds and the LoRA reward model (8 chains) 25-38 minutes. Without ``OMP_NUM_THREADS=1``,
torch's threads of several processes oversubscribe the cores and the runs go 2-3 times slower.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.core.demo_texts import DEMO_VERSIONS

ROOT = Path(__file__).resolve().parents[1]
# LOVELACE_BENCH_LOOP_DATABASE names another database, so that two runs on one server do not drop
# each other's.
DATABASE = os.environ.get("LOVELACE_BENCH_LOOP_DATABASE", "lovelace_bench_loop")
if not DATABASE.replace("_", "").isalnum():
    raise SystemExit(f"LOVELACE_BENCH_LOOP_DATABASE {DATABASE!r}: letters, digits and _ only")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("LOVELACE_VAR_DIR", str(ROOT / "var" / "bench-loop"))
# The demo's model, when it was built, sits beside the bench's var folder (``_base_model``): jobs may
# load it only from an allowed folder.
DEMO_MODELS = Path(os.environ["LOVELACE_VAR_DIR"]).resolve().parent / "models"
os.environ["LOVELACE_MODEL_ROOTS"] = ":".join(
    filter(None, [os.environ.get("LOVELACE_MODEL_ROOTS", ""), str(DEMO_MODELS)])
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")  # development mode on PostgreSQL (off by default there)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Opening sentences of short stories, as the demo asks (server/core/demo_texts.py), none of them in
# the demo corpus and none holding a word of the garden oracle's lexicon; each seed splits them into
# the loop's prompts and the evaluation prompts.
PROMPTS = [
    "The postman was late on Monday.",
    "A stranger knocked at the door after dark.",
    "The school bell rang twice that afternoon.",
    "My uncle fixed radios in a small shop.",
    "The ferry waited at the pier for one more passenger.",
    "A woman found a key in her coat pocket.",
    "The market opened early on the first day of the month.",
    "The old bridge was closed for repairs.",
    "A boy counted the steps to the top of the tower.",
    "The tailor measured the coat one more time.",
    "The last bus came down the road without its lights.",
    "Grandfather wound the clock every Sunday.",
    "The village had one telephone, and it rang at midnight.",
    "A letter arrived with no name on the envelope.",
    "The painter mixed a colour that nobody had seen.",
    "Two sisters shared a room above the bakery.",
    "The fire in the kitchen had gone out.",
    "A box of photographs was found in the attic.",
    "The doctor walked to the next village in the snow.",
    "The station master wrote the times on a board.",
    "A girl learned to play the violin from her neighbour.",
    "The ship's cook had a secret recipe.",
    "Nobody in the town could read the old map.",
    "The music teacher lost her voice on the day of the concert.",
    "A dog waited at the gate every evening.",
    "The lamplighter began his round at six.",
    "My father kept a notebook of the weather.",
    "The shoemaker worked by the light of one candle.",
]
LOOP_PROMPTS = 16  # the rest (12) are evaluation prompts
SAMPLES_PER_PROMPT = 4  # per loop prompt and version: the material of the pairs
EVALUATION_SAMPLES_PER_PROMPT = 8  # 12 × 8 = 96 samples per version behind each score
RATERS = 3
NOISE = 0.1  # share of random answers (Christiano et al. assumed 10 %); --noise 1 is the control
CONTROL = "control"  # --control: chains with random pairs and every vote random, beside the others
# --strategies ceiling: margin selection with the oracle itself as the reward model (bench only, it
# reads the preference the loop must learn): the most any reward model could give margin, and so
# whether the reward model or the protocol limits label efficiency. Random in round 1, like every
# strategy that asks a reward model.
CEILING = "ceiling"
# --strategies ceiling_all: the same from round 1 on, with no random first round: the most margin's
# rule could give a loop that knew the preference from the start.
CEILING_ALL = "ceiling_all"
# The demo's two versions of the base model (careful: temperature 0.6, top_p 0.9; bold: 0.8), 48
# new tokens ending after the last complete sentence: the loop improves what the demo shows.
BASE_VERSIONS = DEMO_VERSIONS
# Training options as the services accept them (server/training/services.py); chosen to move a
# tiny model within a round on the CPU: the trainers' defaults are for real models. LoRA on every
# linear layer of the tiny GPT-2 (peft's default adapts c_attn alone) at 2e-3: on one round of the
# composite oracle (3 seeds, 96 labels, bench-like data outside the bench) the defaults of the
# TRL move (c_attn, 5e-4) rose +0.037, full fine-tuning at 2e-4 +0.095, these +0.138 (se 0.035).
DPO_EPOCHS = 2  # --dpo-epochs: passes of each round's DPO over the votes
DPO_CONFIG = {
    "learning_rate": 2e-3,
    "epochs": DPO_EPOCHS,
    "beta": 0.1,
    "lora_target_modules": ["c_attn", "c_proj", "c_fc"],
}
# Options as the services name them (server/training/services.py): 20 optimizer steps of 8 prompts
# × 4 completions each, as many new tokens per completion as the versions decode (48); LoRA on
# every linear layer at 1e-3 (at 1e-4 on c_attn alone the KL to the parent stayed ~0 after 20
# steps: the policy did not move).
RLOO_CONFIG = {
    "learning_rate": 1e-3,
    "lora_target_modules": ["c_attn", "c_proj", "c_fc"],
    "max_steps": 20,
    "num_generations": 4,
    "per_device_batch_size": 32,
    "max_completion_length": BASE_VERSIONS["careful"]["max_new_tokens"],
    "beta": 0.05,
}


# --reward-model: the reward model each round trains (server/training/services.py options). heads:
# the service's default, linear heads over frozen MiniLM features. lora: the policy's own base (the
# demo model) as a sequence classifier with LoRA on every linear layer, as bench.reward_quality
# measures it: on held-out openings at 288 labels it agrees with short_clauses 0.75 (heads 0.58)
# and diversity 0.68 (0.60), with garden 0.63 (0.75).
REWARD_MODELS: dict[str, dict[str, Any]] = {
    "heads": {},
    "lora": {
        "kind": "sequence_classification",
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["c_attn", "c_proj", "c_fc"]},
        "epochs": 3,
        "learning_rate": 1e-3,
        "batch_size": 8,
    },
}


@dataclass
class Chain:
    """One (strategy, method, seed) run: per round, its score, labels and reward-model accuracy."""

    strategy: str
    method: str
    seed: int
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    ties: list[int] = field(default_factory=list)


def _create_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")


def _clear_earlier_run(var: Path) -> None:
    """Remove what an earlier run's jobs left in ``var``: the database starts afresh, so job ids
    repeat, and a job would find an earlier job's checkpoints under its id (a reward model refuses
    them; a policy trainer would resume from them). The base model and its build stay."""
    import shutil

    doomed = [*(var / "checkpoints").glob("job-*"), *(var / "models").glob("loop-*")]
    doomed.append(var / "reward_models")
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _base_model(var: Path) -> Path:
    from workers.ml.base_model import build_base_model

    demo = DEMO_MODELS / "lovelace-tiny"
    if (demo / "config.json").exists():
        return demo
    target = var / "models" / "base"
    if not (target / "config.json").exists():
        corpus = (ROOT / "workers" / "ml" / "corpus" / "lovelace.txt").read_text(encoding="utf-8")
        started = time.perf_counter()
        build_base_model(corpus=corpus, output_dir=target, checkpoint_dir=var / "checkpoints" / "base")
        print(f"built the base model in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def _run(job) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run ``job`` in this process; its result, or an error naming the job."""
    from server.generators.jobs import generate_run
    from server.jobs.models import Job
    from server.ratings.pair_selection import pair_selection_run
    from server.training.jobs import policy_train_run, reward_model_train_run, snapshot_run
    from workers.runner import run_job

    handlers = {
        "generate": generate_run,
        "select_pairs": pair_selection_run,
        "snapshot": snapshot_run,
        "train_reward_model": reward_model_train_run,
        "train_policy": policy_train_run,
    }
    status = run_job(job.id, handlers[job.kind])
    job = Job.objects.get(id=job.id)
    if status != "succeeded":
        raise RuntimeError(f"{job.kind} job {job.id} {status}: {job.error}")
    return dict(job.result or {})


def _evaluate(version, evaluation_study, oracle) -> float:  # type: ignore[no-untyped-def]
    """The oracle's mean over ``version``'s samples on the evaluation prompts (generated first)."""
    from server.generators.models import Sample
    from server.generators.services import generate_start
    from server.studies.services import study_enrol_version

    study_enrol_version(study=evaluation_study, version=version)
    _run(
        generate_start(
            study=evaluation_study,
            version_ids=[version.id],
            split="holdout",
            samples_per_prompt=EVALUATION_SAMPLES_PER_PROMPT,
        )
    )
    scores = [
        oracle(prompt, text)
        for prompt, text in Sample.objects.filter(
            version=version, prompt__study=evaluation_study
        ).values_list("prompt__text", "text")
    ]
    return sum(scores) / len(scores)


def run_chain(  # type: ignore[no-untyped-def]
    *,
    chain: Chain,
    oracle,
    rounds: int,
    pairs_per_prompt: int,
    noise: float,
    model_dir: Path,
    base_url: str,
    reward_config: dict[str, Any] | None = None,
    dpo_epochs: int = DPO_EPOCHS,
) -> None:
    """Run the rounds of one chain, appending its figures to ``chain``."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from server.evaluations.leaderboard import leaderboard_compute
    from server.generators.models import GeneratorVersion, VersionKind
    from server.generators.services import generate_start, generator_version_register
    from server.ratings.models import Judgment, Outcome, Rater
    from server.ratings.pair_selection import pair_selection_start
    from server.ratings.simulated_raters import ApiClient, rate
    from server.studies.models import PromptSplit
    from server.studies.services import PromptInput, prompt_bulk_create, study_create
    from server.training.services import policy_train_start, reward_model_train_start, snapshot_start

    name = f"{chain.strategy}-{chain.method}-s{chain.seed}"
    reward_config = reward_config or {}
    # The control selects at random and its raters vote at random: only the votes differ.
    selection = "random" if chain.strategy in (CONTROL, CEILING, CEILING_ALL) else chain.strategy
    noise = 1.0 if chain.strategy == CONTROL else noise
    prompts = list(PROMPTS)
    random.Random(chain.seed).shuffle(prompts)  # the same split for every chain of a seed
    study = study_create(
        name=f"Loop bench {name}",
        slug=f"loop-{name}",
        question="Which is better?",
        overlap=1,
        gold_rate=0.0,
        repeat_rate=0.0,
        fast_judgment_seconds=0.5,
        pair_selection=selection,
    )
    # Train prompts only: every label can teach; the leaderboard then ranks on these votes.
    prompt_bulk_create(study=study, prompts=[PromptInput(text) for text in prompts[:LOOP_PROMPTS]])
    evaluation_study = study_create(
        name=f"Loop bench {name} (evaluation)", slug=f"loop-{name}-evaluation", question="(not rated)"
    )
    prompt_bulk_create(
        study=evaluation_study,
        prompts=[PromptInput(text, split=PromptSplit.HOLDOUT) for text in prompts[LOOP_PROMPTS:]],
    )
    versions = [
        generator_version_register(
            generator_name=f"loop-{name}",
            label=label,
            kind=VersionKind.BASE,
            model_path=str(model_dir),
            study=study,
            decoding=decoding,
        )
        for label, decoding in BASE_VERSIONS.items()
    ]
    _run(
        generate_start(
            study=study, version_ids=[v.id for v in versions], samples_per_prompt=SAMPLES_PER_PROMPT
        )
    )
    clients = []
    for number in range(RATERS):
        user, _ = get_user_model().objects.get_or_create(username=f"{name}-rater-{number}")
        Rater.objects.get_or_create(study=study, user=user)
        clients.append(ApiClient(base_url, Token.objects.get_or_create(user=user)[0].key))
    chain.scores.append(max(_evaluate(version, evaluation_study, oracle) for version in versions))
    chain.labels.append(0)
    chain.ties.append(0)
    chain.accuracy.append(None)
    for round_number in range(1, rounds + 1):
        round_seed = chain.seed * 1000 + round_number
        if chain.strategy == CEILING_ALL or (chain.strategy == CEILING and round_number > 1):
            _select_by_oracle(study=study, oracle=oracle, pairs_per_prompt=pairs_per_prompt)
        else:
            _run(pair_selection_start(study=study, pairs_per_prompt=pairs_per_prompt, seed=round_seed))
        pending = study.comparisons.filter(completed_assignments=0).count()
        for index, client in enumerate(clients):
            share = pending // RATERS + (1 if index < pending % RATERS else 0)
            stats = rate(
                client=client,
                study_slug=study.slug,
                oracle=oracle,
                votes=share,
                noise=noise,
                rng=random.Random(round_seed * 100 + index),
                # The same pairs get the same votes in every chain of a seed, whichever rater,
                # order or side the server draws: chains differ by their selections, not by luck.
                noise_key=round_seed,
            )
            if stats.errors:
                raise RuntimeError(f"simulated rater {index}: {'; '.join(stats.errors)}")
        snapshot_id = _run(snapshot_start(study=study))["snapshot_id"]
        reward = _run(
            reward_model_train_start(
                study=study, snapshot_id=snapshot_id, config={**reward_config, "seed": chain.seed}
            )
        )
        leaderboard_compute(study=study, rounds=200)
        if chain.method == "dpo":
            policy_job = policy_train_start(
                study=study,
                parent_version_id=None,  # the leaderboard's best
                method="dpo",
                snapshot_id=snapshot_id,
                config={**DPO_CONFIG, "epochs": dpo_epochs, "seed": chain.seed},
            )
        else:
            policy_job = policy_train_start(
                study=study,
                parent_version_id=None,
                method="rloo",
                reward_model_id=reward["reward_model_id"],
                config={**RLOO_CONFIG, "seed": chain.seed},
            )
        child = GeneratorVersion.objects.get(id=_run(policy_job)["child_version_id"])
        _run(generate_start(study=study, version_ids=[child.id], samples_per_prompt=SAMPLES_PER_PROMPT))
        chain.scores.append(_evaluate(child, evaluation_study, oracle))
        judgments = Judgment.objects.filter(assignment__comparison__study=study)
        chain.labels.append(judgments.count())
        chain.ties.append(judgments.filter(outcome=Outcome.TIE).count())
        chain.accuracy.append(reward.get("validation_accuracy"))
        print(
            f"  [{name}] round {round_number}: {chain.labels[-1]} labels ({chain.ties[-1]} ties), "
            "reward model validation "
            f"accuracy {_shown(chain.accuracy[-1])}, child {child.label} from {child.parent.label}: "
            f"score {chain.scores[-1]:.4f} (round 0 {chain.scores[0]:.4f})",
            flush=True,
        )


def _select_by_oracle(*, study, oracle, pairs_per_prompt: int) -> None:  # type: ignore[no-untyped-def]
    """The ``ceiling`` strategy's pairs: margin's rule (``select_widest_margin``) with the oracle's
    own scores for the ensemble's, among the same candidates the server's strategies see."""
    import numpy as np

    from server.generators.models import Sample
    from server.ratings.pair_selection import comparisons_create, new_candidate_pairs
    from workers.ml.active_selection import select_widest_margin

    candidates = new_candidate_pairs(study=study)
    sample_ids = sorted({sample_id for _, a, b in candidates for sample_id in (a, b)})
    rows = Sample.objects.filter(id__in=sample_ids).values_list("id", "prompt__text", "text")
    score = {sample_id: oracle(prompt, text) for sample_id, prompt, text in rows}
    # One "member": the oracle. Its scores are scaled so that σ of a difference stays graded
    # (margin ranks by σ(Δ) − ½, monotone in |Δ|, whatever the scale).
    scores = np.array([[score[sample_id] for sample_id in sample_ids]], dtype=np.float64)
    spread = float(scores.std()) or 1.0
    position = {sample_id: index for index, sample_id in enumerate(sample_ids)}
    picked = select_widest_margin(
        scores / spread,
        np.array([[position[a], position[b]] for _, a, b in candidates], dtype=np.int64).reshape(-1, 2),
        np.array([prompt_id for prompt_id, _, _ in candidates], dtype=np.int64),
        pairs_per_prompt,
    )
    comparisons_create(study=study, pairs=[candidates[int(index)] for index in picked])


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _mean_and_error(values: list[float]) -> str:
    from evaluation.loop_verdict import standard_error

    error = standard_error(values)
    return f"{sum(values) / len(values):.4f} ± {'n/a' if error is None else f'{error:.4f}'}"


def report(*, chains: list[Chain], oracle_name: str, strategies: list[str], methods: list[str]) -> None:
    """Print the per-round table, the verdicts, the label efficiency and the summary lines."""
    from evaluation.loop_verdict import reach_verdict, rise_verdict, summary_line

    seeds = len({chain.seed for chain in chains})
    print(
        f"\nOracle {oracle_name}: score of each round's version on unseen prompts, "
        f"mean ± se over {seeds} seeds"
    )
    # Each (strategy, method)'s chains in seed order: verdicts between strategies pair them by seed.
    groups = {
        (strategy, method): sorted(
            (chain for chain in chains if (chain.strategy, chain.method) == (strategy, method)),
            key=lambda chain: chain.seed,
        )
        for strategy in strategies
        for method in methods
    }
    verdicts = {}
    curves: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for strategy in strategies:
        for method in methods:
            group = groups[(strategy, method)]
            print(f"\n{strategy} selection, {method}")
            curve = []
            for round_number in range(len(group[0].scores)):
                scores = [chain.scores[round_number] for chain in group]
                labels = [float(chain.labels[round_number]) for chain in group]
                accuracies = [a for chain in group if (a := chain.accuracy[round_number]) is not None]
                accuracy = f"  reward model accuracy {_mean_and_error(accuracies)}" if accuracies else ""
                ties = [chain.ties[round_number] for chain in group if len(chain.ties) > round_number]
                tied = f" ({sum(ties) / len(ties):.1f} ties)" if ties else ""
                print(
                    f"  round {round_number}: labels {sum(labels) / len(labels):5.1f}{tied}  "
                    f"score {_mean_and_error(scores)}{accuracy}"
                )
                curve.append((sum(labels) / len(labels), sum(scores) / len(scores)))
            curves[(strategy, method)] = curve
            verdicts[(strategy, method)] = rise_verdict(
                [chain.scores[0] for chain in group], [chain.scores[-1] for chain in group]
            )
            print(f"  verdict: {verdicts[(strategy, method)].verdict}")
    others = [name for name in strategies if name not in ("random", CONTROL)]
    if "random" in strategies and others:
        print()
        for strategy in others:
            for method in methods:
                random_labels, random_final = curves[("random", method)][-1]
                reach = reach_verdict(
                    [
                        [
                            (float(labels), score)
                            for labels, score in zip(chain.labels, chain.scores, strict=True)
                        ]
                        for chain in groups[(strategy, method)]
                    ],
                    [chain.scores[-1] for chain in groups[("random", method)]],
                    random_labels,
                )
                caveat = (
                    "" if verdicts[("random", method)].rises else " (random does not rise: this says little)"
                )
                met = reach.share is not None and reach.share <= 0.7
                target = f"; target ≤ 70 %: {'met' if met else 'not met'}"
                if met and reach.within_noise:
                    target += " only within noise"
                print(
                    f"{strategy} vs random ({method}), random's final {random_final:.4f} with "
                    f"{random_labels:g} labels: {reach.verdict}{target}{caveat}"
                )
    if CONTROL in strategies:
        print()
        for strategy in [name for name in strategies if name != CONTROL]:
            for method in methods:
                # Paired by seed, like the rise: the final must beat what the same loop reaches
                # when the votes carry no preference (drift that the oracle happens to reward).
                against = rise_verdict(
                    [chain.scores[-1] for chain in groups[(CONTROL, method)]],
                    [chain.scores[-1] for chain in groups[(strategy, method)]],
                )
                error = "n/a" if against.standard_error is None else f"{against.standard_error:.4f}"
                beyond = "beyond 2 se" if against.rises else "NOT beyond 2 se"
                print(
                    f"{strategy} {method} against the control: final − control's final "
                    f"{against.difference:+.4f}, se {error}: {beyond}"
                )
    print()
    for strategy in strategies:
        for method in methods:
            print(
                summary_line(
                    strategy, method, verdicts[(strategy, method)], curves[(strategy, method)][-1][0]
                )
            )


def main() -> None:
    # ``--modality image`` runs the Django-free image loop (bench/image_loop.py) with its own options.
    modality = argparse.ArgumentParser(add_help=False)
    modality.add_argument("--modality", choices=("text", "image"), default="text")
    if modality.parse_known_args()[0].modality == "image":
        from bench.image_loop import main as image_main

        image_main(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modality",
        choices=("text", "image"),
        default="text",
        help="image: the image loop without Django (bench/image_loop.py, python -m bench.image_loop -h)",
    )
    parser.add_argument("--oracle", default="garden", help="a built-in oracle name or module:function")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds FIRST … FIRST+SEEDS-1: a confirmation run on seeds an earlier run did not see",
    )
    parser.add_argument(
        "--strategies",
        default="random,active",
        help="comma-separated: random, active (uncertainty), thompson (double Thompson sampling), "
        "margin (the clearest pairs), ceiling (margin with the oracle as its reward model from round 2: "
        "bench only), ceiling_all (the same from round 1)",
    )
    parser.add_argument("--methods", default="dpo,rloo", help="comma-separated: dpo, rloo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--labels-per-round",
        type=int,
        default=96,
        help=f"labels per round and chain, a multiple of the {LOOP_PROMPTS} loop prompts",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also run control chains (random pairs, every vote random) and compare each final with theirs",
    )
    parser.add_argument(
        "--reward-model",
        choices=sorted(REWARD_MODELS),
        default="heads",
        help="heads (frozen MiniLM features) or lora (the policy's own base, LoRA)",
    )
    parser.add_argument(
        "--dpo-epochs",
        type=int,
        default=DPO_EPOCHS,
        help=f"passes of each round's DPO over the votes ({DPO_EPOCHS}): how far a round's child moves",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=NOISE,
        help="share of random votes; 1 is the control: votes carry no preference, so nothing may rise",
    )
    arguments = parser.parse_args()
    strategies = list(
        dict.fromkeys(arguments.strategies.split(",") + ([CONTROL] if arguments.control else []))
    )
    methods = arguments.methods.split(",")
    known = ("random", "active", "thompson", "margin", CEILING, CEILING_ALL, CONTROL)
    problems = [f"unknown strategy {s!r}" for s in strategies if s not in known]
    problems += [f"unknown method {m!r}" for m in methods if m not in ("dpo", "rloo")]
    if not 0 <= arguments.noise <= 1:
        problems.append("--noise must be between 0 and 1")
    if not 1 <= arguments.dpo_epochs <= 20:
        problems.append("--dpo-epochs must be between 1 and 20")
    if arguments.seeds < 1 or arguments.rounds < 1:
        problems.append("--seeds and --rounds must be at least 1")
    if not 0 <= arguments.first_seed < 100_000:
        problems.append("--first-seed must be between 0 and 99999")
    pairs_per_prompt, remainder = divmod(arguments.labels_per_round, LOOP_PROMPTS)
    if pairs_per_prompt < 1 or remainder:
        problems.append(
            f"--labels-per-round must be a positive multiple of {LOOP_PROMPTS} (one pair per prompt)"
        )
    from server.ratings.simulated_raters import load_oracle

    try:
        oracle = load_oracle(arguments.oracle)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        parser.error("; ".join(problems))
    print(
        f"bench.loop: oracle {arguments.oracle}, {arguments.seeds} seeds, "
        f"strategies {', '.join(strategies)}, methods {', '.join(methods)}, "
        f"reward model {arguments.reward_model}, DPO epochs {arguments.dpo_epochs}, "
        f"{arguments.rounds} rounds × "
        f"{arguments.labels_per_round} labels, noise {arguments.noise:g} "
        f"({pairs_per_prompt} pairs on each of {LOOP_PROMPTS} prompts), scores on "
        f"{len(PROMPTS) - LOOP_PROMPTS} unseen prompts × {EVALUATION_SAMPLES_PER_PROMPT} samples",
        flush=True,
    )
    _create_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    var = Path(os.environ["LOVELACE_VAR_DIR"])
    _clear_earlier_run(var)
    model_dir = _base_model(var)
    reward_config = dict(REWARD_MODELS[arguments.reward_model])
    if reward_config:
        reward_config["backbone_path"] = str(model_dir)
    port = _free_port()
    # A terminated bench stops its gunicorn too (the finally below), instead of leaving it serving.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "server.config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    chains = [
        Chain(strategy=strategy, method=method, seed=seed)
        for seed in range(arguments.first_seed, arguments.first_seed + arguments.seeds)
        for strategy in strategies
        for method in methods
    ]
    started = time.perf_counter()
    try:
        time.sleep(3)
        for chain in chains:
            run_chain(
                chain=chain,
                oracle=oracle,
                rounds=arguments.rounds,
                pairs_per_prompt=pairs_per_prompt,
                noise=arguments.noise,
                model_dir=model_dir,
                base_url=f"http://127.0.0.1:{port}",
                reward_config=reward_config,
                dpo_epochs=arguments.dpo_epochs,
            )
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"\n{len(chains)} chains in {time.perf_counter() - started:.0f} s")
    report(chains=chains, oracle_name=arguments.oracle, strategies=strategies, methods=methods)


if __name__ == "__main__":
    main()
