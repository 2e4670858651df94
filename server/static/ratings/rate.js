/*
 * The rating page: fetch a pair, take a keyboard-first vote, post it, advance.
 *
 * Every text from the server is inserted with textContent, never as HTML, so a sample that
 * contains markup is shown as the characters it is. The page knows a pair only by an opaque
 * token; nothing here names a generator.
 */
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("rating-config").textContent);
  const byId = (id) => document.getElementById(id);
  const ui = {
    task: byId("task"),
    prompt: byId("prompt-text"),
    left: byId("left-text"),
    right: byId("right-text"),
    sampleLeft: byId("sample-left"),
    sampleRight: byId("sample-right"),
    choices: Array.from(document.querySelectorAll("[data-choice]")),
    strengths: Array.from(document.querySelectorAll("[data-strength]")),
    rationale: byId("rationale"),
    submit: byId("submit-button"),
    skip: byId("skip-button"),
    skipDialog: byId("skip-dialog"),
    skipForm: byId("skip-form"),
    skipOther: byId("skip-other"),
    skipCancel: byId("skip-cancel"),
    toast: byId("toast"),
    undo: byId("undo-button"),
    undoSeconds: byId("undo-seconds"),
    error: byId("error-banner"),
    state: byId("state-message"),
    stateTitle: byId("state-title"),
    stateText: byId("state-text"),
    stateHint: byId("state-hint"),
    start: byId("start-button"),
    ack: byId("ack-button"),
    stateGuidelines: byId("state-guidelines"),
    notice: byId("notice"),
    qualification: byId("qualification-banner"),
    pairNumber: byId("pair-number"),
    drawer: byId("guidelines"),
    drawerBackdrop: byId("drawer-backdrop"),
    drawerButton: byId("guidelines-button"),
    drawerClose: byId("guidelines-close"),
    progress: byId("progress"),
    progressTrack: byId("progress-track"),
    progressFill: byId("progress-fill"),
    progressLabel: byId("progress-label"),
    question: byId("question"),
    questionStep: byId("question-step"),
  };

  // --- Several questions about one pair ------------------------------------------------------
  // A study may ask up to four questions (criteria) about the same pair. The same keys answer
  // question 1, Enter goes on to question 2 (Backspace back), ..., and Enter on the last submits
  // one vote with every answer. Strength goes with the first question only (it is stored on the
  // judgment, which is the first question's answer).
  const questions = config.questions && config.questions.length ? config.questions : [{ key: "", question: "" }];
  let step = 0;
  let answers = questions.map(() => null);

  let current = null; // {token, shownAt, firstInputAt, key}
  let choice = null;
  let strength = null;
  let busy = false;
  let lastVote = null; // {key, timer, deadline}
  let judged = null;
  let quota = null;
  // Pairs shown on this page so far: numbers each pair on screen ("Pair 12"), so that two pairs in a
  // row whose texts look alike are still seen to be two (with the brief entrance below).
  let pairsShown = 0;
  // A crowd participant's first pair is reserved only once the person asks for it (Start): a link
  // opened by a robot, or by someone who walks away, holds no pair that others could rate.
  let started = false;

  // --- Active time: counts only while the tab is visible and the window has focus -----------
  const clock = {
    activeMs: 0,
    since: null,
    running() {
      return document.visibilityState === "visible" && document.hasFocus();
    },
    update() {
      const now = performance.now();
      if (this.since !== null) {
        this.activeMs += now - this.since;
        this.since = null;
      }
      if (current && !current.submitting && this.running()) this.since = now;
    },
    reset() {
      this.activeMs = 0;
      this.since = null;
      this.update();
    },
    seconds() {
      this.update();
      return Math.round(this.activeMs) / 1000;
    },
  };
  document.addEventListener("visibilitychange", () => clock.update());
  window.addEventListener("focus", () => clock.update());
  window.addEventListener("blur", () => clock.update());

  // --- Requests ---------------------------------------------------------------------------------
  class RatingError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
    // crypto.randomUUID needs a secure context; getRandomValues works everywhere.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // Network failures and server errors are retried: every endpoint is safe to repeat (a vote
  // carries its idempotency key, "next" returns the open reservation, a skip is a no-op twice).
  // A persistent request (a vote) is retried until the server answers, with pauses that double
  // from half a second up to 30 s; ``onWait(seconds)`` is told of each pause.
  async function post(url, body, { retries = 2, persistent = false, onWait = null } = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const pause = Math.min(500 * 2 ** attempt, 30000);
      const again = persistent || attempt < retries;
      let response;
      try {
        response = await fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
          body: JSON.stringify(body),
        });
      } catch (networkError) {
        if (again) {
          if (onWait) onWait(pause / 1000);
          await sleep(pause);
          continue;
        }
        throw new RatingError("The server cannot be reached. Check your connection, then try again.", 0);
      }
      let data = null;
      try {
        data = await response.json();
      } catch (notJson) {
        data = null;
      }
      if (response.ok) return data;
      if (response.status >= 500 && again) {
        if (onWait) onWait(pause / 1000);
        await sleep(pause);
        continue;
      }
      const message = data && data.error ? data.error : `The server answered with an error (${response.status}).`;
      throw new RatingError(message, response.status);
    }
  }

  // A vote that could not be sent yet is kept on this device until the server stores it or
  // refuses it for good, so neither a dropped connection nor a reload loses it.
  const pendingVote = {
    key: `lovelace-pending-vote:${config.voteUrl}`,
    save(body) {
      try {
        localStorage.setItem(this.key, JSON.stringify(body));
      } catch (unavailable) {
        // private mode or a full store: the vote is still retried while the page is open
      }
    },
    load() {
      try {
        return JSON.parse(localStorage.getItem(this.key) || "null");
      } catch (unreadable) {
        return null;
      }
    },
    clear() {
      try {
        localStorage.removeItem(this.key);
      } catch (unavailable) {
        // nothing was kept
      }
    },
  };

  function showResending(seconds) {
    showError(
      `Your vote could not be sent yet. It is kept on this device and sent again in ${Math.ceil(seconds)} s.`,
    );
  }

  // --- Display ----------------------------------------------------------------------------------
  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.textContent = "";
  }

  function showState(title, text, hint) {
    current = null;
    stopUndoWindow();
    ui.task.hidden = true;
    ui.stateTitle.textContent = title;
    ui.stateText.textContent = text || "";
    ui.stateHint.hidden = !hint;
    ui.start.hidden = true;
    ui.ack.hidden = true;
    ui.stateGuidelines.hidden = true;
    ui.state.hidden = false;
  }

  function showNotice(message) {
    ui.notice.textContent = message;
    ui.notice.hidden = !message;
  }

  // Before the first pair (a study that asks for it): the guidelines, and a button to say they
  // were read. The press is also the person asking for a pair, as Start is.
  function showGuidelinesStep() {
    showState(
      "Before you start: the guidelines",
      "Please read how to judge the pairs in this study. Your first pair comes once you confirm.",
      false,
    );
    ui.stateGuidelines.hidden = false;
    ui.ack.hidden = false;
    ui.ack.focus();
  }

  async function acknowledge() {
    if (busy || ui.ack.hidden) return;
    started = true;
    ui.ack.hidden = true;
    setBusy(true);
    clearError();
    try {
      await handle(await post(config.acknowledgeUrl, {}));
    } catch (error) {
      ui.ack.hidden = false;
      showError(error.message);
    } finally {
      setBusy(false);
    }
  }

  function showStart() {
    showState(
      "Ready when you are",
      "Each screen shows a prompt and two answers to it: choose the better one. Open the guidelines with G; press Start for your first pair.",
      false,
    );
    ui.start.hidden = false;
  }

  function start() {
    if (busy || ui.start.hidden) return;
    started = true;
    ui.start.hidden = true;
    loadNext();
  }

  function showProgress(progress) {
    if (!ui.progress || !progress) return;
    judged = progress.judged;
    quota = progress.quota;
    renderProgress();
  }

  function renderProgress() {
    if (!ui.progress || judged === null) return;
    ui.progress.hidden = false;
    if (quota) {
      const share = Math.min(1, judged / quota);
      ui.progressFill.style.width = `${(share * 100).toFixed(1)}%`;
      ui.progressTrack.hidden = false;
      ui.progressTrack.setAttribute("aria-valuemax", String(quota));
      ui.progressTrack.setAttribute("aria-valuenow", String(judged));
      ui.progressLabel.textContent = `${judged} of ${quota}`;
    } else {
      ui.progressTrack.hidden = true;
      ui.progressLabel.textContent = `${judged} judged`;
    }
  }

  function resetVote() {
    choice = null;
    strength = null;
    step = 0;
    answers = questions.map(() => null);
    renderStep();
    ui.rationale.value = "";
    renderVote();
  }

  function renderStep() {
    // The buttons answer the question shown: "Left is more original", then "Left is better".
    const labels = questions[step].labels;
    if (labels) {
      for (const button of ui.choices) {
        const label = button.querySelector(".choice-label");
        if (label && labels[button.dataset.choice]) label.textContent = labels[button.dataset.choice];
      }
    }
    if (!ui.questionStep) return; // one question: the page as it always was
    ui.questionStep.textContent = `Question ${step + 1} of ${questions.length}`;
    ui.question.textContent = questions[step].question;
    ui.task.dataset.step = String(step + 1);
  }

  // Move to question ``to`` keeping the answer given so far to the one being left.
  function goToStep(to) {
    if (to < 0 || to >= questions.length || to === step) return;
    answers[step] = choice;
    step = to;
    choice = answers[step];
    renderStep();
    renderVote();
  }

  function renderVote() {
    for (const button of ui.choices) {
      button.setAttribute("aria-pressed", String(button.dataset.choice === choice));
    }
    const sided = (choice === "left" || choice === "right") && step === 0;
    if (!sided && step === 0) strength = null;
    for (const button of ui.strengths) {
      button.disabled = !sided;
      button.setAttribute("aria-pressed", String(Number(button.dataset.strength) === strength));
    }
    ui.sampleLeft.classList.toggle("chosen", choice === "left");
    ui.sampleRight.classList.toggle("chosen", choice === "right");
    ui.task.dataset.choice = choice || "";
    ui.submit.disabled = busy || choice === null;
    const last = step === questions.length - 1;
    if (ui.submit.dataset.last !== String(last)) {
      ui.submit.dataset.last = String(last);
      ui.submit.firstChild.textContent = last ? "Submit " : "Next question ";
    }
  }

  function showPair(pair, { again = false } = {}) {
    ui.state.hidden = true;
    const sameToken = current && current.token === pair.token;
    current = { token: pair.token, shownAt: Date.now(), firstInputAt: null, key: null, submitting: false };
    if (!again && !sameToken) pairsShown += 1;
    const qualification = pair.qualification;
    ui.qualification.hidden = !qualification;
    ui.qualification.textContent = qualification
      ? `Qualification question ${qualification.number} of ${qualification.total}. Answer as the guidelines ask; these answers are final.`
      : "";
    ui.pairNumber.textContent = qualification ? `· question ${qualification.number} of ${qualification.total}` : `· pair ${pairsShown}`;
    ui.task.dataset.pair = String(pairsShown);
    // A short entrance on every new pair: two pairs in a row never look like one that stayed.
    if (!again && !sameToken) {
      ui.task.classList.remove("entering");
      void ui.task.offsetWidth; // restart the animation
      ui.task.classList.add("entering");
    }
    ui.prompt.textContent = pair.prompt;
    // A generated continuation starts with the space that followed the prompt: not part of the read.
    ui.left.textContent = pair.left.replace(/^\s+/, "");
    ui.right.textContent = pair.right.replace(/^\s+/, "");
    window.LovelaceSampleContent.show(pair.images || null); // an image pair's images (sample_content.js)
    resetVote();
    ui.task.hidden = false;
    ui.task.setAttribute("aria-busy", "false");
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    window.scrollTo({ top: 0 });
    clock.reset();
  }

  function setBusy(value) {
    busy = value;
    ui.task.setAttribute("aria-busy", String(value));
    ui.skip.disabled = value;
    renderVote();
  }

  // --- Flow -------------------------------------------------------------------------------------
  // "Nothing to rate right now" asks again after the server's retry_seconds, also after a failed
  // try (a network blip must not leave the page waiting until it is reloaded).
  let retryTimer = null;
  let retrySeconds = 0;

  function scheduleRetry() {
    if (retrySeconds > 0 && retryTimer === null) {
      retryTimer = setTimeout(() => {
        retryTimer = null;
        clearError();
        loadNext();
      }, retrySeconds * 1000);
    }
  }

  async function handle(data) {
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
    }
    retrySeconds = 0;
    if (data.status === "pair") {
      showPair(data.pair);
      showProgress(data.progress);
    } else if (data.status === "paused") {
      showState("Your rating is paused", data.message, true);
    } else if (data.status === "start") {
      showStart();
    } else if (data.status === "guidelines") {
      showGuidelinesStep();
    } else if (data.status === "unqualified") {
      showNotice("");
      showState("The qualification is over", data.message, false);
    } else if (data.status === "done") {
      window.location.assign(data.redirect);
    } else if (data.status === "error") {
      await loadNext(); // the vote was saved but its next pair was not: ask for it on its own
    } else {
      showState("Nothing to rate right now", data.message, false);
      // Pairs come back when other raters' reservations run out or staff add more.
      retrySeconds = data.retry_seconds || 0;
      scheduleRetry();
    }
  }

  async function loadNext() {
    setBusy(true);
    try {
      await handle(await post(config.nextUrl, started ? { start: true } : {}));
    } catch (error) {
      showError(error.message);
      if (!current) scheduleRetry();
    } finally {
      setBusy(false);
    }
  }

  function markInput() {
    if (current && current.firstInputAt === null) current.firstInputAt = Date.now();
  }

  function choose(value) {
    if (!current || busy) return;
    markInput();
    choice = value;
    renderVote();
  }

  function chooseStrength(value) {
    if (!current || busy || step !== 0 || (choice !== "left" && choice !== "right")) return;
    markInput();
    strength = strength === value ? null : value;
    renderVote();
  }

  async function submit() {
    if (!current || busy || choice === null) return;
    if (step < questions.length - 1) {
      goToStep(step + 1); // Enter on an answered question goes on to the next one
      return;
    }
    answers[step] = choice;
    const vote = current;
    vote.key = vote.key || uuid4(); // kept across retries of this vote: the server stores it once
    const activeSeconds = clock.seconds();
    vote.submitting = true;
    clock.update();
    setBusy(true);
    clearError();
    const body = {
      token: vote.token,
      choice: answers[0],
      strength,
      rationale: ui.rationale.value.trim(),
      idempotency_key: vote.key,
      shown_at: vote.shownAt,
      first_input_at: vote.firstInputAt,
      sent_at: Date.now(),
      active_seconds: activeSeconds,
      next: true, // the answer carries the next pair: one request per judgment
    };
    if (questions.length > 1) {
      body.answers = Object.fromEntries(questions.slice(1).map((question, index) => [question.key, answers[index + 1]]));
    }
    pendingVote.save(body);
    try {
      const data = await post(config.voteUrl, body, { persistent: true, onWait: showResending });
      pendingVote.clear();
      clearError();
      await voted(data);
    } catch (error) {
      // Refused for good (taken by another rater, skipped, someone else's): say why, move on.
      pendingVote.clear();
      vote.submitting = false;
      clock.update();
      setBusy(false);
      showError(error.message);
      await loadNext();
    }
  }

  async function voted(data) {
    // Qualification answers are final: no undo is offered for them.
    if (data.undoable !== false) startUndoWindow(data.key);
    else stopUndoWindow();
    showProgress(data.progress);
    if (data.qualification && data.qualification.passed) showNotice(data.qualification.message);
    else if (!data.qualification) showNotice("");
    if (data.rater && data.rater.status === "paused") {
      setBusy(false);
      showState("Your rating is paused", data.rater.message, true);
      return;
    }
    if (data.rater && data.rater.status === "unqualified") {
      setBusy(false);
      showNotice("");
      showState("The qualification is over", data.rater.message, false);
      return;
    }
    await handle(data.next); // stays busy until the next pair is on screen
    setBusy(false);
  }

  // A vote kept from before a reload goes first; then the rater carries on from its answer.
  async function resendPendingVote() {
    const body = pendingVote.load();
    if (!body) return false;
    setBusy(true);
    showError("Sending the vote you gave before the page was reloaded…");
    try {
      const data = await post(config.voteUrl, { ...body, next: true }, { persistent: true, onWait: showResending });
      pendingVote.clear();
      clearError();
      await voted(data);
      return true;
    } catch (error) {
      pendingVote.clear();
      setBusy(false);
      showError(error.message);
      return false;
    }
  }

  function startUndoWindow(key) {
    stopUndoWindow();
    // The server counts the window from its own clock; end ours a little early.
    const deadline = performance.now() + (config.undoSeconds - 0.5) * 1000;
    const tick = () => {
      const left = Math.ceil((deadline - performance.now()) / 1000);
      if (left <= 0) {
        stopUndoWindow();
        return;
      }
      ui.undoSeconds.textContent = `${left}s`;
    };
    lastVote = { key, timer: setInterval(tick, 250) };
    tick();
    ui.toast.hidden = false;
  }

  function stopUndoWindow() {
    if (lastVote) clearInterval(lastVote.timer);
    lastVote = null;
    ui.toast.hidden = true;
  }

  async function undo() {
    if (!lastVote || busy) return;
    const key = lastVote.key;
    stopUndoWindow();
    setBusy(true);
    clearError();
    try {
      const data = await post(config.undoUrl, { idempotency_key: key });
      setBusy(false);
      showPair(data.pair, { again: true });
      if (judged !== null && judged > 0) {
        judged -= 1;
        renderProgress();
      }
    } catch (error) {
      setBusy(false);
      showError(error.message);
    }
  }

  function openSkip() {
    if (!current || busy) return;
    markInput();
    ui.skipForm.reset();
    ui.skipDialog.showModal();
  }

  async function confirmSkip(event) {
    event.preventDefault();
    const form = new FormData(ui.skipForm);
    let reason = String(form.get("reason") || "");
    if (reason === "other") {
      reason = String(form.get("other") || "").trim();
      if (!reason) {
        ui.skipOther.focus();
        return;
      }
    }
    ui.skipDialog.close();
    if (!current) return;
    setBusy(true);
    clearError();
    try {
      await post(config.skipUrl, { token: current.token, reason });
      await loadNext();
    } catch (error) {
      setBusy(false);
      showError(error.message);
    }
  }

  // --- Guidelines drawer ------------------------------------------------------------------------
  // Closing the drawer gives the focus to the pair when one is on screen, not back to the
  // Guidelines button: a rater who closes the guidelines and presses Enter means "submit", and
  // Enter on a focused Guidelines button would open them again instead.
  function setDrawer(open) {
    ui.drawer.classList.toggle("open", open);
    ui.drawer.setAttribute("aria-hidden", String(!open));
    ui.drawerBackdrop.hidden = !open;
    ui.drawerButton.setAttribute("aria-expanded", String(open));
    if (open) {
      ui.drawer.focus();
      return;
    }
    const focusWasAbout = ui.drawer.contains(document.activeElement) || document.activeElement === ui.drawerButton;
    if (!focusWasAbout) return;
    if (current && !ui.task.hidden) ui.task.focus({ preventScroll: true });
    else if (!ui.ack.hidden) ui.ack.focus();
    else if (!ui.start.hidden) ui.start.focus();
    else ui.drawerButton.focus();
  }
  const drawerOpen = () => ui.drawer.classList.contains("open");

  // --- Keys -------------------------------------------------------------------------------------
  const CHOICE_KEYS = { 1: "left", 2: "right", 3: "tie", 4: "both_bad" };
  const STRENGTH_KEYS = { q: 1, w: 2, e: 3 };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (ui.skipDialog.open) return; // the dialog handles its own keys
    const typing = event.target instanceof HTMLElement && event.target.matches("textarea, input");
    if (typing) {
      if (event.key === "Enter" && !event.shiftKey && event.target === ui.rationale) {
        event.preventDefault();
        submit();
      } else if (event.key === "Escape") {
        event.target.blur();
      } else {
        markInput();
      }
      return;
    }
    const key = event.key.toLowerCase();
    if (key === "escape" && drawerOpen()) {
      setDrawer(false);
    } else if (key === "g") {
      setDrawer(!drawerOpen());
    } else if (key in CHOICE_KEYS) {
      choose(CHOICE_KEYS[key]);
    } else if (key in STRENGTH_KEYS) {
      chooseStrength(STRENGTH_KEYS[key]);
    } else if (key === "enter" && !ui.start.hidden) {
      start();
    } else if (key === "enter" && !ui.ack.hidden) {
      // Only a deliberate press on the button itself acknowledges the guidelines.
      if (event.target !== ui.ack) return;
      acknowledge();
    } else if (key === "enter") {
      // Enter on a focused control button (skip, undo, guidelines) clicks it; on a choice it submits.
      const button = event.target instanceof HTMLButtonElement ? event.target : null;
      if (button && !button.matches("[data-choice], [data-strength]")) return;
      submit();
    } else if (key === "backspace" && current && step > 0 && !busy) {
      goToStep(step - 1);
    } else if (key === "r" && current) {
      ui.rationale.focus();
    } else if (key === "u") {
      undo();
    } else if (key === "s") {
      openSkip();
    } else {
      return;
    }
    event.preventDefault();
  });

  for (const button of ui.choices) button.addEventListener("click", () => choose(button.dataset.choice));
  for (const button of ui.strengths) {
    button.addEventListener("click", () => chooseStrength(Number(button.dataset.strength)));
  }
  ui.submit.addEventListener("click", submit);
  ui.start.addEventListener("click", start);
  ui.ack.addEventListener("click", acknowledge);
  ui.undo.addEventListener("click", undo);
  ui.skip.addEventListener("click", openSkip);
  ui.skipForm.addEventListener("submit", confirmSkip);
  ui.skipCancel.addEventListener("click", () => ui.skipDialog.close());
  ui.skipOther.addEventListener("focus", () => {
    ui.skipForm.querySelector('input[value="other"]').checked = true;
  });
  ui.drawerButton.addEventListener("click", () => setDrawer(!drawerOpen()));
  ui.drawerClose.addEventListener("click", () => setDrawer(false));
  ui.drawerBackdrop.addEventListener("click", () => setDrawer(false));
  ui.rationale.addEventListener("input", markInput);

  // A paused rater or a closed study shows its message instead.
  if (ui.state.hidden) resendPendingVote().then((resent) => resent || loadNext());
})();
