/* Lovelace dashboard: charts (vendored Chart.js) and live job progress.
 *
 * Data comes from <script type="application/json"> blocks written by Django's json_script, and
 * from the jobs endpoint polled every few seconds. Generated text (labels, messages, errors) only
 * ever reaches the page as textContent or as canvas text: never as HTML.
 */
(function () {
  "use strict";

  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D00", "#000000"];
  const POLL_ACTIVE_MS = 3000; // while a job is queued or running
  const POLL_IDLE_MS = 15000;
  const charts = {};
  window.lovelaceCharts = charts; // for people debugging in the console, and for the browser test

  function colour(index) {
    return PALETTE[index % PALETTE.length];
  }

  function withAlpha(hex, alpha) {
    const value = parseInt(hex.slice(1), 16);
    return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
  }

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function formatRate(perSecond) {
    return perSecond >= 10 ? perSecond.toFixed(0) : perSecond >= 1 ? perSecond.toFixed(1) : perSecond.toPrecision(2);
  }

  function formatDuration(seconds) {
    const whole = Math.max(0, Math.round(seconds));
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const rest = String(whole % 60).padStart(2, "0");
    return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
  }

  function element(tag, options) {
    const node = document.createElement(tag);
    const settings = options || {};
    if (settings.className) node.className = settings.className;
    if (settings.text !== undefined && settings.text !== null) node.textContent = String(settings.text);
    for (const [name, value] of Object.entries(settings.attrs || {})) node.setAttribute(name, value);
    for (const child of settings.children || []) node.appendChild(child);
    return node;
  }

  // Axis labels stay short (the full label is in the tooltip and the tables): a long version name
  // keeps its start and its end, which is where generator and version label are.
  function shortLabel(label, max) {
    const text = String(label);
    const limit = max || 28;
    if (text.length <= limit) return text;
    const head = Math.ceil((limit - 1) * 0.4);
    return `${text.slice(0, head)}…${text.slice(text.length - (limit - 1 - head))}`;
  }

  function categoryTick(max) {
    return function (value) {
      return shortLabel(this.getLabelForValue(value), max);
    };
  }

  function fixed(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
  }

  function percent(value, digits) {
    return typeof value === "number" && isFinite(value) ? `${(value * 100).toFixed(digits)}%` : "–";
  }

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#57606a";
  Chart.defaults.borderColor = "#e6e9ed";
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation.duration = 250;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  // --- Overview -----------------------------------------------------------------------------------

  function judgmentsOverTime() {
    const data = readJson("over-time-data");
    const canvas = document.getElementById("chart-over-time");
    if (!data || !canvas || !data.labels.length) return;
    charts.overTime = new Chart(canvas, {
      data: {
        labels: data.labels,
        datasets: [
          { type: "bar", label: `judgments per ${data.unit}`, data: data.counts, backgroundColor: "#9ec5ec", yAxisID: "y" },
          // The judgments the leaderboard counts: the rate behind the time-to-target estimate.
          { type: "bar", label: `counted for the leaderboard`, data: data.counted || [], backgroundColor: "#0072B2", yAxisID: "y" },
          { type: "line", label: "total", data: data.cumulative, borderColor: "#0b5cad", backgroundColor: "#0b5cad",
            pointRadius: 0, borderWidth: 2, tension: 0.25, yAxisID: "total" },
        ],
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxTicksLimit: 12, maxRotation: 0 }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: `per ${data.unit}` } },
          total: { position: "right", beginAtZero: true, ticks: { precision: 0 }, grid: { drawOnChartArea: false }, title: { display: true, text: "total" } },
        },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  // --- Leaderboard ----------------------------------------------------------------------------------

  function intervalPlot(board) {
    const canvas = document.getElementById("chart-intervals");
    const rows = board.rows.filter((row) => typeof row.rating === "number");
    if (!canvas || !rows.length) return;
    const colours = rows.map((_, index) => colour(index));
    const values = rows.flatMap((row) => [row.lower, row.upper, row.rating]).filter((v) => typeof v === "number");
    const spread = Math.max(...values) - Math.min(...values) || 1;
    const step = 10 ** Math.floor(Math.log10(spread)); // round the axis ends to the spread's magnitude
    charts.intervals = new Chart(canvas, {
      data: {
        labels: rows.map((row) => row.label),
        datasets: [
          {
            type: "bar", label: "95% interval",
            data: rows.map((row) => [typeof row.lower === "number" ? row.lower : row.rating,
                                     typeof row.upper === "number" ? row.upper : row.rating]),
            backgroundColor: colours.map((c) => withAlpha(c, 0.25)), borderColor: colours, borderWidth: 1.5,
            borderSkipped: false, barPercentage: 0.45, categoryPercentage: 0.9, borderRadius: 3,
          },
          {
            type: "line", label: "rating", data: rows.map((row) => row.rating), showLine: false,
            pointRadius: 6, pointHoverRadius: 7, pointBackgroundColor: colours, pointBorderColor: "#fff", pointBorderWidth: 2,
          },
        ],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: {
            min: Math.floor((Math.min(...values) - spread * 0.05) / step) * step,
            max: Math.ceil((Math.max(...values) + spread * 0.05) / step) * step,
            title: { display: true, text: "Bradley–Terry rating" },
          },
          y: { grid: { display: false }, ticks: { callback: categoryTick(30) } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (context) => {
                const row = rows[context.dataIndex];
                return `rating ${fixed(row.rating, 1)} [${fixed(row.lower, 1)}, ${fixed(row.upper, 1)}] · rank ${row.rank} · ${row.battles} battles`;
              },
            },
          },
        },
      },
    });
  }

  // Diverging scale: 0 (always loses) orange, 0.5 white, 1 (always wins) blue; no battles grey.
  function heatColour(value) {
    if (typeof value !== "number") return "#eef1f4";
    const low = [213, 94, 0];
    const mid = [255, 255, 255];
    const high = [0, 114, 178];
    const [from, to, t] = value < 0.5 ? [low, mid, value / 0.5] : [mid, high, (value - 0.5) / 0.5];
    const mix = from.map((channel, i) => Math.round(channel + (to[i] - channel) * t));
    return `rgb(${mix[0]}, ${mix[1]}, ${mix[2]})`;
  }

  const cellLabels = {
    id: "cellLabels",
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      const meta = chart.getDatasetMeta(0);
      ctx.save();
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.font = `600 12px ${Chart.defaults.font.family}`;
      meta.data.forEach((cell, index) => {
        const raw = chart.data.datasets[0].data[index];
        if (!raw || cell.width < 28) return;
        const point = cell.getCenterPoint();
        const strong = typeof raw.v === "number" && Math.abs(raw.v - 0.5) > 0.3;
        ctx.fillStyle = strong ? "#fff" : "#1f2328";
        ctx.fillText(typeof raw.v === "number" ? `${Math.round(raw.v * 100)}%` : "–", point.x, point.y);
      });
      ctx.restore();
    },
  };

  function heatmap(board) {
    const canvas = document.getElementById("chart-heatmap");
    const labels = board.labels || [];
    if (!canvas || labels.length < 2) return;
    const cells = [];
    labels.forEach((rowLabel, i) => {
      labels.forEach((columnLabel, j) => {
        if (i === j) return;
        const rate = (board.win_rate[i] || [])[j];
        const interval = ((board.win_rate_interval || [])[i] || [])[j] || null;
        cells.push({ x: columnLabel, y: rowLabel, v: typeof rate === "number" ? rate : null, n: (board.battles[i] || [])[j] || 0, ci: interval });
      });
    });
    const size = labels.length;
    charts.heatmap = new Chart(canvas, {
      type: "matrix",
      data: {
        datasets: [{
          label: "win rate",
          data: cells,
          backgroundColor: (context) => heatColour(context.raw && context.raw.v),
          borderColor: "#ffffff",
          borderWidth: 2,
          width: ({ chart }) => ((chart.chartArea || {}).width || 0) / size - 2,
          height: ({ chart }) => ((chart.chartArea || {}).height || 0) / size - 2,
        }],
      },
      options: {
        animation: false,
        scales: {
          x: { type: "category", labels, offset: true, position: "top", grid: { display: false },
               ticks: { autoSkip: false, maxRotation: 0, callback: categoryTick(22) }, title: { display: true, text: "opponent" } },
          y: { type: "category", labels, offset: true, reverse: false, grid: { display: false }, // the matrix type reverses y by default
               ticks: { autoSkip: false, callback: categoryTick(30) }, title: { display: true, text: "version" } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: () => "",
              label: (context) => {
                const ci = context.raw.ci ? ` [${percent(context.raw.ci[0], 0)}–${percent(context.raw.ci[1], 0)}]` : "";
                return `${context.raw.y} beats ${context.raw.x}: ${percent(context.raw.v, 1)}${ci} of ${context.raw.n} battles`;
              },
            },
          },
        },
      },
      plugins: [cellLabels],
    });
  }

  // --- Reward models and evaluations -------------------------------------------------------------------

  // A tick across each interval bar at its estimate (dataset.estimates[index]).
  const estimateTicks = {
    id: "estimateTicks",
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      const y = chart.scales.y;
      ctx.save();
      chart.data.datasets.forEach((dataset, datasetIndex) => {
        const meta = chart.getDatasetMeta(datasetIndex);
        if (!dataset.estimates || meta.hidden) return;
        meta.data.forEach((bar, index) => {
          const value = dataset.estimates[index];
          if (typeof value !== "number" || !dataset.data[index]) return;
          const pixel = y.getPixelForValue(value);
          ctx.strokeStyle = "#1f2328";
          ctx.lineWidth = 2.5;
          ctx.beginPath();
          ctx.moveTo(bar.x - bar.width / 2, pixel);
          ctx.lineTo(bar.x + bar.width / 2, pixel);
          ctx.stroke();
        });
      });
      ctx.restore();
    },
  };

  function rewardModels() {
    const models = readJson("reward-models-data");
    const canvas = document.getElementById("chart-reward-models");
    if (!models || !models.length || !canvas) return;
    // Each value is drawn as its 95% interval with a tick at the estimate, never as a bar from zero:
    // an accuracy from a handful of pairs must not look like one from hundreds. Too few pairs: no bar.
    // Models trained before n was recorded have no interval: a zero-height bar keeps their estimate tick.
    const interval = (low, high, estimate) => {
      if (typeof low === "number" && typeof high === "number") return [low, high];
      return typeof estimate === "number" ? [estimate, estimate] : null;
    };
    const accuracy = models.map((m) => (m.too_few_pairs ? null : interval(m.validation_accuracy_low, m.validation_accuracy_high, m.validation_accuracy)));
    const ceiling = models.map((m) => interval(m.ceiling_low, m.ceiling_high, m.human_agreement_ceiling));
    charts.rewardModels = new Chart(canvas, {
      type: "bar",
      data: {
        labels: models.map((model) => (model.too_few_pairs ? `${model.label} (too few pairs)` : model.label)),
        datasets: [
          { label: "validation accuracy", data: accuracy, estimates: models.map((m) => m.validation_accuracy),
            counts: models.map((m) => m.validation_pairs), unit: "pairs",
            backgroundColor: withAlpha("#0072B2", 0.35), borderColor: "#0072B2", borderWidth: 1.5, borderSkipped: false, maxBarThickness: 56 },
          { label: "human agreement ceiling", data: ceiling, estimates: models.map((m) => m.human_agreement_ceiling),
            counts: models.map((m) => m.ceiling_comparisons), unit: "comparisons",
            backgroundColor: withAlpha("#8c9aa8", 0.35), borderColor: "#8c9aa8", borderWidth: 1.5, borderSkipped: false, maxBarThickness: 56 },
        ],
      },
      options: {
        scales: {
          y: { min: 0, max: 1, ticks: { callback: (value) => `${Math.round(value * 100)}%` } },
          x: { grid: { display: false }, ticks: { callback: categoryTick(28) } },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: {
            callbacks: {
              label: (context) => {
                const dataset = context.dataset;
                const index = context.dataIndex;
                const range = context.raw || [];
                const count = dataset.counts[index];
                if (typeof count !== "number") return `${dataset.label}: ${percent(dataset.estimates[index], 1)} (n not recorded)`;
                return `${dataset.label}: ${percent(dataset.estimates[index], 1)} [${percent(range[0], 0)}–${percent(range[1], 0)}] of ${count} ${dataset.unit}`;
              },
            },
          },
        },
      },
      plugins: [estimateTicks],
    });
  }

  function noveltyValue() {
    const evaluations = readJson("evaluations-data");
    const canvas = document.getElementById("chart-scatter");
    if (!evaluations || !canvas || !evaluations.versions.length) return;
    const datasets = [];
    evaluations.versions.forEach((version, index) => {
      datasets.push({
        type: "scatter", label: shortLabel(version.label, 40), data: version.points,
        backgroundColor: withAlpha(colour(index), 0.35), borderColor: withAlpha(colour(index), 0.6), pointRadius: 3.5,
      });
      if (version.front.length) {
        datasets.push({
          type: "line", label: `${shortLabel(version.label, 40)}: Pareto front`, data: version.front, stepped: "after",
          borderColor: colour(index), backgroundColor: colour(index), borderWidth: 2, pointRadius: 5,
          pointBorderColor: "#fff", pointBorderWidth: 1.5, fill: false,
        });
      }
    });
    charts.scatter = new Chart(canvas, {
      type: "scatter",
      data: { datasets },
      options: {
        scales: {
          x: { type: "linear", title: { display: true, text: evaluations.novelty_axis || "novelty" } },
          y: { type: "linear", title: { display: true, text: "value (reward-model score)" } },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { label: (context) => `${context.dataset.label}: novelty ${fixed(context.raw.x, 3)}, value ${fixed(context.raw.y, 3)}` } },
        },
      },
    });
  }

  // --- Jobs: live progress, curves, exports --------------------------------------------------------------

  const jobsTable = document.getElementById("jobs-table");
  const rowsById = new Map();
  let selectedJob = null; // chosen in the select; null follows the newest job with metrics
  let latestJobs = [];

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // Kind with its parameters in one line under it; status with how long the job ran; the message,
  // or for a failed job its error in plain words with the full text behind "Details".
  function jobRow(job) {
    const row = element("tr", { attrs: { "data-job-id": job.id } });
    row.appendChild(element("td", { className: "num", text: `#${job.id}` }));
    row.appendChild(element("td", { className: "job-kind", children: [
      element("div", { text: job.kind.replace(/_/g, " ") }),
      element("div", { className: "dash-small dash-muted job-params", text: job.params_summary || "", attrs: { title: job.params_summary || "" } }),
    ] }));
    row.appendChild(element("td", { children: [
      element("span", { className: "dash-badge" }),
      element("div", { className: "dash-small dash-muted job-duration" }),
    ] }));
    const bar = element("div", { className: "dash-progress-bar" });
    row.appendChild(element("td", { children: [
      element("div", { className: "dash-progress", children: [bar] }),
      element("div", { className: "dash-small dash-muted job-steps" }),
    ] }));
    row.appendChild(element("td", { className: "dash-small job-message" }));
    row.appendChild(element("td", { className: "dash-small dash-muted", text: new Date(job.created_at).toLocaleString() }));
    row.appendChild(element("td", { className: "dash-actions-cell" }));
    return row;
  }

  function updateRow(row, job) {
    const cells = row.children;
    const badge = cells[2].firstChild;
    const duration = cells[2].lastChild;
    duration.textContent = typeof job.duration_seconds === "number"
      ? `${job.is_finished ? "ran" : "running"} ${formatDuration(job.duration_seconds)}`
      : "";
    badge.className = `dash-badge dash-badge-${job.status}`;
    badge.textContent = job.cancel_requested && !job.is_finished ? "cancelling" : job.status;
    const fraction = job.status === "succeeded" ? 1 : job.fraction || 0;
    const progress = cells[3].firstChild;
    progress.className = `dash-progress dash-progress-${job.status}`;
    progress.firstChild.style.width = `${Math.round(fraction * 100)}%`;
    const pace = job.steps_per_second ? ` · ${formatRate(job.steps_per_second)} steps/s` : "";
    const eta = job.eta_seconds !== null && job.eta_seconds !== undefined ? ` · ETA ${formatDuration(job.eta_seconds)}` : "";
    cells[3].lastChild.textContent = job.total
      ? `${job.step} / ${job.total} (${Math.round(fraction * 100)}%)${pace}${eta}`
      : "";
    const failed = job.status === "failed";
    if (failed) {
      const shown = cells[4].dataset.error === job.error;
      if (!shown) {
        const details = element("details", { className: "job-error-details", children: [
          element("summary", { text: "Details" }),
          element("pre", { text: job.error }),
        ] });
        cells[4].replaceChildren(element("div", { className: "job-error", text: job.error_in_words || job.error }), details);
        cells[4].dataset.error = job.error;
      }
    } else {
      cells[4].textContent = job.message;
      delete cells[4].dataset.error;
    }
    cells[4].classList.toggle("dash-fielderror", failed);
    const actions = cells[6];
    const cancellable = !job.is_finished && !job.cancel_requested;
    // One action at a time: Cancel while it runs; Resume for a failed or cancelled training job
    // that left a checkpoint (the server says which: job.resumable).
    const action = cancellable ? "cancel" : job.resumable ? "resume" : "";
    if (actions.dataset.action !== action) {
      actions.replaceChildren();
      if (action) {
        const url = action === "cancel" ? jobsTable.dataset.cancelUrl : jobsTable.dataset.resumeUrl;
        const form = element("form", { attrs: { method: "post", action: url.replace("/0/", `/${job.id}/`) } });
        form.appendChild(element("input", { attrs: { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() } }));
        form.appendChild(element("button", {
          className: `dash-button dash-button-small${action === "cancel" ? " dash-button-danger" : ""}`,
          text: action === "cancel" ? "Cancel" : "Resume",
          attrs: action === "resume"
            ? { type: "submit", title: resumeTitle(job) }
            : { type: "submit" },
        }));
        actions.appendChild(form);
      }
      actions.dataset.action = action;
    }
  }

  function resumeTitle(job) {
    const title = "Train on from its newest checkpoint, in a new job";
    if (!job.resumable_until) return title;
    const until = new Date(job.resumable_until);
    return `${title}. The checkpoint is kept until ${until.toLocaleString()}.`;
  }

  function renderJobs(jobs) {
    latestJobs = jobs;
    const body = document.getElementById("jobs-body");
    const seen = new Set();
    jobs.forEach((job) => {
      let row = rowsById.get(job.id);
      if (!row) {
        row = jobRow(job);
        rowsById.set(job.id, row);
      }
      updateRow(row, job);
      body.appendChild(row); // appending an existing row moves it: the order follows the payload
      seen.add(job.id);
    });
    for (const [id, row] of rowsById) {
      if (!seen.has(id)) {
        row.remove();
        rowsById.delete(id);
      }
    }
    document.getElementById("jobs-empty").hidden = jobs.length > 0;
    renderMetrics(jobs);
    renderExports(jobs);
  }

  function renderMetrics(jobs) {
    const select = document.getElementById("metrics-job");
    const canvas = document.getElementById("chart-metrics");
    const withMetrics = jobs.filter((job) => job.metrics && job.metrics.points.length);
    document.getElementById("metrics-empty").hidden = withMetrics.length > 0;
    canvas.parentElement.hidden = withMetrics.length === 0;
    select.replaceChildren(...withMetrics.map((job) => element("option", { text: `#${job.id} ${job.kind.replace(/_/g, " ")} (${job.status})`, attrs: { value: job.id } })));
    if (!withMetrics.length) return;
    const job = withMetrics.find((candidate) => candidate.id === selectedJob) || withMetrics[0];
    select.value = String(job.id);
    const names = job.metrics.names;
    const lossLike = names.filter((name) => /loss/i.test(name));
    const datasets = names.map((name, index) => ({
      label: name,
      data: job.metrics.points.filter((point) => typeof point[name] === "number").map((point) => ({ x: point.step, y: point[name] })),
      borderColor: colour(index), backgroundColor: colour(index), pointRadius: 0, borderWidth: 2, tension: 0.15,
      yAxisID: lossLike.length && !lossLike.includes(name) ? "other" : "y",
    }));
    const useOther = datasets.some((dataset) => dataset.yAxisID === "other");
    if (!charts.metrics) {
      charts.metrics = new Chart(canvas, {
        type: "line",
        data: { datasets },
        options: {
          interaction: { mode: "nearest", axis: "x", intersect: false },
          scales: {
            x: { type: "linear", title: { display: true, text: "step" } },
            y: { title: { display: true, text: lossLike.length ? "loss" : "value" } },
            other: { display: useOther, position: "right", grid: { drawOnChartArea: false } },
          },
          plugins: { legend: { position: "bottom" } },
        },
      });
    } else {
      charts.metrics.data.datasets = datasets;
      charts.metrics.options.scales.other.display = useOther;
      charts.metrics.options.scales.y.title.text = lossLike.length ? "loss" : "value";
      charts.metrics.update("none");
    }
    charts.metrics.$jobId = job.id;
  }

  function renderExports(jobs) {
    const list = document.getElementById("exports-list");
    const exports = jobs.filter((job) => job.kind === "export");
    document.getElementById("exports-empty").hidden = exports.length > 0;
    list.replaceChildren(...exports.map((job) => {
      const item = element("li", { attrs: { "data-job-id": job.id } });
      item.appendChild(element("span", { className: "dash-strong", text: `#${job.id}` }));
      item.appendChild(element("span", { className: `dash-badge dash-badge-${job.status}`, text: job.status }));
      item.appendChild(element("span", { className: "dash-muted dash-small", text: new Date(job.created_at).toLocaleString() }));
      if (job.status === "succeeded") {
        job.files.forEach((name) => {
          const href = list.dataset.downloadUrl.replace("/0/", `/${job.id}/`).replace("NAME", encodeURIComponent(name));
          item.appendChild(element("a", { text: name, attrs: { href } }));
        });
      } else if (job.status === "failed") {
        item.appendChild(element("span", { className: "dash-fielderror", text: job.error }));
      } else {
        item.appendChild(element("span", { className: "dash-muted", text: job.message || "waiting for a worker" }));
      }
      return item;
    }));
  }

  function poll() {
    const live = document.getElementById("jobs-live");
    fetch(jobsTable.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return response.json();
      })
      .then((payload) => {
        renderJobs(payload.jobs);
        live.classList.remove("dash-live-off");
        live.textContent = "live";
      })
      .catch(() => {
        live.classList.add("dash-live-off");
        live.textContent = "offline";
      })
      .finally(() => {
        const active = latestJobs.some((job) => !job.is_finished);
        window.setTimeout(poll, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
      });
  }

  function jobs() {
    if (!jobsTable) return;
    document.getElementById("metrics-job").addEventListener("change", (event) => {
      selectedJob = Number(event.target.value);
      renderMetrics(latestJobs);
    });
    renderJobs(readJson("jobs-data") || []);
    window.setTimeout(poll, POLL_ACTIVE_MS);
  }

  // Training forms: settings that do not apply to the chosen method (or reward-model kind) are
  // hidden. Hidden fields are still sent; the server leaves out what does not apply all the same.
  function followSwitches() {
    document.querySelectorAll("form[data-switch]").forEach((form) => {
      const choice = form.elements[form.dataset.switch];
      if (!choice) return;
      const apply = () => {
        form.querySelectorAll("[data-when]").forEach((element) => {
          element.hidden = !element.dataset.when.split(" ").includes(choice.value);
        });
      };
      choice.addEventListener("change", apply);
      apply();
    });
  }

  followSwitches();
  // A form sent back with an error: show it, wherever on the page it is (its first wrong field).
  const problem =
    document.querySelector(".dash-action-error .dash-field-error") ||
    document.querySelector(".dash-action-error, #import-form .dash-formerror");
  if (problem) problem.scrollIntoView({ block: "center" });

  judgmentsOverTime();
  const board = readJson("leaderboard-data");
  if (board) {
    intervalPlot(board);
    heatmap(board);
  }
  rewardModels();
  noveltyValue();
  jobs();
})();
