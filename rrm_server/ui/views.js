// Result views of one judgment {request, response}: the knockout bracket, the ELO table and win
// matrix, and every match's votes as cards. Built with DOM nodes only (see dom.js).
import { fmt, h, preview } from "./dom.js";

// Every match of a response, pairwise included (its one match is the response's top level).
export function matchesOf(response) {
  if (response.object === "judge.pairwise") {
    const { winner, confidence, p_first, decided_by, position_consistent, tally, votes } = response;
    return [{ pair: [0, 1], round: null, winner, confidence, p_first, decided_by, position_consistent, tally, votes }];
  }
  return response.matches || [];
}

export function methodOf(response) {
  return response.object === "judge.pairwise" ? "pairwise" : response.method;
}

const label = (i) => `#${i}`;

function badge(text, kind = "", title = "") {
  return h("span", { class: `badge ${kind}`.trim(), title: title || undefined }, text);
}

// p(first better) as a bar: the share of the bar is the probability.
function pBar(p, caption = "p(first)") {
  const fill = h("span", { class: "fill" });
  if (p !== null && p !== undefined) fill.style.width = `${Math.round(p * 1000) / 10}%`;
  return h("span", { class: "pbar", title: `${caption} = ${fmt(p, 3)}` },
    h("span", { class: "track" }, fill), h("span", { class: "pval" }, `${caption} ${fmt(p)}`));
}

// -- votes and matches -----------------------------------------------------------------------------
function voteMarks(v) {
  return [
    v.forced && badge("forced", "warn", "verdict read after closing the reasoning: at the thinking budget, a "
      + "rescue, an early exit or the deadline"),
    v.exit && v.exit !== "natural" && badge(`exit: ${v.exit}`, v.exit === "early" ? "good" : "warn",
      "how the thinking ended: early (the verdict was settled), budget (max_thinking_tokens / max_tokens), "
      + "deadline (the request's deadline neared)"),
    v.finish_reason === "length" && badge("max_tokens", "warn", "generation stopped at max_tokens"),
    v.invalid_reason && badge(v.invalid_reason, "bad"),
    badge(v.source, `source-${v.source}`, "computed by this request, served from the cache, or shared with "
      + "an identical comparison in flight"),
  ];
}

export function voteCard(v) {
  const [first, second] = v.shown_order;
  const card = h("article", { class: `vote status-${v.status}`, dataset: { vote: v.index } },
    h("header", {}, h("strong", {}, `vote ${v.index}`), h("span", { class: "muted" }, ` seed ${v.seed}`)),
    h("dl", {},
      h("dt", {}, "shown"), h("dd", {}, `Assistant 1 = ${label(first)}, Assistant 2 = ${label(second)}`),
      h("dt", {}, "verdict"), h("dd", {}, v.verdict ?? "none"),
      h("dt", {}, "status"), h("dd", {}, v.status, v.winner !== null ? ` → ${label(v.winner)} wins` : ""),
      h("dt", {}, "tokens"), h("dd", {}, `${v.prompt_tokens} prompt, ${v.generated_tokens} generated`)),
    pBar(v.p_first),
    h("div", { class: "marks" }, voteMarks(v)));
  if (v.error) card.append(h("p", { class: "error" }, v.error));
  if (v.reasoning !== null && v.reasoning !== undefined) {
    card.append(h("details", { class: "reasoning" }, h("summary", {}, "reasoning"),
      h("pre", { class: "text" }, v.reasoning)));
  }
  return card;
}

function matchMarks(m, request) {
  const asked = request?.votes ?? 1;
  const n = m.votes.length;
  return [
    badge(m.decided_by, m.decided_by === "tiebreak" || m.decided_by === "coin" ? "warn" : ""),
    m.position_consistent === false && badge("position-driven", "bad", "the two presentation orders picked "
      + "different responses"),
    m.position_consistent === true && badge("order-consistent", "good"),
    n < asked && badge(`early stop: ${n} of ${asked} votes`, "", "the majority could no longer change"),
    n > asked && badge(`adaptive: +${n - asked} votes`),
  ];
}

export function matchSection(m, k, request) {
  const [a, b] = m.pair;
  const t = m.tally;
  return h("section", { class: "match", id: `match-${k}`, dataset: { match: k } },
    h("h4", {}, m.round ? `Round ${m.round}: ` : "", `${label(a)} vs ${label(b)}`,
      h("span", { class: "muted" }, m.winner === null ? " — no winner" : ` — ${label(m.winner)} wins`)),
    h("div", { class: "match-line" },
      h("span", {}, `tally ${t.first}–${t.second}`, t.invalid ? ` (${t.invalid} invalid)` : ""),
      h("span", {}, `confidence ${fmt(m.confidence)}`),
      pBar(m.p_first, `p(${label(a)} better)`),
      h("span", { class: "marks" }, matchMarks(m, request))),
    h("div", { class: "votes" }, m.votes.map(voteCard)));
}

// -- knockout --------------------------------------------------------------------------------------
// The bracket rebuilt from the matches: a round-r slot is the match its winner won, or a bye.
function bracketTree(response) {
  const ko = response.matches.filter((m) => m.round !== null);
  const rounds = Math.max(0, ...ko.map((m) => m.round));
  const slot = (player, r) => {
    if (r < 1) return null;
    const k = response.matches.findIndex((m) => m.round === r && m.winner === player);
    if (k < 0) return { bye: true, player, round: r, children: [] };
    const m = response.matches[k];
    return { match: m, k, round: r, children: [slot(m.pair[0], r - 1), slot(m.pair[1], r - 1)].filter(Boolean) };
  };
  return { rounds, root: rounds && response.best !== null ? slot(response.best, rounds) : null };
}

function levels(root, rounds) {
  const out = Array.from({ length: rounds }, () => []);
  const walk = (node) => {
    out[node.round - 1].push(node);
    node.children.forEach(walk);
  };
  if (root) walk(root);
  return out;
}

function entrant(i, texts, won, extra = "") {
  return h("span", { class: `entrant${won ? " won" : ""}`, title: preview(texts[i], 300) },
    h("span", { class: "idx" }, label(i)), h("span", { class: "prev" }, preview(texts[i], 28)), extra);
}

function bracketNode(node, texts, onOpen) {
  if (node.bye) {
    return h("div", { class: "slot bye", dataset: { player: node.player } },
      entrant(node.player, texts, true), h("span", { class: "entrant none" }, "bye"));
  }
  const m = node.match;
  const box = h("button", { type: "button", class: "slot match-box", dataset: { match: node.k },
    onclick: () => onOpen(node.k) },
  m.pair.map((i, side) => entrant(i, texts, m.winner === i, h("span", { class: "score" },
    String(side === 0 ? m.tally.first : m.tally.second)))),
  m.decided_by === "tiebreak" ? badge("tiebreak", "warn", "tied or all-invalid votes: a seeded coin decided")
    : null);
  return box;
}

export function bracketView(request, response, onOpen) {
  const { rounds, root } = bracketTree(response);
  if (!root) return h("p", { class: "muted" }, "No bracket: fewer than two responses were judged.");
  const cols = levels(root, rounds).map((nodes, i) => h("div", { class: "round", dataset: { round: i + 1 } },
    h("h4", {}, i + 1 === rounds ? "Final" : `Round ${i + 1}`),
    h("div", { class: "slots" }, nodes.map((n) => bracketNode(n, request.responses, onOpen)))));
  cols.push(h("div", { class: "round champion" }, h("h4", {}, "Winner"),
    h("div", { class: "slots" }, h("div", { class: "slot" }, entrant(response.best, request.responses, true)))));
  return h("div", { class: "bracket", dataset: { rounds } }, cols);
}

// -- ELO -------------------------------------------------------------------------------------------
function record(response, i) {
  let w = 0, l = 0, d = 0;
  for (const m of response.matches) {
    if (!m.pair.includes(i)) continue;
    if (m.winner === i) w += 1;
    else if (m.winner === null) d += 1;
    else l += 1;
  }
  return `${w}–${l}–${d}`;
}

export function eloTable(request, response) {
  const byIndex = new Map(response.scores.map((s) => [s.index, s]));
  return h("table", { class: "ratings" },
    h("thead", {}, h("tr", {}, ["rank", "response", "rating", "W–L–D", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, response.ranking.map((i, r) => {
      const s = byIndex.get(i) || {};
      return h("tr", { class: i === response.best ? "best" : "" },
        h("td", {}, String(r + 1)), h("td", {}, label(i), " ", h("span", { class: "prev" },
          preview(request.responses[i], 60))),
        h("td", { class: "num" }, s.rating === undefined ? (s.status || "–") : fmt(s.rating, 1)),
        h("td", { class: "num" }, record(response, i)),
        h("td", {}, i === response.best ? badge("best", "good") : ""));
    })));
}

// Cell (row i, column j): the share of valid votes in their match that went to i.
export function winMatrix(request, response) {
  const n = request.responses.length;
  const cell = new Map();
  for (const m of response.matches) {
    const [a, b] = m.pair;
    cell.set(`${a},${b}`, [m.tally.first, m.tally.second]);
    cell.set(`${b},${a}`, [m.tally.second, m.tally.first]);
  }
  const head = h("tr", {}, h("th", {}, "row beat column"), [...Array(n).keys()].map((j) => h("th", {}, label(j))));
  const rows = [...Array(n).keys()].map((i) => h("tr", {}, h("th", {}, label(i)), [...Array(n).keys()].map((j) => {
    if (i === j) return h("td", { class: "diag" }, "");
    const wl = cell.get(`${i},${j}`);
    if (!wl) return h("td", { class: "none", title: "not compared" }, "·");
    const valid = wl[0] + wl[1];
    const td = h("td", { title: `${label(i)} won ${wl[0]} of ${valid} valid votes against ${label(j)}` },
      valid ? `${wl[0]}/${valid}` : "–");
    if (valid) td.style.backgroundColor = `hsl(${Math.round(120 * (wl[0] / valid))}, 60%, 80%)`;
    return td;
  })));
  return h("table", { class: "heatmap" }, h("thead", {}, head), h("tbody", {}, rows));
}

// -- the whole result ------------------------------------------------------------------------------
function usageLine(u) {
  const c = u.cache;
  return h("p", { class: "usage" },
    `${u.engine_calls} engine calls · ${u.prompt_tokens} prompt tokens (${u.cached_prompt_tokens} prefix-cached) · `
    + `${u.generated_tokens} generated · votes ${u.votes_used} used, ${u.votes_saved} saved`
    + `${u.votes_extra ? `, ${u.votes_extra} extra` : ""} · ${u.forced_verdicts} forced · `
    + `${u.failed_judgments} invalid · cache ${c.status}: ${c.hits} hits, ${c.misses} misses, ${c.coalesced} coalesced`);
}

function inputs(request, response) {
  const answers = new Map((response.answers || []).map((a) => [a.index, a]));
  return h("section", { class: "inputs" },
    h("h3", {}, "Query"), h("pre", { class: "text query" }, request.query),
    h("h3", {}, "Responses"),
    h("ol", { class: "responses", start: "0" }, request.responses.map((text, i) => {
      const a = answers.get(i);
      return h("li", { class: i === winnerOf(response) ? "winner" : "", dataset: { response: i } },
        h("div", { class: "resp-head" }, h("strong", {}, label(i)),
          i === winnerOf(response) ? badge("winner", "good") : null,
          a && a.status !== "ok" ? badge(a.status, "bad", "degenerate: lost without a judgment") : null,
          a?.reasoning_stripped ? badge("reasoning stripped", "", "the judge read only the answer") : null,
          a?.dropped_tokens ? badge(`${a.dropped_tokens} tokens cut`) : null),
        h("pre", { class: "text response" }, text));
    })));
}

export function winnerOf(response) {
  return response.object === "judge.pairwise" ? response.winner : response.best;
}

export function resultView(request, response) {
  const method = methodOf(response);
  const matches = matchesOf(response);
  const open = (k) => document.getElementById(`match-${k}`)?.scrollIntoView({ behavior: "smooth" });
  const w = winnerOf(response);
  const parts = [
    h("header", { class: "result-head" },
      h("h2", {}, `${method} · ${request.responses.length} responses`),
      h("p", {}, h("span", { class: "muted" }, "id "), h("code", { class: "result-id" }, response.id),
        h("span", { class: "muted" }, ` · ${response.model} · ${new Date(response.created * 1000).toLocaleString()}`)),
      h("p", { class: "verdict-line" }, w === null ? "No winner" : `Winner: ${label(w)}`,
        response.object === "judge.pairwise" ? h("span", { class: "muted" }, ` (decided by ${response.decided_by})`)
          : null),
      usageLine(response.usage)),
    inputs(request, response),
  ];
  if (method === "knockout") parts.push(h("section", {}, h("h3", {}, "Bracket"), bracketView(request, response, open)));
  if (method === "elo") {
    parts.push(h("section", { class: "elo" }, h("h3", {}, "Ratings"), eloTable(request, response),
      h("h3", {}, "Win matrix"), winMatrix(request, response)));
  }
  parts.push(h("section", { class: "matches" }, h("h3", {}, `Matches (${matches.length})`),
    matches.map((m, k) => matchSection(m, k, request))));
  return h("div", { class: `result method-${method}` }, parts);
}
