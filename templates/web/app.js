// derive serve: the page's behaviour. The page state is the URL's query; every answer comes from
// the JSON API. Text from the user or the server goes in with textContent; only the server's
// allow-listed MathML, its SVG and its rendered document go in as markup.
"use strict";

const strings = JSON.parse(document.getElementById("strings").textContent);
const $ = (id) => document.getElementById(id);
const state = new URLSearchParams(location.search);
const FIELDS = ["task", "lang", "example", "spec", "mode", "param", "claim", "derivation", "detail",
                "expr", "at", "gates"];

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function math(markup) {       // allow-listed MathML from the server
  const holder = element("span", {class: "math"});
  holder.innerHTML = markup;
  return holder;
}

function debounce(action, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => action(...args), ms); };
}

function save() {
  const query = new URLSearchParams();
  for (const name of FIELDS) {
    const value = state.get(name);
    if (value) query.set(name, value);
  }
  history.replaceState(null, "", "?" + query.toString());
  const other = new URLSearchParams(query);
  other.set("lang", document.body.dataset.lang === "zh" ? "en" : "zh");
  $("other-lang").href = "?" + other.toString();
  for (const tab of document.querySelectorAll(".tab")) {
    const target = new URLSearchParams(query);
    target.set("task", tab.dataset.task);
    tab.href = "?" + target.toString();
  }
}

function set(name, value) {
  if (value === "" || value === null || value === false) state.delete(name); else state.set(name, value);
  save();
}

async function api(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                                      body: JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
  return {ok: response.ok, status: response.status, data};
}

function source() {
  const example = $("example").value;
  return example ? {example} : {spec: $("spec").value};
}

function errorBox(message) {
  return element("p", {class: "error", role: "alert"}, strings.error + ": ", element("span", {}, message));
}

// ------------------------------------------------------------------ tasks
function showTask(task) {
  for (const name of ["verify", "derive", "graph"]) {
    $("task-" + name).hidden = name !== task;
    document.querySelector(`.tab[data-task="${name}"]`).classList.toggle("active", name === task);
  }
  $("network").hidden = task === "graph";
  set("task", task === "verify" ? "" : task);
}

// ------------------------------------------------------------------ the network
const validate = debounce(async () => {
  const status = $("spec-status");
  if (!$("example").value && !$("spec").value.trim()) { status.textContent = ""; return; }
  const {ok, data} = await api("/api/spec", {...source(), lang: document.body.dataset.lang});
  status.className = "status " + (ok ? "valid" : "invalid");
  if (ok) {
    status.textContent = `${strings.valid}: ${data.sizes.join(" → ")} (${data.activations.join(", ")}; ${data.loss}), ` +
                         data.parameters.join(", ");
    $("parameters").replaceChildren(...data.parameters.map((p) => element("option", {value: p})));
  } else {
    status.textContent = `${strings.invalid}: ${data.error}`;
  }
}, 350);

function chooseExample() {
  const own = !$("example").value;
  $("own-spec").hidden = !own;
  set("example", own ? "" : $("example").value);
  set("spec", own ? $("spec").value : "");
  validate();
}

// ------------------------------------------------------------------ check my derivation
function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function derivationMath(text) {
  let body = text.replace(/\\begin\{(align\*?|aligned)\}/g, "").replace(/\\end\{(align\*?|aligned)\}/g, "").trim();
  body = body.replace(/(\\\\\s*)+$/, "");
  return "\\begin{aligned}" + body + "\\end{aligned}";
}

const preview = debounce(async () => {
  const text = mode() === "claim" ? $("claim").value : $("derivation").value;
  const target = $("preview");
  if (!text.trim()) { target.replaceChildren(); return; }
  const tex = mode() === "claim" ? text : derivationMath(text);
  const {ok, data} = await api("/api/preview", {tex, display: mode() !== "claim"});
  target.replaceChildren(ok ? math(data.mathml) : element("span", {class: "muted"}, strings.no_preview));
}, 250);

function switchMode() {
  const claim = mode() === "claim";
  $("claim-fields").hidden = !claim;
  $("derivation-fields").hidden = claim;
  set("mode", claim ? "" : "derivation");
  preview();
}

function counterexample(c) {
  if (!c) return null;
  const rows = [];
  if (c.sizes) rows.push([strings.sizes, c.sizes.join(" × ")]);
  if (c.problem) rows.push(["", c.problem]);
  if (c.worst_entry) rows.push([strings.entry, "(" + c.worst_entry.join(", ") + ")"]);
  if (c.expected !== undefined && c.expected !== null) rows.push([strings.expected, String(c.expected)]);
  if (c.claimed !== undefined && c.claimed !== null) rows.push([strings.claimed, String(c.claimed)]);
  if (c.expected_shape) rows.push([strings.expected, c.expected_shape.join(" × ")]);
  if (c.claimed_shape) rows.push([strings.claimed, c.claimed_shape.join(" × ")]);
  for (const [name, value] of Object.entries(c.values || {})) rows.push([`${strings.at} ${name}`, JSON.stringify(value)]);
  return element("div", {class: "counterexample"}, element("h3", {}, strings.counterexample),
    element("table", {}, ...rows.map(([k, v]) => element("tr", {}, element("th", {}, k), element("td", {}, v)))));
}

async function verify() {
  const out = $("verify-result");
  out.replaceChildren(element("p", {class: "muted"}, strings.checking));
  const body = {...source()};
  if (mode() === "claim") { body.param = $("param").value.trim(); body.claim = $("claim").value; }
  else { body.derivation = $("derivation").value; if ($("param").value.trim()) body.param = $("param").value.trim(); }
  const {ok, data} = await api("/api/verify", body);
  if (!ok) { out.replaceChildren(errorBox(data.error)); return; }
  const verdict = element("p", {class: "verdict " + data.verdict, "data-verdict": data.verdict},
                          strings["verdict_" + data.verdict] || data.verdict);
  const lines = element("ol", {class: "lines"});
  for (const line of (data.display && data.display.lines) || []) {
    const item = element("li", {class: line.wrong ? "wrong" : "", value: line.line},
                         line.mathml ? math(line.mathml) : element("span", {class: "muted"}, strings.no_preview));
    if (line.wrong && data.display.fix_mathml) {
      item.append(element("span", {class: "fix"}, element("span", {class: "caption"}, strings.corrected + ": "),
                          math(data.display.fix_mathml)));
    }
    lines.append(item);
  }
  const parts = [verdict];
  if (data.first_wrong_line) parts.push(element("p", {}, `${strings.first_wrong}: ${strings.line} ${data.first_wrong_line}`));
  if (lines.children.length) parts.push(lines);
  if (data.display && data.display.fix_mathml && !lines.querySelector(".fix")) {
    parts.push(element("p", {class: "fix"}, element("span", {class: "caption"}, strings.corrected + ": "),
                       math(data.display.fix_mathml)));
  }
  parts.push(element("p", {class: "diagnosis"}, element("strong", {}, strings.diagnosis + ": "), data.diagnosis || ""));
  parts.push(counterexample(data.counterexample));
  out.replaceChildren(...parts.filter(Boolean));
}

// ------------------------------------------------------------------ derive
async function derive() {
  const summary = $("derive-summary");
  summary.replaceChildren(element("p", {class: "muted"}, strings.checking));
  $("derive-document").replaceChildren();
  const {ok, data} = await api("/api/build", {...source(), lang: document.body.dataset.lang, detail: $("detail").value});
  if (!ok) { summary.replaceChildren(errorBox(data.error)); $("downloads").hidden = true; return; }
  const c = data.checks;
  summary.replaceChildren(element("p", {class: "verdict " + (data.passed ? "correct" : "incorrect")},
    `${c.steps} ${strings.steps}, ${c.steps_failed} ${strings.failed}; ` +
    `${c.gradients_match ? strings.gradients_ok : strings.gradients_bad}; ` +
    `${strings.printed}: ${c.printed}, ${strings.read_back} ${c.read_back}, ${strings.correct} ${c.correct}`));
  $("derive-document").innerHTML = data.html;       // derive's own document: user text in it is escaped
  $("downloads").hidden = false;
}

async function download(kind) {
  const button = document.querySelector(`#downloads button[data-kind="${kind}"]`);
  button.disabled = true;
  try {
    const response = await fetch("/api/download", {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({...source(), lang: document.body.dataset.lang, detail: $("detail").value, kind})});
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
      $("derive-summary").append(errorBox(`${strings.download_failed}: ${message}`));
      return;
    }
    const name = (response.headers.get("content-disposition") || "").match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(await response.blob());
    const link = element("a", {href: url, download: name ? name[1] : "derive." + kind});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ graph
function parseValues(text) {
  const at = {};
  for (const part of text.split(/[,;\n]/)) {
    if (!part.trim()) continue;
    const match = part.match(/^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$/);
    if (!match) throw new Error(`${part.trim()}: expected NAME=NUMBER, e.g. x=-2`);
    at[match[1]] = Number(match[2]);
  }
  return at;
}

async function graph() {
  const out = $("graph-result");
  let at;
  try { at = parseValues($("values").value); } catch (e) { out.replaceChildren(errorBox(e.message)); return; }
  out.replaceChildren(element("p", {class: "muted"}, strings.checking));
  const {ok, data} = await api("/api/graph", {expression: $("expression").value, at, gates: $("gates").checked});
  if (!ok) { out.replaceChildren(errorBox(data.error)); return; }
  const figure = element("div", {class: "figure"});
  figure.innerHTML = data.svg;                       // derive's own SVG: numbers and allow-listed MathML
  const inputs = Object.entries(data.inputs).map(([name, v]) => `∂f/∂${name} = ${v.grad}`).join(", ");
  const head = ["#", strings.node, strings.rule, strings.value, strings.local, strings.upstream, strings.grad];
  const table = element("table", {class: "steps"}, element("tr", {}, ...head.map((h) => element("th", {}, h))),
    ...data.rows.map((r) => element("tr", {},
      element("td", {}, r.inputs ? `${r.id} ← ${r.inputs}` : String(r.id)),
      element("td", {}, r.label ? math(r.label) : ""), element("td", {}, r.rule ? math(r.rule) : strings.inputs),
      element("td", {}, r.value), element("td", {}, r.local), element("td", {}, r.upstream), element("td", {}, r.grad))));
  out.replaceChildren(element("p", {class: "verdict correct"}, `f = ${data.output.value}; ${inputs}`), figure, table,
                      element("p", {class: "muted"}, `${strings.check_error}: ${Number(data.check_error).toExponential(1)}`));
}

// ------------------------------------------------------------------ start
function start() {
  const task = state.get("task") || "verify";
  if (state.has("example")) $("example").value = state.get("example");
  if (state.has("spec")) { $("example").value = ""; $("spec").value = state.get("spec"); }
  $("own-spec").hidden = !!$("example").value;
  if (state.get("mode") === "derivation") document.querySelector('input[value="derivation"]').checked = true;
  $("param").value = state.get("param") || "";
  $("claim").value = state.get("claim") || "";
  $("derivation").value = state.get("derivation") || "";
  $("detail").value = state.get("detail") || "normal";
  $("expression").value = state.get("expr") || "";
  $("values").value = state.get("at") || "";
  $("gates").checked = state.get("gates") === "1";

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", (event) => { event.preventDefault(); showTask(tab.dataset.task); });
  }
  $("example").addEventListener("change", chooseExample);
  $("spec").addEventListener("input", () => { set("spec", $("spec").value); validate(); });
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", switchMode);
  $("param").addEventListener("input", () => set("param", $("param").value));
  $("claim").addEventListener("input", () => { set("claim", $("claim").value); preview(); });
  $("derivation").addEventListener("input", () => { set("derivation", $("derivation").value); preview(); });
  $("claim").addEventListener("keydown", (event) => { if (event.key === "Enter") verify(); });
  $("verify-button").addEventListener("click", verify);
  $("detail").addEventListener("change", () => set("detail", $("detail").value === "normal" ? "" : $("detail").value));
  $("derive-button").addEventListener("click", derive);
  for (const button of document.querySelectorAll("#downloads button")) {
    button.addEventListener("click", () => download(button.dataset.kind));
  }
  $("expression").addEventListener("input", () => set("expr", $("expression").value));
  $("values").addEventListener("input", () => set("at", $("values").value));
  $("gates").addEventListener("change", () => set("gates", $("gates").checked ? "1" : ""));
  $("graph-button").addEventListener("click", graph);
  $("expression").addEventListener("keydown", (event) => { if (event.key === "Enter") graph(); });
  $("values").addEventListener("keydown", (event) => { if (event.key === "Enter") graph(); });

  switchMode();
  showTask(task);
  validate();
  if (task === "derive" && state.has("example") || task === "derive" && state.has("spec")) derive();
  if (task === "graph" && $("expression").value) graph();
  document.body.classList.add("ready");
}

start();
