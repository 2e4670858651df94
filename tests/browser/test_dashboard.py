"""The staff dashboard in a real headless Chromium: every chart drawn by the vendored Chart.js (no
network), job progress updating live from the polled endpoint, rater pause, the import form's
line-numbered errors, and markup in generated text shown as text, never run. Screenshots go to
test-artifacts/browser/."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.jobs.models import Job
from server.ratings.models import RaterStatus
from tests.server.api.world import World, build_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ["overTime", "intervals", "heatmap", "metrics", "rewardModels", "scatter"]
WIDE = {"width": 1440, "height": 900}


@pytest.fixture
def world(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Jobs started from the page are queued rows; no broker message leaves this test.
    monkeypatch.setattr("server.jobs.services._dispatch", lambda job_id, kind, queue: None)
    return build_world(hostile_text=True)


def sign_in(page, live_server, next_path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-password-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def watch_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # "Failed to load resource" console lines repeat what the response handler below records,
    # except for a page answered 400 on purpose (a form re-rendered with its errors).
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    # A poll still in flight when a form submission navigates away is aborted by the browser
    # (net::ERR_ABORTED): the page left, nothing failed. Any other failure is an error.
    page.on(
        "requestfailed",
        lambda request: (
            errors.append(f"request failed: {request.url} ({request.failure})")
            if "ERR_ABORTED" not in (request.failure or "")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and response.request.resource_type != "document"
            else None
        ),
    )
    return errors


def test_the_study_dashboard_draws_every_chart_and_follows_jobs_live(
    live_server, open_page, screenshot, world: World
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(viewport=WIDE)
    errors = watch_errors(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, live_server, "/dashboard/studies/poems/")

    page.wait_for_function(
        "names => window.lovelaceCharts && names.every((name) => window.lovelaceCharts[name])", arg=CHARTS
    )
    counts = page.evaluate(
        """() => {
          const c = window.lovelaceCharts;
          return {
            overTime: c.overTime.data.datasets[0].data.reduce((a, b) => a + b, 0),
            intervals: c.intervals.data.labels.length,
            heatmap: c.heatmap.data.datasets[0].data.length,
            metrics: c.metrics.data.datasets[0].data.length,
            counted: c.overTime.data.datasets[1].data.reduce((a, b) => a + b, 0),
            rewardModels: c.rewardModels.data.datasets.map((d) => [d.estimates[0], d.data[0]]),
            scatter: c.scatter.data.datasets.map((d) => d.data.length),
          };
        }"""
    )
    assert counts == {
        "overTime": 23,
        "intervals": 3,
        "heatmap": 6,
        "metrics": 11,
        "counted": 23,
        # Intervals with a tick at the estimate; this model has no n recorded, so a zero-height one.
        "rewardModels": [[0.68, [0.68, 0.68]], [0.74, [0.74, 0.74]]],
        "scatter": [5, 2],
    }
    # Every canvas has pixels on it (a chart that failed would leave it blank).
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('canvas')].map((canvas) => {
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
          return painted;
        })"""
    )
    assert len(drawn) == 6 and all(painted > 500 for painted in drawn), drawn
    # Markup in labels, prompts and messages is text on the page, never code.
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#leaderboard-table img").count() == 0
    assert "<script>window.__pwned = 1</script>" in page.locator("#leaderboard-table").inner_text()

    screenshot(page, "dashboard-study", full_page=True)
    page.locator("#leaderboard").screenshot(path=str(_artifact("dashboard-leaderboard")))
    page.locator("#evaluations").screenshot(path=str(_artifact("dashboard-evaluations")))

    # Live progress: the worker moves the job on; the page follows without a reload.
    row = page.locator(f'#jobs-body tr[data-job-id="{world.running_job.id}"]')
    assert "40 / 100" in row.inner_text()
    now_metrics = [
        *world.running_job.metrics,
        {"step": 80, "time": "2026-01-01T00:00:00+00:00", "loss": 0.41},
    ]
    Job.objects.filter(id=world.running_job.id).update(
        progress_step=80, progress_message="epoch 2 of 3", metrics=now_metrics
    )
    page.wait_for_function(
        "id => document.querySelector(`#jobs-body tr[data-job-id='${id}']`).innerText.includes('80 / 100')",
        arg=world.running_job.id,
    )
    page.wait_for_function("() => window.lovelaceCharts.metrics.data.datasets[0].data.length === 12")
    assert "epoch 2 of 3" in row.inner_text()
    page.locator("#jobs").screenshot(path=str(_artifact("dashboard-jobs")))

    # Everything came from this server: the charting library is vendored.
    assert all(url.startswith(live_server.url) for url in requested), [
        u for u in requested if not u.startswith(live_server.url)
    ]
    assert errors == []


def test_pausing_a_rater_and_a_bad_import_from_the_page(
    live_server, open_page, screenshot, world: World
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(viewport=WIDE)
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/studies/poems/")

    page.locator(f'#raters-table tr[data-rater-id="{world.rater_a.id}"] button', has_text="Pause").click()
    page.wait_for_url(f"{live_server.url}/dashboard/studies/poems/#raters")
    assert "The rater is paused" in page.locator(".dash-messages").inner_text()
    assert (
        page.locator(f'#raters-table tr[data-rater-id="{world.rater_a.id}"] .dash-badge').inner_text()
        == "paused"
    )
    world.rater_a.refresh_from_db()
    assert world.rater_a.status == RaterStatus.PAUSED
    page.locator("#raters").screenshot(path=str(_artifact("dashboard-raters")))

    bad = _artifact("bad-import").with_suffix(".jsonl")
    bad.write_text(
        '{"prompt": "p", "text": "t", "generator": "g"}\n{"prompt": "p", "generator": "g"}\nnot json\n'
    )
    page.set_input_files("#id_file", str(bad))
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#import-errors")
    cells = page.locator("#import-errors tbody tr").all_inner_texts()
    assert [cell.split("\t")[0] for cell in cells] == ["2", "3"]
    page.locator("#import").scroll_into_view_if_needed()
    page.locator("#import").screenshot(path=str(_artifact("dashboard-import-errors")))
    bad.unlink()

    page.goto(f"{live_server.url}/dashboard/")
    screenshot(page, "dashboard-home")
    assert errors == []


def test_the_typed_policy_form_shows_a_range_error_next_to_its_field_then_queues_the_job(
    live_server, open_page, world: World
) -> None:  # type: ignore[no-untyped-def]
    page = open_page()  # 1280 px wide
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/studies/poems/")
    form = page.locator("#action-train-policy")

    # The method decides which groups show: DPO's or online RL's, and the snapshot or reward model.
    form.locator("#id_method").select_option("grpo")
    assert form.locator("fieldset[data-when='rloo grpo']").is_visible()
    assert not form.locator("fieldset[data-when='dpo']").is_visible()
    assert form.locator("#id_reward_model").is_visible() and not form.locator("#id_snapshot").is_visible()
    assert (
        form.locator("#id_max_completion_length").is_visible()
        and not form.locator("#id_max_length").is_visible()
    )
    form.locator("#id_method").select_option("dpo")
    assert form.locator("fieldset[data-when='dpo']").is_visible()
    assert not form.locator("fieldset[data-when='rloo grpo']").is_visible()
    assert form.locator("#id_max_length").is_visible()
    # Every field fits a 1280 px screen: nothing wider than the form, no sideways scrolling.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    overflowing = page.evaluate(
        """() => {
          const form = document.getElementById('action-train-policy').getBoundingClientRect();
          return [...document.querySelectorAll('#action-train-policy input, #action-train-policy select,'
                                              + ' #action-train-policy textarea')]
            .filter((input) => input.offsetParent !== null)
            .filter((input) => input.getBoundingClientRect().right > form.right)
            .map((input) => input.name);
        }"""
    )
    assert overflowing == []
    page.locator("#action-train-policy").screenshot(path=str(_artifact("dashboard-policy-form")))
    page.locator("#action-train-reward-model #id_kind").select_option("sequence_classification")
    assert page.locator("#action-train-reward-model #id_lora_rank").is_visible()
    assert not page.locator("#action-train-reward-model #id_pooling").is_visible()
    page.locator("#action-train-reward-model").screenshot(path=str(_artifact("dashboard-reward-model-form")))

    # An out-of-range value comes back next to its field, in the service's words.
    form.locator("#id_parent_version").select_option(str(world.base_version.id))
    form.locator("#id_epochs").fill("1000")
    form.locator("#id_lora_rank").fill("8")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#action-train-policy .dash-field-error")
    form = page.locator("#action-train-policy")
    wrong = form.locator(".dash-field-error")
    assert wrong.count() == 1
    assert wrong.locator("input").get_attribute("name") == "epochs"
    assert (
        wrong.locator(".dash-fielderror").inner_text()
        == "The DPO option 'epochs' must be a whole number from 1 to 100 (got 1000)."
    )
    assert wrong.is_visible() and form.locator("#id_lora_rank").input_value() == "8"  # kept as typed
    assert not Job.objects.filter(kind="train_policy", status="queued").exists()
    wrong.screenshot(path=str(_artifact("dashboard-policy-form-error")))

    # A valid one queues the job with the typed settings.
    form.locator("#id_epochs").fill("2")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/dashboard/studies/poems/#jobs")
    job = Job.objects.get(kind="train_policy", status="queued")
    assert f"Train a policy: job #{job.id} is queued." in page.locator(".dash-messages").inner_text()
    assert (job.params["method"], job.params["parent_version_id"]) == ("dpo", world.base_version.id)
    assert (job.params["config"]["epochs"], job.params["config"]["lora_rank"]) == (2, 8)
    assert errors == []


def test_the_api_docs_render_from_vendored_assets(live_server, open_page, screenshot, world: World) -> None:  # type: ignore[no-untyped-def]
    page = open_page(viewport=WIDE)
    errors = watch_errors(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock-tag-section")
    assert "Lovelace API" in page.locator(".swagger-ui .info .title").inner_text()
    # One block per operation; the 37th is guidelines/acknowledge.
    assert page.locator(".swagger-ui .opblock").count() == 43
    screenshot(page, "api-docs")
    assert all(url.startswith(live_server.url) or url.startswith("data:") for url in requested), requested
    assert errors == []


def _artifact(name: str) -> Path:
    from tests.browser.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def test_a_cancelled_training_job_with_a_checkpoint_is_resumed_from_the_jobs_table(
    live_server, open_page, settings, world: World
) -> None:  # type: ignore[no-untyped-def]
    from server.jobs.services import job_cancel, job_enqueue
    from server.studies.models import Study

    # given a policy job cancelled after its trainer saved step 2, and one cancelled before any
    study = Study.objects.get(slug="poems")
    params = {"method": "dpo", "parent_version_id": world.base_version.id, "config": {}, "then": []}
    saved = job_enqueue(kind="train_policy", study_id=study.id, params=params)
    job_cancel(job_id=saved.id)
    checkpoint = Path(settings.VAR_DIR) / "checkpoints" / f"job-{saved.id}" / "policy" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    bare = job_enqueue(kind="train_policy", study_id=study.id, params=params)
    job_cancel(job_id=bare.id)
    page = open_page(viewport=WIDE)
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/studies/poems/")

    # then only the one with a checkpoint offers Resume
    row = page.locator(f'#jobs-body tr[data-job-id="{saved.id}"]')
    row.get_by_role("button", name="Resume").wait_for()
    assert page.locator(f'#jobs-body tr[data-job-id="{bare.id}"] button').count() == 0
    # with how long its checkpoint is kept (the scheduler deletes it after the retention days)
    title = row.get_by_role("button", name="Resume").get_attribute("title") or ""
    assert "The checkpoint is kept until" in title

    # and resuming it queues a new job with the same options, which the table shows with Cancel
    row.get_by_role("button", name="Resume").click()
    page.wait_for_url(f"{live_server.url}/dashboard/studies/poems/#jobs")
    resumed = Job.objects.get(params__resumes_job=saved.id)
    assert (resumed.status, resumed.parent_id, resumed.params["config"]) == ("queued", saved.id, {})
    assert (
        f"Job #{saved.id}: resumed from its newest checkpoint as job #{resumed.id}."
        in page.locator(".dash-messages").inner_text()
    )
    page.locator(f'#jobs-body tr[data-job-id="{resumed.id}"]').get_by_role("button", name="Cancel").wait_for()
    # the resumed one offers nothing more (asking again would give the same job)
    assert page.locator(f'#jobs-body tr[data-job-id="{saved.id}"] button').count() == 0
    assert errors == []
