// The judgment inspector: "Try it" (a judge request to the real API), the result views, recent
// judgments (--record-judgments) and the health strip. No inline script: the CSP forbids it.
import { api, ApiError, getKey, onUnauthorized, setKey } from "./api.js";
import { $, clear, fmt, h, preview } from "./dom.js";
import { resultView } from "./views.js";

const SAMPLE = {
  query: "What is 2 + 2?",
  responses: ["4", "2 + 2 = 4.", "5", "22", "four"],
};

// -- tabs ------------------------------------------------------------------------------------------
function show(view) {
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    const on = tab.dataset.view === view;
    tab.setAttribute("aria-selected", String(on));
    $(`#view-${tab.dataset.view}`).hidden = !on;
  }
  if (view === "recent") loadRecent();
}

// -- the API key -----------------------------------------------------------------------------------
function askKey(message) {
  const dialog = $("#key-dialog");
  $("#key-message").textContent = message || "";
  $("#key-input").value = "";
  if (!dialog.open) dialog.showModal();
}

function initKey() {
  $("#key-button").addEventListener("click", () => askKey(getKey() ? "A key is set for this tab." : ""));
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey($("#key-input").value.trim());
    $("#key-dialog").close();
    refreshHealth();
  });
  $("#key-forget").addEventListener("click", () => {
    setKey("");
    $("#key-dialog").close();
  });
  $("#key-cancel").addEventListener("click", () => $("#key-dialog").close());
  let askedFor = null; // ask once per key, not at every refresh of the health strip
  onUnauthorized(() => {
    if (askedFor === getKey()) return;
    askedFor = getKey();
    askKey(getKey() ? "The server refused this API key." : "This server needs an API key.");
  });
}

// -- Try it ----------------------------------------------------------------------------------------
function responseRow(text = "") {
  const row = h("li", { class: "response-row" },
    h("textarea", { class: "response-input", rows: "2", "aria-label": "response" }),
    h("button", { type: "button", class: "remove", title: "remove this response",
      onclick: () => { row.remove(); renumber(); } }, "remove"));
  row.querySelector("textarea").value = text;
  return row;
}

function renumber() {
  const rows = [...document.querySelectorAll("#responses .response-row")];
  rows.forEach((row, i) => row.querySelector("textarea").setAttribute("aria-label", `response ${i}`));
  for (const b of document.querySelectorAll("#responses .remove")) b.disabled = rows.length <= 2;
}

function number(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

function buildRequest() {
  const method = $("#method").value;
  const body = {
    query: $("#query").value,
    responses: [...document.querySelectorAll("#responses textarea")].map((t) => t.value),
    votes: number("#votes") ?? 1,
    include_reasoning: $("#include-reasoning").checked,
    early_stop: $("#early-stop").checked,
    cache: $("#use-cache").checked,
  };
  const optional = { seed: "#seed", max_tokens: "#max-tokens", max_thinking_tokens: "#max-thinking-tokens" };
  for (const [field, id] of Object.entries(optional)) {
    const v = number(id);
    if (v !== undefined) body[field] = v;
  }
  if ($("#order").value) body.order = $("#order").value;
  if (method !== "pairwise") body.method = method;
  return [method === "pairwise" ? "pairwise" : "rank", body];
}

async function submit(e) {
  e.preventDefault();
  const out = $("#try-status");
  const [kind, body] = buildRequest();
  if (kind === "pairwise" && body.responses.length !== 2) {
    out.textContent = "pairwise judges exactly 2 responses; use ELO or knockout for more";
    return;
  }
  const button = $("#submit");
  button.disabled = true;
  out.textContent = "judging…";
  try {
    const response = await api.judge(kind, body);
    out.textContent = "";
    openResult(body, response);
  } catch (err) {
    out.textContent = describe(err);
  } finally {
    button.disabled = false;
  }
}

function describe(err) {
  if (err instanceof ApiError) return `${err.status || ""} ${err.type}: ${err.message}`.trim();
  return String(err);
}

function initTry() {
  $("#query").value = SAMPLE.query;
  const list = $("#responses");
  SAMPLE.responses.forEach((t) => list.append(responseRow(t)));
  renumber();
  $("#add-response").addEventListener("click", () => { list.append(responseRow()); renumber(); });
  $("#try-form").addEventListener("submit", submit);
  $("#method").value = "knockout";
}

// -- results ---------------------------------------------------------------------------------------
function openResult(request, response) {
  const view = clear($("#result"));
  view.append(resultView(request, response));
  $("#result-tab").disabled = false;
  show("result");
}

async function openRecorded(id) {
  const note = $("#recent-note");
  try {
    const record = await api.judgment(id);
    openResult(record.request, record.response);
  } catch (err) {
    note.textContent = describe(err);
  }
}

// -- recent judgments ------------------------------------------------------------------------------
function recentRow(s) {
  return h("tr", { dataset: { id: s.id } },
    h("td", {}, new Date(s.created * 1000).toLocaleTimeString()),
    h("td", {}, s.method),
    h("td", { class: "prev", title: s.query_preview }, preview(s.query_preview, 70)),
    h("td", { class: "num" }, String(s.responses)),
    h("td", { class: "num" }, s.winner === null ? "–" : `#${s.winner}`),
    h("td", {}, s.status),
    h("td", { class: "num" }, `${s.votes} (${s.invalid_votes} invalid)`),
    h("td", {}, h("button", { type: "button", class: "open", onclick: () => openRecorded(s.id) }, "open")));
}

async function loadRecent() {
  const note = $("#recent-note");
  const body = clear($("#recent-body"));
  note.textContent = "loading…";
  try {
    const list = await api.judgments(50);
    const r = list.recording;
    note.textContent = r.enabled
      ? `${list.data.length} recorded (newest first; the last ${r.capacity} are kept ${fmt(r.ttl / 3600, 1)} h, ${r.backend})`
      : "Recording is off: start the server with --record-judgments N to keep the last N judgments.";
    list.data.forEach((s) => body.append(recentRow(s)));
  } catch (err) {
    note.textContent = describe(err);
  }
}

// -- health strip ----------------------------------------------------------------------------------
function item(name, value, kind = "") {
  return h("span", { class: `item ${kind}`.trim() }, h("span", { class: "name" }, name), " ", value);
}

async function refreshHealth() {
  const strip = $("#health");
  try {
    const s = await api.status();
    const rate = s.cache.hit_rate === null ? "–" : `${Math.round(s.cache.hit_rate * 100)}%`;
    strip.replaceChildren(
      item("state", s.state, s.ready ? "good" : "bad"),
      item("model", s.model ?? "–"),
      item("replicas", s.replicas === null ? "–" : String(s.replicas)),
      item("queue", `${s.queue.waiting}/${s.queue.max_waiting}`),
      item("engine calls", String(s.queue.engine_calls)),
      item("cache hits", `${rate} (${s.cache.backend})`),
      item("recording", s.recording.enabled ? `last ${s.recording.capacity}` : "off"));
    strip.title = s.message;
  } catch (err) {
    strip.replaceChildren(item("status", describe(err), "bad"));
  }
}

// -- start -----------------------------------------------------------------------------------------
function init() {
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  $("#recent-refresh").addEventListener("click", loadRecent);
  initKey();
  initTry();
  refreshHealth();
  setInterval(refreshHealth, 5000);
}

init();
