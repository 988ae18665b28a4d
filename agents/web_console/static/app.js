// The leadstreams web console (no framework, no build step; the API is /console/api/*).
// Everything the server sends is untrusted (lead data, partner answers): it only ever reaches
// the page through textContent / attributes, never innerHTML.
"use strict";

(() => {
  const TOKEN_KEY = "leadstreams-console-token";
  const POLL_MS = 2000;
  const SPARK_SPAN_S = 900; // the sparkline's 15 minutes
  const SPARK_STEP_S = 10; // between its points
  const OUTCOMES = ["success", "failure", "error", "skip"];
  const NO_VALUE = "–";

  const state = { overview: null, run: null, pollTimer: null, selectedProblem: null };
  const $ = (id) => document.getElementById(id);

  // ---- elements (text only) ----------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  // ---- numbers: what the tests compare (ms one decimal, counts integers, % one decimal) -----
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fmtMs = (v) => (isNum(v) ? v.toFixed(1) : NO_VALUE);
  const fmtCount = (v) => (isNum(v) ? String(Math.round(v)) : NO_VALUE);
  const fmtPct = (v) => (isNum(v) ? v.toFixed(1) : NO_VALUE);
  const fmtRate = (v) => (isNum(v) ? v.toFixed(v < 10 ? 2 : 1) : NO_VALUE);
  const fmtShare = (v) => (isNum(v) ? (v * 100).toFixed(1) + " %" : NO_VALUE);

  function pretty(value) {
    // A body may be a JSON text: show it indented; XML or plain text as it came.
    if (typeof value === "string") {
      try {
        return JSON.stringify(JSON.parse(value), null, 2);
      } catch (e) {
        return value;
      }
    }
    return JSON.stringify(value, null, 2);
  }

  // ---- the token: #token=... -> sessionStorage -> header; never in a URL we fetch ----------
  function takeTokenFromHash() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!match) return;
    let token = match[1];
    try {
      token = decodeURIComponent(token);
    } catch (_) {
      // a malformed %-escape: keep the text as given (the server says whether it is right)
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, json) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["X-Leadstreams-Token"] = token;
    const init = { method: "GET", headers, cache: "no-store", credentials: "omit" };
    if (json !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "cannot reach the server (" + e.message + ")");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (response.status === 401) {
      askForToken(data && data.error);
      throw new ApiError(401, (data && data.error) || "the token is missing or wrong");
    }
    if (!response.ok) throw new ApiError(response.status, (data && data.error) || "HTTP " + response.status);
    return data;
  }

  function askForToken(message) {
    stopPolling();
    $("token-box").hidden = false;
    if (message) $("token-message").textContent = message + ": paste the console's token.";
    $("token-input").focus();
  }

  function showStatus(text) {
    $("status").hidden = !text;
    $("status").textContent = text || "";
  }

  // ---- start: the overview decides what the tabs show --------------------------------------
  async function start() {
    let overview;
    try {
      overview = await api("/console/api/overview");
    } catch (e) {
      if (e.status !== 401) showStatus(e.message);
      return;
    }
    $("token-box").hidden = true;
    showStatus("");
    state.overview = overview;
    renderOverview(overview);
    if (overview.mode === "worker") poll();
  }

  async function refreshOverview() {
    if (!state.overview) return;
    try {
      state.overview = await api("/console/api/overview");
      renderOverview(state.overview);
    } catch (e) {
      if (e.status !== 401) showStatus(e.message);
    }
  }

  function renderOverview(overview) {
    const worker = overview.mode === "worker";
    $("mode").hidden = false;
    $("mode").textContent = worker ? "worker" : "console";
    $("mode").dataset.mode = overview.mode;
    $("flows-summary").replaceChildren(
      "flows: ",
      ...overview.flows.flatMap((flow, i) => [
        i ? ", " : "",
        el("span", { class: "flow-name", "data-flow": flow.name, title: flow.file }, flow.name),
        el("span", { class: "muted" }, " " + (flow.version || "").slice(0, 8)),
      ]),
    );
    const rejected = $("rejected");
    rejected.hidden = !overview.rejected.length;
    rejected.replaceChildren(
      ...overview.rejected.map((r) => el("li", { "data-file": r.file }, "rejected " + r.file + ": " + r.problems.join("; "))),
    );
    for (const node of document.querySelectorAll(".no-worker")) node.hidden = worker;
    for (const node of document.querySelectorAll(".with-worker")) node.hidden = !worker;
    renderTestForm(overview);
  }

  // ---- polling ------------------------------------------------------------------------------
  function stopPolling() {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  async function poll() {
    stopPolling();
    try {
      const [stats, problems] = await Promise.all([api("/console/api/stats"), api("/console/api/problems")]);
      renderStats(stats);
      renderProblems(problems);
      showStatus("");
      $("updated").textContent = "updated " + new Date(stats.at * 1000).toLocaleTimeString();
    } catch (e) {
      if (e.status === 401) return; // the token box is up; polling resumes after it
      showStatus("the worker does not answer: " + e.message);
    }
    state.pollTimer = setTimeout(poll, POLL_MS);
  }

  // ---- Live ---------------------------------------------------------------------------------
  function renderStats(stats) {
    const alerts = $("alerts");
    alerts.hidden = !stats.alerts.length;
    alerts.replaceChildren(
      ...stats.alerts.map((a) =>
        el("li", { "data-alert": a.alert, "data-flow": a.flow, "data-integration": a.integration },
          el("strong", {}, a.alert), " ", (a.integration ? a.flow + " / " + a.integration : a.flow) + ": " + a.condition,
          a.value ? " (now " + a.value + ")" : ""),
      ),
    );
    $("live-flows").replaceChildren(...stats.flows.map((flow) => renderFlow(flow, stats)));
  }

  function renderFlow(flow, stats) {
    const leads = flow.leads || {};
    const outcomeNames = [...OUTCOMES, ...Object.keys(leads).filter((o) => !OUTCOMES.includes(o))];
    const line = el("p", { class: "flow-line" },
      el("span", {}, "leads/s ", el("b", { "data-field": "leads_per_s" }, fmtRate(flow.leads_per_s))),
      el("span", {}, "leads ",
        ...outcomeNames.flatMap((o, i) => [i ? " · " : "",
          el("span", { class: "o-" + o }, o + " "), el("b", { "data-field": "leads." + o }, fmtCount(leads[o] || 0))])),
      el("span", {}, "lag ", el("b", { "data-field": "lag" }, fmtCount(flow.lag))),
      el("span", { title: "this worker's share of the flow's rate limits (its share of the input partitions)" },
        "rate-limit share ", el("b", { "data-field": "rate_limit_share" }, fmtShare(flow.rate_limit_share))),
    );
    const head = el("tr", {},
      el("th", { class: "left" }, "step"), el("th", {}, "requests"), el("th", {}, "req/s"),
      el("th", {}, "p50 ms"), el("th", {}, "p95 ms"), el("th", {}, "p99 ms"),
      ...OUTCOMES.map((o) => el("th", { class: "o-" + o }, o)),
      el("th", {}, "error %"), el("th", {}, "retries"), el("th", {}, "circuit"),
      el("th", { title: "the rate limiter's wait, p95 (ms)" }, "limiter p95"), el("th", {}, "in flight"),
      el("th", { title: "batch windows open" }, "batches"),
      el("th", { title: "requests per second (and p95, faint) over the last 15 min" }, "last 15 min"),
    );
    const rows = flow.steps.map((step) => renderStep(flow, step, stats));
    // A flow's own conditions (consumer lag) have no integration: their badge is by its name.
    const flowAlerts = (stats.alerts || []).filter((a) => a.flow === flow.name && !a.integration);
    return el("section", { class: "flow", "data-flow": flow.name },
      el("h2", {}, flow.name, el("span", { class: "muted version" }, " " + (flow.version || "").slice(0, 8)),
        ...flowAlerts.map((a) => el("span", { class: "badge alert", "data-alert": a.alert }, a.condition))),
      line,
      el("table", { class: "grid steps" }, el("thead", {}, head), el("tbody", {}, rows)),
    );
  }

  function renderStep(flow, step, stats) {
    const cell = (field, text, cls) => el("td", { "data-field": field, class: cls }, text);
    const outcomes = step.outcomes || {};
    const alerts = step.alerts || [];
    const name = el("td", { class: "left", "data-field": "name" },
      el("b", {}, step.name), el("span", { class: "muted" }, " " + step.integration),
      ...alerts.map((a) => el("span", { class: "badge alert", "data-alert": a }, a)));
    const errorCls = isNum(step.error_pct) && step.error_pct > 5 ? "bad" : null;
    return el("tr", { "data-flow": flow.name, "data-step": step.name, class: alerts.length ? "alerting" : null },
      name,
      cell("requests", fmtCount(step.requests)),
      cell("requests_per_s", fmtRate(step.requests_per_s)),
      cell("p50_ms", fmtMs(step.p50_ms)),
      cell("p95_ms", fmtMs(step.p95_ms)),
      cell("p99_ms", fmtMs(step.p99_ms)),
      ...OUTCOMES.map((o) => cell("outcomes." + o, fmtCount(outcomes[o] || 0), outcomes[o] && o !== "success" ? "o-" + o : null)),
      cell("error_pct", fmtPct(step.error_pct), errorCls),
      cell("retries", fmtCount(step.retries)),
      cell("circuit", step.circuit || NO_VALUE, step.circuit && step.circuit !== "closed" ? "bad" : null),
      cell("limiter_wait_p95_ms", fmtMs(step.limiter_wait_p95_ms)),
      cell("in_flight", fmtCount(step.in_flight)),
      cell("batch_windows_open", fmtCount(step.batch_windows_open)),
      el("td", { "data-field": "spark", class: "spark" }, sparkline(step.spark || [], stats.at)),
    );
  }

  function sparkline(points, at) {
    // rps as the line, p95 faint behind it, each scaled to its own maximum; x is the last
    // 15 min, or the time since the first point when the worker is younger than that (a line
    // across the cell, not a sliver at its right edge).
    const width = 104;
    const height = 26;
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "sparkline", role: "img" });
    const from = points.length ? Math.max(at - SPARK_SPAN_S, points[0][0] - SPARK_STEP_S) : at - SPARK_SPAN_S;
    const x = (t) => (width * (t - from)) / Math.max(at - from, 1);
    const line = (index, cls) => {
      const valid = points.filter((p) => isNum(p[index]));
      if (!valid.length) return;
      const top = Math.max(...valid.map((p) => p[index])) || 1;
      const y = (v) => height - 2 - ((height - 4) * v) / top;
      if (valid.length === 1) {
        // One 10 s point so far (a worker that just started): a dot, a line needs two.
        chart.append(svg("circle", { cx: x(valid[0][0]).toFixed(1), cy: y(valid[0][index]).toFixed(1), r: 1.5, class: cls }));
        return;
      }
      const coords = valid.map((p) => `${x(p[0]).toFixed(1)},${y(p[index]).toFixed(1)}`);
      chart.append(svg("polyline", { points: coords.join(" "), class: cls }));
    };
    line(2, "p95");
    line(1, "rps");
    const last = points.length ? points[points.length - 1] : null;
    const title = svg("title", {});
    title.textContent = last ? `now ${fmtRate(last[1])} req/s, p95 ${fmtMs(last[2])} ms` : "no requests yet";
    chart.append(title);
    return chart;
  }

  // ---- Recent problems ----------------------------------------------------------------------
  function renderProblems(answer) {
    const problems = answer.problems || [];
    $("problems-empty").hidden = problems.length > 0;
    $("problems-kept").textContent = `the last ${answer.kept} errors and failures are kept; newest first; click one for its event`;
    $("problems-body").replaceChildren(
      ...problems.map((p) => {
        const row = el("tr", { "data-problem-id": p.id, class: p.id === state.selectedProblem ? "selected" : null, tabindex: 0 },
          el("td", { "data-field": "time", title: p.time }, shortTime(p.time)),
          el("td", { "data-field": "flow" }, p.flow),
          el("td", { "data-field": "step" }, p.step || NO_VALUE),
          el("td", { "data-field": "lead_id" }, p.lead_id === null || p.lead_id === undefined ? NO_VALUE : p.lead_id),
          el("td", { "data-field": "outcome", class: "o-" + p.outcome }, p.outcome),
          el("td", { "data-field": "reason", class: "reason" }, p.reason),
          el("td", { "data-field": "where" }, `${p.topic} / ${p.partition} / ${p.offset}`),
        );
        row.addEventListener("click", () => showProblem(p));
        row.addEventListener("keydown", (e) => e.key === "Enter" && showProblem(p));
        return row;
      }),
    );
  }

  // "2026-12-01T18:00:00.123Z" -> "12-01 18:00:00.123" (UTC, as the events say; whole in the title)
  const shortTime = (iso) => (typeof iso === "string" && iso.length >= 23 ? iso.slice(5, 23).replace("T", " ") : iso);

  async function showProblem(problem) {
    state.selectedProblem = problem.id;
    for (const row of document.querySelectorAll("#problems-body tr")) {
      row.classList.toggle("selected", row.dataset.problemId === String(problem.id));
    }
    const title = $("problem-title");
    const pre = $("problem-event");
    $("problem-pane").hidden = false; // beside the table, where the click was
    title.textContent = `event of lead ${problem.lead_id} (${problem.flow}, ${problem.outcome})`;
    pre.dataset.problemId = "";
    pre.textContent = "loading…";
    try {
      const event = await api("/console/api/problems/" + encodeURIComponent(problem.id));
      pre.textContent = JSON.stringify(event, null, 2);
    } catch (e) {
      pre.textContent = e.status === 404 ? "this event is no longer kept" : e.message;
    }
    pre.dataset.problemId = String(problem.id); // set last: the tests wait for it
  }

  // ---- Test console -------------------------------------------------------------------------
  function renderTestForm(overview) {
    const off = !overview.test_console;
    $("test-off").hidden = !off;
    $("test-off").textContent = off ? "The test console is off: " + (overview.test_console_off_reason || "") : "";
    $("try-form").hidden = off;
    if (off) return;
    const select = $("try-flow");
    const chosen = select.value;
    const names = overview.flows.map((f) => f.name);
    if ([...select.options].map((o) => o.value).join("\n") === names.join("\n")) return; // (an open list stays open)
    select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
    if (chosen && names.includes(chosen)) select.value = chosen;
    else fillSampleLead();
  }

  function fillSampleLead() {
    const flow = (state.overview.flows || []).find((f) => f.name === $("try-flow").value);
    const lead = (flow && flow.sample_lead) || { id: "test-1" };
    $("try-lead").value = JSON.stringify(lead, null, 2);
  }

  async function sendTry(event) {
    event.preventDefault();
    const error = $("try-error");
    error.hidden = true;
    let lead;
    try {
      lead = JSON.parse($("try-lead").value);
    } catch (e) {
      error.hidden = false;
      error.textContent = "the lead is not JSON: " + e.message;
      return;
    }
    const button = $("try-send");
    button.disabled = true;
    $("try-result").replaceChildren(el("p", { class: "muted" }, "sending…"));
    $("case-form").hidden = true;
    $("case-result").textContent = "";
    try {
      const answer = await api("/console/api/try", { flow: $("try-flow").value, lead });
      state.run = answer.run;
      renderReport(answer.report, answer.run);
      $("case-form").hidden = false;
    } catch (e) {
      $("try-result").replaceChildren();
      error.hidden = false;
      error.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  function renderReport(report, run) {
    const outcome = el("p", { id: "try-outcome", class: "lead-outcome" }, "lead outcome: ",
      el("span", { class: "badge o-" + report.outcome, "data-field": "outcome" }, report.outcome),
      report.reason ? el("span", { "data-field": "reason" }, " " + report.reason) : null);
    $("try-result").replaceChildren(
      el("div", { class: "cards", "data-run": run }, ...report.steps.map(stepCard)),
      outcome,
      el("h4", {}, "the lead"),
      el("pre", { id: "try-lead-result", class: "code" }, pretty(report.lead)),
    );
  }

  function stepCard(step) {
    const facts = [`${fmtMs(step.duration_ms)} ms`];
    if (step.http_status !== null && step.http_status !== undefined) {
      facts.push(`HTTP ${step.http_status}`, `${step.attempts} request(s)`);
    }
    const body = [];
    const request = step.request;
    if (request) {
      body.push(el("div", { class: "part", "data-part": "request" },
        el("h5", {}, "request"),
        el("p", { class: "mono" }, "→ " + request.method + " " + request.url),
        headerList(request.headers),
        request.body !== null && request.body !== undefined && request.body !== "" ? el("pre", { class: "code" }, pretty(request.body)) : null));
    }
    const response = step.response;
    if (response) {
      body.push(el("div", { class: "part", "data-part": "response" },
        el("h5", {}, "response"),
        el("p", { class: "mono" }, `← ${response.status} in ${response.elapsed_ms} ms`),
        headerList(response.headers),
        response.body ? el("pre", { class: "code" }, pretty(response.body)) : null));
    }
    if ("parsed" in step) body.push(part("parsed", el("pre", { class: "code" }, pretty(step.parsed))));
    if (step.mapped) body.push(part("mapped", fieldTable(step.mapped)));
    for (const key of ["price", "reference"]) {
      if (step[key] !== null && step[key] !== undefined) {
        body.push(part(key, el("pre", { class: "code", "data-field": key }, pretty(step[key]))));
      }
    }
    if (!body.length) body.push(el("p", { class: "muted" }, "(no request sent)"));
    return el("article", { class: "card", "data-step": step.name, "data-outcome": step.outcome },
      el("header", {},
        el("b", {}, step.name), " ",
        el("span", { class: "badge o-" + step.outcome, "data-field": "outcome" }, step.outcome),
        step.reason ? el("span", { class: "reason", "data-field": "reason" }, " — " + step.reason) : null,
        el("span", { class: "muted facts" }, facts.join(", "))),
      el("div", { class: "card-body" }, body));
  }

  const part = (name, content) => el("div", { class: "part", "data-part": name }, el("h5", {}, name), content);

  function headerList(headers) {
    const entries = Object.entries(headers || {});
    if (!entries.length) return null;
    return el("ul", { class: "headers mono" }, entries.map(([k, v]) => el("li", {}, k + ": " + v)));
  }

  function fieldTable(fields) {
    return el("table", { class: "fields" },
      el("tbody", {}, Object.entries(fields).map(([name, value]) =>
        el("tr", { "data-mapped": name },
          el("th", {}, name),
          el("td", { class: "mono" }, typeof value === "string" ? value : JSON.stringify(value))))));
  }

  async function saveCase(event) {
    event.preventDefault();
    const result = $("case-result");
    const name = $("case-name").value.trim();
    const payload = { run: state.run };
    if (name) payload.name = name;
    result.className = "";
    result.textContent = "saving…";
    try {
      const saved = await api("/console/api/cases", payload);
      const notes = [];
      if (saved.rewritten) notes.push("the file was rewritten");
      if (saved.missing_settings && saved.missing_settings.length) {
        notes.push("add these settings to the cases file: " + saved.missing_settings.join(", "));
      }
      result.className = "saved";
      result.dataset.path = saved.path;
      result.textContent = `saved "${saved.name}" to ${saved.path}` + (notes.length ? " (" + notes.join("; ") + ")" : "");
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    }
  }

  // ---- tabs and wiring ----------------------------------------------------------------------
  function showTab(name) {
    for (const tab of document.querySelectorAll("#tabs [data-tab]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
    }
    for (const panel of document.querySelectorAll("main [data-panel]")) panel.hidden = panel.dataset.panel !== name;
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const tab of document.querySelectorAll("#tabs [data-tab]")) {
      tab.addEventListener("click", () => showTab(tab.dataset.tab));
    }
    // Flows come and go (a reload; `leadstreams console` reads the files at each request):
    // the test console's list is fetched again when its tab is opened.
    $("tab-test").addEventListener("click", refreshOverview);
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      start();
    });
    $("try-flow").addEventListener("change", fillSampleLead);
    $("try-form").addEventListener("submit", sendTry);
    $("case-form").addEventListener("submit", saveCase);
    takeTokenFromHash();
    start();
  });
})();
