"""``manage.py simulate_raters STUDY --url URL``: simulated people rating over the REST API."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from server.ratings.models import Rater
from server.ratings.simulated_raters import ORACLES, ApiClient, load_oracle, rate
from server.studies.models import Study


class Command(BaseCommand):
    help = "Rate a study with simulated people over the HTTP API (oracle + noise)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="where the web app answers")
        parser.add_argument("--raters", type=int, default=3)
        parser.add_argument("--votes", type=int, default=20, help="votes per rater at most")
        parser.add_argument(
            "--oracle",
            default="theme",
            help=f"a built-in oracle ({', '.join(sorted(ORACLES))}) or module:function",
        )
        parser.add_argument("--noise", type=float, default=0.1, help="share of random answers")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--prefix", default="simulated", help="user names are PREFIX-N")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"There is no study {options['study']!r}.")
        if not 0 <= options["noise"] <= 1:
            raise CommandError("--noise must be between 0 and 1.")
        if options["raters"] < 1 or options["votes"] < 0:
            raise CommandError("--raters must be at least 1 and --votes non-negative.")
        try:
            oracle = load_oracle(options["oracle"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        users = get_user_model()
        clients = []
        for number in range(options["raters"]):
            user, _ = users.objects.get_or_create(username=f"{options['prefix']}-{number}")
            Rater.objects.get_or_create(study=study, user=user)
            token, _ = Token.objects.get_or_create(user=user)
            clients.append(ApiClient(options["url"], token.key))

        def one(index: int):  # type: ignore[no-untyped-def]
            rng = random.Random(options["seed"] * 1000 + index)
            return rate(
                client=clients[index],
                study_slug=study.slug,
                oracle=oracle,
                votes=options["votes"],
                noise=options["noise"],
                rng=rng,
            )

        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            results = list(pool.map(one, range(len(clients))))
        total = sum(result.votes for result in results)
        for index, result in enumerate(results):
            line = (
                f"{options['prefix']}-{index}: {result.votes} votes, {result.random_votes} random, "
                f"{result.agreed_with_oracle} as the oracle prefers"
            )
            if result.no_work_reason:
                line += f"; stopped: {result.no_work_reason}"
            if result.errors:
                line += f"; errors: {'; '.join(result.errors)}"
            self.stdout.write(line)
        self.stdout.write(f"{total} votes in all.")
        if any(result.errors for result in results):
            raise CommandError("Some simulated raters hit errors (see above).")
