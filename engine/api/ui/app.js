// erpsync dashboard: plain JavaScript, no build step. Holds no credentials: the session cookie
// (HttpOnly) authenticates, and every API call echoes the XSRF-TOKEN cookie in X-XSRF-TOKEN.
"use strict";

const API = "/api/v1/erpsync";
const REFRESH_MS = 1000;
const CHANGES_SHOWN = 200;
const $ = (id) => document.getElementById(id);
let connections = [];
let timer = null;
let shownTask = null; // the task whose page is rendered, so another id's failure never shows it
let refreshes = 0; // rendered refreshes, exposed as <body data-refreshes> for the browser test

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function xsrf() {
  const m = document.cookie.match(/(?:^|;\s*)XSRF-TOKEN=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

class Unauthorized extends Error {}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function call(method, path, body) {
  const headers = { "X-XSRF-TOKEN": xsrf(), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) throw new Unauthorized();
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).ErrorMessage || msg; } catch (_) { /* not JSON */ }
    throw new ApiError(msg, r.status);
  }
  return r;
}

const getJson = async (path) => (await call("GET", path)).json();

function showError(err) {
  const el = $("error");
  if (!err) { el.hidden = true; el.textContent = ""; return; }
  el.textContent = err.message || String(err);
  el.hidden = false;
}

// A message of the user's own action (a rejected resync, a failed stop): it stays, through
// the refreshes, until their next action, which clears it.
function showActionResult(el, content, failed) {
  el.replaceChildren(...[].concat(content));
  el.classList.toggle("error", failed);
  el.setAttribute("role", failed ? "alert" : "status");
  el.hidden = false;
}

function clearActionResults() {
  for (const el of document.querySelectorAll(".action-result")) {
    el.replaceChildren();
    el.classList.remove("error");
  }
}

// "none": only the error banner (e.g. an unknown task id), never a stale page beneath it.
function show(view) {
  for (const id of ["login-view", "tasks-view", "task-view", "connections-view", "links-view"]) {
    $(id).hidden = id !== view;
  }
  const loggedIn = view !== "login-view";
  $("nav").hidden = !loggedIn;
  $("who").hidden = !loggedIn;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", view.startsWith(a.dataset.view));
  }
}

const pad = (n) => String(n).padStart(2, "0");
function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
const connName = (id) => {
  if (id === null || id === undefined) return "(unknown keys)";
  const c = connections.find((x) => x.Id === id);
  return c ? `${c.Name} (${id})` : `connection ${id}`;
};
const stateBadge = (state) => h("span", { class: `state s-${state}` }, state);

function progressBar(task) {
  const s = task.Statistics;
  const pct = task.ProgressPercent;
  const failed = s.Failed > 0;
  return h("div", { class: "progress", title: task.ProgressDescription || "" },
    h("div", { class: failed ? "bad" : "", style: `width:${pct}%` }),
    h("span", {}, `${pct}%`));
}

// Records are counted when read from the source; each chunk then pushes to every target, so
// "3000 of 3000 records read" can come well before the task ends: say what is still to run.
function progressText(t) {
  const s = t.Statistics;
  const parts = [`${t.ProgressPercent}%`, `${s.DoneRecords} of ${s.TotalRecords ?? "?"} records read`];
  if (!s.Chunks) parts.push("planning");
  else {
    const left = s.Chunks - s.ChunksDone;
    const running = t.State === "Started" && left > 0 ? `, ${left} still to run` : "";
    parts.push(`${s.ChunksDone} of ${s.Chunks} chunks and push units done${running}`);
  }
  return parts.join(" · ");
}

// ---- views ------------------------------------------------------------------------------

async function renderTasks() {
  const state = $("state-filter").value;
  const tasks = await getJson(`${API}/tasks?limit=50${state ? `&state=${state}` : ""}`);
  const rows = tasks.map((t) => {
    const s = t.Statistics;
    const records = s.TotalRecords === null ? "…" : `${s.DoneRecords} / ${s.TotalRecords}`;
    return h("tr", { "data-task-id": t.Id, class: "clickable", tabindex: "0" },
      h("td", {}, h("a", { href: `#/tasks/${t.Id}` }, `#${t.Id}`)),
      h("td", {}, stateBadge(t.State)),
      h("td", {}, progressBar(t)),
      h("td", { class: "num" }, records),
      h("td", { class: s.Failed ? "num bad-text" : "num" }, s.Failed),
      h("td", { class: "time" }, fmtTime(t.Created)),
      h("td", { class: "response" }, t.Response || t.ProgressDescription || ""));
  });
  $("tasks").replaceChildren(...rows);
  $("tasks-empty").hidden = rows.length > 0;
}

async function renderTask(id) {
  const [detail, changes, deliveries] = await Promise.all([
    getJson(`${API}/tasks/${id}`),
    getJson(`${API}/synclog?task=${id}&limit=${CHANGES_SHOWN}`),
    getJson(`${API}/webhook-deliveries?task_id=${id}`),
  ]);
  const t = detail.Task;
  const s = t.Statistics;
  if (shownTask !== t.Id) clearActionResults(); // a stop message belongs to its task
  shownTask = t.Id;
  $("task-stop").hidden = !["New", "Started"].includes(t.State);
  $("task-stop").dataset.taskId = t.Id;
  $("task-retry").hidden = !(["Succeeded", "Failed", "SucceededManualCleanup"].includes(t.State) && s.Failed > 0);
  $("task-retry").dataset.taskId = t.Id;
  $("deliveries-card").hidden = deliveries.length === 0;
  $("deliveries").replaceChildren(...deliveries.map((d) => h("tr", {},
    h("td", {}, d.Webhook),
    h("td", { class: d.State === "given_up" ? "bad-text" : "" }, d.State.replace("_", " ")),
    h("td", { class: "num" }, d.Attempts),
    h("td", { class: "num" }, d.LastStatus ?? ""),
    h("td", {}, d.NextAttempt ? fmtTime(d.NextAttempt) : ""),
    h("td", { class: "reason" }, d.LastError ?? ""),
    h("td", {}, d.State === "given_up"
      ? h("button", { type: "button", class: "resend", "data-delivery-id": d.Id,
        "data-webhook": d.Webhook, title: "POST this event to the webhook again" }, "Resend")
      : ""))));
  $("task-title").textContent = `Task #${t.Id}: ${t.Description}`;
  $("task-state").replaceChildren(stateBadge(t.State));
  const bar = $("task-bar");
  bar.style.width = `${t.ProgressPercent}%`;
  bar.className = s.Failed ? "bad" : "";
  $("task-progress").textContent = progressText(t);
  const facts = [
    ["Source", connName(s.SourceConnectionId)], ["Created", fmtTime(t.Created)],
    ["Started", fmtTime(t.LastStarted)], ["Finished", fmtTime(s.Finished)],
    ["Updated", s.Updated], ["Unchanged", s.Unchanged], ["Created (actors)", s.Created],
    ["Failed", s.Failed], ["Unknown keys", s.UnknownKeys], ["Fields changed", s.FieldsChanged],
  ];
  $("task-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("task-response").textContent = t.Response;

  const known = ["updated", "unchanged", "created", "failed"];
  $("targets").replaceChildren(...detail.Targets.map((g) => {
    const o = g.Outcomes;
    const other = Object.entries(o).filter(([k]) => !known.includes(k))
      .map(([k, v]) => `${k.replace("_", " ")}: ${v}`).join(", ");
    return h("tr", { "data-connection-id": g.ConnectionId ?? "" },
      h("td", {}, g.ConnectionId === null ? "(unknown internal keys)" : `${g.Name} (${g.ConnectionId})`),
      h("td", { class: "num" }, g.Records),
      ...known.map((k) => h("td", { class: k === "failed" && o[k] ? "num bad-text" : "num" }, o[k] || 0)),
      h("td", {}, other),
      h("td", { class: "num" }, g.FieldsChanged));
  }));

  $("failures").replaceChildren(...detail.Failures.map((f) => h("tr", {},
    h("td", { class: "num" }, f.InternalKeyId),
    h("td", {}, f.ConnectionId === null ? "" : `${f.ConnectionName} (${f.ConnectionId})`),
    h("td", {}, f.Status.replace("_", " ")),
    h("td", { class: "reason" }, f.Error))));
  $("failures-empty").hidden = detail.Failures.length > 0;
  $("failures").closest("table").hidden = detail.Failures.length === 0;

  $("changes").replaceChildren(...changes.map((c) => h("tr", {},
    h("td", { class: "num" }, c.InternalKeyId),
    h("td", {}, `${c.ConnectionName} (${c.ConnectionId})`),
    h("td", {}, `${c.ErpActorType}.${c.ErpField} ↔ ${c.CrmField}`),
    h("td", {}, c.Direction === "to_crm" ? "→ CRM" : "→ ERP"),
    h("td", { class: "old" }, c.OldValue ?? "∅"),
    h("td", { class: "new" }, c.NewValue ?? "∅"))));
  $("changes-more").hidden = changes.length < CHANGES_SHOWN;
  $("changes-empty").hidden = changes.length > 0;
  $("changes").closest("table").hidden = changes.length === 0;
}

async function renderConnections() {
  connections = await getJson(`${API}/connections`);
  $("connections").replaceChildren(...connections.map((c) => h("tr", { "data-connection-id": c.Id },
    h("td", { class: "num" }, c.Id),
    h("td", {}, c.Name),
    h("td", {}, c.Role),
    h("td", { class: c.Active === false ? "bad-text" : "" }, c.Active === false ? "inactive" : "yes"),
    h("td", {}, c.Connector),
    h("td", {}, h("span", { class: `health h-${c.Health}` }, c.Health)),
    h("td", {}, h("span", { class: `health b-${c.Breaker}` }, c.Breaker.replace("_", " "))),
    h("td", { class: "num" }, c.RecentOutcomes),
    h("td", { class: c.RecentFailures ? "num bad-text" : "num" }, c.RecentFailures),
    h("td", { class: "reason" }, c.LastError || ""))));
  await renderEngine();
}

// The continuous sync's schedule: the live workers, and per connection whether it is active,
// its watermark, last run, lag and next run.
async function renderEngine() {
  const status = await getJson(`${API}/engine`);
  $("engine-state").textContent =
    `${status.IsRunning ? "running" : "stopped"}, every ${status.Interval}: ${status.StatusMessage}`;
  const workers = status.Workers || { Alive: 0, RunningSync: 0 };
  const worker = workers.Alive === 1 ? "worker" : "workers";
  $("engine-workers").textContent =
    `${workers.Alive} ${worker} alive, ${workers.RunningSync} running the continuous sync`;
  $("engine-workers").className = workers.RunningSync ? "muted" : "bad-text";
  const time = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");
  $("engine-connections").replaceChildren(...status.Connections.map((c) =>
    h("tr", { "data-connection-id": c.ConnectionId },
      h("td", { class: "num" }, c.ConnectionId),
      h("td", {}, c.Name),
      h("td", { class: c.Active === false ? "bad-text" : "" }, c.Active === false ? "inactive" : "yes"),
      h("td", {}, c.Watermarks.map((w) => `${w.ActorType} @ ${w.Since ?? "start"}`).join(", ")),
      h("td", {}, time(c.LastRun)),
      h("td", { class: c.LastOutcome === "failed" ? "reason bad-text" : "" },
        c.LastOutcome ? c.LastOutcome + (c.LastError ? `: ${c.LastError}` : "") : ""),
      h("td", { class: "num" }, c.LastQueued),
      h("td", { class: "num" }, c.LastEchoes),
      h("td", { class: "num" }, c.LagSeconds === null ? "" : `${c.LagSeconds.toFixed(1)} s`),
      h("td", {}, time(c.NextRun)))));
}

function fillSources() {
  const select = $("resync-source");
  if (select.options.length) return;
  for (const c of connections) {
    select.append(h("option", { value: c.Id }, `${c.Name} (${c.Id})`));
  }
}

// ---- routing and refresh ------------------------------------------------------------------

async function route() {
  clearTimeout(timer);
  const hash = location.hash || "#/tasks";
  let view;
  let render;
  const m = hash.match(/^#\/tasks\/(\d+)$/);
  if (m) { view = "task-view"; render = () => renderTask(Number(m[1])); }
  else if (hash === "#/connections") { view = "connections-view"; render = renderConnections; }
  else if (linksTarget(hash)) { view = "links-view"; render = () => renderLinks(linksTarget(hash)); }
  else { view = "tasks-view"; render = renderTasks; }
  try {
    if (!connections.length) { await renderConnections(); fillSources(); }
    await render();
    show(view);
    showError(null);
  } catch (err) {
    if (err instanceof Unauthorized) { show("login-view"); return; }
    // Not found, or a task other than the one on screen: show the error alone.
    if (err.status === 404 || (m && shownTask !== Number(m[1]))) {
      shownTask = null;
      show("none");
    }
    showError(err);
  }
  refreshes += 1;
  document.body.dataset.refreshes = refreshes;
  timer = setTimeout(route, REFRESH_MS);
}

async function start() {
  try {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    if (r.status !== 200) { show("login-view"); return; }
    $("user").textContent = (await r.json()).User;
  } catch (err) { showError(err); return; }
  await route();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const r = await fetch("/api/session/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ Username: form.username.value, Password: form.password.value }),
  });
  form.password.value = "";
  if (r.status === 429) {  // too many failed logins: the server says how long to wait
    showError(new Error((await r.json()).ErrorMessage)); return;
  }
  if (r.status !== 204) { showError(new Error("Wrong user name or password.")); return; }
  showError(null);
  await start();
});

$("logout").addEventListener("click", async () => {
  clearTimeout(timer);
  try { await call("POST", "/api/session/logout"); } catch (_) { /* already gone */ }
  connections = [];
  show("login-view");
});

$("resync-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const result = $("resync-result");
  const raw = $("resync-keys").value.trim();
  const keys = raw ? raw.split(/[\s,;]+/).filter(Boolean).map(Number) : [];
  if (keys.some((k) => !Number.isSafeInteger(k) || k <= 0)) {
    showActionResult(result, "Not queued: internal key ids must be positive whole numbers.", true);
    return;
  }
  try {
    const r = await call("POST", "/api/v1/Agents/ErpSync/ForceResyncBatchTask",
      { ErpConnectionId: Number($("resync-source").value), InternalKeyIds: keys });
    const id = r.headers.get("X-Batch-Task-Id");
    showActionResult(result,
      ["Queued as ", h("a", { href: `#/tasks/${id}` }, `task #${id}`), "."], false);
    await route();
  } catch (err) {
    if (err instanceof Unauthorized) show("login-view");
    else showActionResult(result, `Not queued: ${err.message}`, true);
  }
});

// The user's next action ends the previous action's message.
for (const type of ["input", "change"]) {
  $("resync-form").addEventListener(type, () => clearActionResults());
}
document.addEventListener("click", (ev) => {
  if (!ev.target.closest("button[type=submit], #task-stop, #task-retry, button.resend")) {
    clearActionResults();
  }
}, true);

$("task-stop").addEventListener("click", async () => {
  const button = $("task-stop");
  const id = Number(button.dataset.taskId);
  const result = $("task-action");
  button.disabled = true;
  try {
    const r = await call("POST", "/api/v1/Agents/Batch/StopBatchJob", { Id: id });
    const stopped = await r.json();
    showActionResult(result, stopped
      ? "Stopped: chunks not yet started are skipped; one already running still commits."
      : "The task had already ended; nothing to stop.", false);
    await route();
  } catch (err) {
    if (err instanceof Unauthorized) show("login-view");
    else showActionResult(result, `Not stopped: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
});

$("task-retry").addEventListener("click", async () => {
  const button = $("task-retry");
  const id = Number(button.dataset.taskId);
  const result = $("task-action");
  button.disabled = true;
  try {
    const r = await call("POST", "/api/v1/Agents/ErpSync/RetryFailed", { Id: id });
    const newId = await r.json();
    showActionResult(result, ["Queued ", h("a", { href: `#/tasks/${newId}` }, `task #${newId}`),
      " with the records that failed here."], false);
  } catch (err) {
    if (err instanceof Unauthorized) show("login-view");
    else showActionResult(result, `Not retried: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
});

$("deliveries").addEventListener("click", async (ev) => {
  const button = ev.target.closest("button.resend");
  if (!button) return;
  const id = Number(button.dataset.deliveryId);
  const result = $("task-action");
  button.disabled = true;
  try {
    await call("POST", `${API}/webhook-deliveries/${id}/resend`);
    showActionResult(result, `Delivery #${id} to ${button.dataset.webhook} is due again.`, false);
    await route();
  } catch (err) {
    if (err instanceof Unauthorized) show("login-view");
    else showActionResult(result, `Not resent: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
});

$("links-form").addEventListener("submit", linksSubmit);
$("state-filter").addEventListener("change", route);
$("tasks").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-task-id]");
  if (row && !ev.target.closest("a")) location.hash = `#/tasks/${row.dataset.taskId}`;
});
window.addEventListener("hashchange", route);
start();
