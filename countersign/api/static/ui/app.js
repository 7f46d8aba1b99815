// The reviewer's inbox: a keyboard-first client of the gateway's own API. No data is ever written
// into the page as HTML (textContent only), and a decision always names the proposal version shown.
// Rows are requests or graph runs waiting at an approval node (`kind`): a graph run is read from
// /graph/state and decided with /graph/runs/{id}/approve; its node has one version, never named.
import { argsForm, readArgs } from "/ui/form.js";

const KEY_STORE = "countersign-credential";
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
// Whose words a proposal's summary is (`summary_by` in the view and the inbox's rows).
const SUMMARY_LABELS = {
  ai: "AI summary (unverified)",
  caller: "The caller's summary (unverified)",
  countersign: "Summary (from the edited arguments)",
};

const state = {
  credential: sessionStorage.getItem(KEY_STORE),
  me: null,
  config: { temporal_ui_url: "", namespace: "default" },
  tools: new Map(),
  items: [],          // the inbox, most urgent first
  currentId: null,    // the row the cursor is on
  selected: new Map(), // workflow id -> the proposal version seen when it was selected (null: a graph run)
  selecting: new Map(), // workflow id -> its selection, still reading the proposal version
  detail: null,       // the workflow view shown in the detail pane
  filter: "",
  batching: false,    // a batch approval is on its way (a second `A` waits for it)
};

// ---- talking to the gateway -------------------------------------------------------------------

async function api(path, options = {}) {
  // The inbox says so: a decision made here is audited with channel `inbox` (the API's is `api`), or
  // `teams` for the request a Teams card's button opened.
  const channel = options.channel || "inbox";
  const headers = { Authorization: `Bearer ${state.credential}`, "X-Countersign-Channel": channel };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (response.status === 401) signOut("Your key was refused; sign in again.");
  return { ok: response.ok, status: response.status, body };
}

function problem(reply) {
  const detail = reply.body && reply.body.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return detail || `HTTP ${reply.status}`;
}

function say(message) {
  $("result").textContent = message;
}

// ---- signing in -------------------------------------------------------------------------------

async function signIn(credential) {
  state.credential = credential;
  const me = await api("/principals/me");
  if (!me.ok) {
    state.credential = null;
    $("sign-in-error").textContent = me.status === 401 ? "That key or token was not accepted." : problem(me);
    return;
  }
  sessionStorage.setItem(KEY_STORE, credential);
  state.me = me.body.principal;
  const [config, tools] = await Promise.all([api("/ui/config"), api("/tools")]);
  if (config.ok) state.config = config.body;
  if (tools.ok) for (const tool of tools.body.items) state.tools.set(tool.name, tool);
  $("who").textContent = `${state.me.name} · ${state.me.roles.join(", ") || "no roles"} · ${state.me.tenant}`;
  $("sign-in").hidden = true;
  $("inbox").hidden = false;
  $("sign-out").hidden = false;
  $("help-button").hidden = false;
  $("items").focus();  // the sign-in form is gone: keys go to the list
  await refresh();
  setInterval(refresh, REFRESH_MS);
  await openLinked();
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORE);
  state.credential = null;
  $("inbox").hidden = true;
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("help-button").hidden = true;
  $("sign-in-error").textContent = message;
  $("credential").focus();
}

// ---- the list ---------------------------------------------------------------------------------

async function refresh() {
  if (!state.credential) return;
  const reply = await api("/approvals/inbox?limit=200");
  if (!reply.ok) { say(`Could not load the inbox: ${problem(reply)}`); return; }
  state.items = reply.body.items;
  const present = new Set(state.items.map((i) => i.workflow_id));
  for (const id of [...state.selected.keys()]) if (!present.has(id)) state.selected.delete(id);
  if (!present.has(state.currentId)) state.currentId = visible()[0]?.workflow_id ?? null;
  renderList();
  renderSla();
}

function visible() {
  const needle = state.filter.trim().toLowerCase();
  if (!needle) return state.items;
  return state.items.filter((i) =>
    [i.workflow_id, i.text, i.summary, i.request_type, i.graph_id, i.requester, i.state].some((v) => (v || "").toLowerCase().includes(needle)));
}

function renderList() {
  const rows = visible();
  const body = $("items").tBodies[0];
  body.replaceChildren(...rows.map(row));
  $("count").textContent = `(${rows.length})`;
  $("empty").hidden = rows.length > 0;
  const picked = state.selected.size + state.selecting.size;
  $("approve-selected").disabled = picked === 0;
  $("approve-selected").textContent = `Approve selected (A)${picked ? ` · ${picked}` : ""}`;
}

function row(item) {
  const tr = document.createElement("tr");
  tr.dataset.id = item.workflow_id;
  const escalated = item.state === "ESCALATED";
  tr.classList.toggle("current", item.workflow_id === state.currentId);
  tr.classList.toggle("escalated", escalated);
  if (item.workflow_id === state.currentId) tr.setAttribute("aria-current", "true");

  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.checked = state.selected.has(item.workflow_id) || state.selecting.has(item.workflow_id);
  pick.setAttribute("aria-label", `Select ${item.workflow_id}`);
  pick.addEventListener("click", (event) => { event.stopPropagation(); toggleSelect(item.workflow_id); });

  const text = document.createElement("td");
  const line = document.createElement("div");
  line.textContent = item.text || item.workflow_id;
  const meta = document.createElement("div");
  meta.className = "muted";
  meta.textContent = `${item.workflow_id} · ${item.awaiting_role || ""}`;
  text.append(line);
  if (item.summary) {
    // The current version's summary, labelled with whose words it is (an edited version's is built
    // by Countersign from its arguments).
    const summary = document.createElement("div");
    summary.className = "summary";
    summary.textContent = `${SUMMARY_LABELS[item.summary_by] || SUMMARY_LABELS.ai}: ${item.summary}`;
    text.append(summary);
  }
  text.append(meta);
  if (escalated) text.prepend(badge("escalated", "Escalated"));
  const graph = item.kind === "graph_run";
  const type = graph ? badge("graph", "Graph") : item.request_type || "";

  tr.append(cell(pick), text, cell(type), cell(item.amount == null ? "" : money(item.amount)),
    cell(until(item.sla_due_at)));
  tr.addEventListener("click", () => { state.currentId = item.workflow_id; renderList(); open(item.workflow_id); });
  return tr;
}

function cell(content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content); else td.textContent = content;
  return td;
}

function badge(kind, label) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = label;
  return span;
}

function money(amount) {
  return amount.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function until(iso) {
  if (!iso) return "";
  const minutes = Math.round((new Date(iso).getTime() - Date.now()) / 60000);
  const span = Math.abs(minutes);
  const text = span >= 1440 ? `${Math.floor(span / 1440)}d ${Math.floor((span % 1440) / 60)}h`
    : span >= 60 ? `${Math.floor(span / 60)}h ${span % 60}m` : `${span}m`;
  return minutes < 0 ? `overdue ${text}` : `in ${text}`;
}

function move(step) {
  const rows = visible();
  if (!rows.length) return;
  const at = rows.findIndex((i) => i.workflow_id === state.currentId);
  const next = Math.min(rows.length - 1, Math.max(0, (at < 0 ? 0 : at + step)));
  state.currentId = rows[next].workflow_id;
  renderList();
  document.querySelector("#items tr.current")?.scrollIntoView({ block: "nearest" });
}

async function toggleSelect(id) {
  if (state.selected.has(id) || state.selecting.has(id)) {
    state.selected.delete(id);
    state.selecting.delete(id); // a selection still reading its version is dropped when the read lands
    renderList();
    return;
  }
  // The version is read now, so a batch approves what was there when the reviewer picked it. The row is
  // selected from the key press on, not from the answer: `A` pressed meanwhile waits for the read
  // (approveSelected), where it used to find nothing selected.
  const selection = isGraph(id) ? Promise.resolve(null) : readVersion(id);
  state.selecting.set(id, selection);
  renderList();
  const version = await selection;
  if (state.selecting.get(id) !== selection) return; // unselected meanwhile
  state.selecting.delete(id);
  if (version !== null || isGraph(id)) state.selected.set(id, version);
  renderList();
}

function isGraph(id) {
  return state.items.some((i) => i.workflow_id === id && i.kind === "graph_run");
}

async function readVersion(id) {
  let view;
  try {
    view = await api(`/workflows/${encodeURIComponent(id)}`);
  } catch (error) {
    view = { ok: false, status: 0, body: { detail: `${error}` } }; // the network: still a settled read
  }
  if (view.ok && view.body.proposal) return view.body.proposal.version;
  say(`Cannot select ${id}: ${view.ok ? "it has no proposal to approve" : problem(view)}`);
  return null;
}

// ---- the detail pane --------------------------------------------------------------------------

async function open(id) {
  const graph = isGraph(id);
  const reply = await api(graph ? `/graph/state/${encodeURIComponent(id)}` : `/workflows/${encodeURIComponent(id)}`);
  if (!reply.ok) { say(`Could not open ${id}: ${problem(reply)}`); return; }
  state.detail = graph ? graphDetail(reply.body) : reply.body;
  renderDetail();
}

// A graph run in the shape the pane shows a request in: its node's prompt as the text, the node's one
// step as the chain, the run's log as the timeline, its shared data as the arguments.
function graphDetail(run) {
  const waiting = run.waiting;
  return {
    kind: "graph_run",
    run,
    workflow_id: run.run_id,
    request: { text: waiting ? waiting.prompt : `Graph ${run.graph_id} v${run.version}: ${run.status}` },
    proposal: null,
    validation: null,
    chain: waiting ? [waiting.step] : [],
    current_step: waiting ? 0 : null,
    audit: [],
  };
}

function renderDetail() {
  const view = state.detail;
  const proposal = view.proposal;
  const run = view.kind === "graph_run" ? view.run : null;
  $("detail-title").textContent = view.workflow_id;
  $("detail-body").hidden = false;
  // A caller's own action may come without words: say what it is from its tool, not from anything it wrote.
  const action = view.request.action;
  $("d-text").textContent = view.request.text || (action ? `A caller proposes ${action.tool} (no planner ran)` : "");
  const context = view.request.context;
  $("d-context").textContent = context == null ? "" : typeof context === "string" ? context : JSON.stringify(context, null, 2);
  $("d-summary").textContent = run
    ? `Graph ${run.graph_id} v${run.version}${run.waiting ? `, approval node ${run.waiting.node}` : ""} (${run.status})`
    : proposal ? proposal.summary : "";
  renderSummaryAuthor(view, proposal);
  $("d-tool").textContent = run ? "(graph approval node)" : proposal ? proposal.tool : "(no proposal)";
  $("d-version").textContent = proposal ? `version ${proposal.version}${proposal.edited_by ? `, edited by ${proposal.edited_by}` : ""}` : "";
  $("d-confidence").value = proposal ? proposal.confidence : 0;
  $("d-confidence-text").textContent = proposal ? `${Math.round(proposal.confidence * 100)}%` : "";
  $("d-rationale").textContent = proposal ? proposal.rationale : "";
  const findings = view.validation ? view.validation.findings : [];
  $("d-findings").replaceChildren(...(findings.length ? findings : [{ message: "none" }]).map((f) => li(f.message)));
  if (view.validation && view.validation.needs_triage) $("d-findings").prepend(li("", badge("triage", "Needs triage"))); 
  renderSla();
  const ui = state.config.temporal_ui_url;
  $("d-temporal").href = ui ? `${ui}/namespaces/${encodeURIComponent(state.config.namespace)}/workflows/${encodeURIComponent(view.workflow_id)}` : "#";

  const args = run ? Object.entries(run.data) : proposal ? Object.entries(proposal.args) : [];
  $("d-args").tBodies[0].replaceChildren(...args.map(([name, value]) => {
    const tr = document.createElement("tr");
    tr.append(cell(name), cell(typeof value === "string" ? value : JSON.stringify(value)));
    return tr;
  }));
  $("d-chain").replaceChildren(...view.chain.map((s) => {
    // A step of several roles (any_of) counts people from a list, and says which role each one used.
    const several = (s.any_of || []).length > 0;
    const what = several ? `${s.quorum} of ${s.any_of.join(" | ")}` : `${s.quorum} × ${s.role}`;
    const who = s.decisions.map((d) => `${d.reviewer_name} ${d.decision}${several ? ` as ${d.role}` : ""}${d.notes ? ` (“${d.notes}”)` : ""}`).join("; ");
    return li(`${what}: ${s.status}${s.escalated ? ", escalated" : ""}${who ? ` — ${who}` : ""}`);
  }));
  $("d-audit").replaceChildren(...(run ? run.logs.map((line) => li(line)) : view.audit.map((e) =>
    li(`${new Date(e.at).toLocaleTimeString()} ${e.event} · ${e.actor}${e.detail ? ` — ${e.detail}` : ""}`))));
}

// Whose words the summary is; for an edited version (its summary built from its arguments) the AI's
// summary of version 1 too, marked as unverified.
function renderSummaryAuthor(view, proposal) {
  const by = proposal ? view.summary_by || (proposal.ai_summary ? "countersign" : proposal.planner === "caller" ? "caller" : "ai") : null;
  $("d-summary-by").textContent = by === "countersign" ? "(from the edited arguments)"
    : by === "caller" ? "(the caller's words, unverified)" : by === "ai" ? "(the AI's words, unverified)" : "";
  const first = proposal && proposal.ai_summary ? proposal.ai_summary : null;
  $("d-ai-summary-term").hidden = first === null;
  $("d-ai-summary").hidden = first === null;
  $("d-ai-summary-term").textContent = proposal && proposal.planner === "caller"
    ? "Caller's summary of v1 (unverified)" : "AI summary of v1 (unverified)";
  $("d-ai-summary").textContent = first || "";
}

// Called on every refresh too, so the countdown stays current while the reviewer reads.
function renderSla() {
  const view = state.detail;
  const step = !view || view.current_step == null ? null : view.chain[view.current_step];
  $("d-sla").textContent = step && step.sla_due_at ? `${until(step.sla_due_at)} (${new Date(step.sla_due_at).toLocaleString()})` : "";
}

function li(text, extra) {
  const item = document.createElement("li");
  item.textContent = text;
  if (extra) item.append(extra);
  return item;
}

// ---- decisions --------------------------------------------------------------------------------

// Only what the reviewer sees may be decided: the detail pane must show the current row.
function shown() {
  if (!state.currentId) return null;
  if (!state.detail || state.detail.workflow_id !== state.currentId) {
    open(state.currentId);
    say("Opened the request: read it, then decide.");
    return null;
  }
  if (state.detail.kind === "graph_run") {
    if (!state.detail.run.waiting) { say("This run waits on no approval node."); return null; }
    return state.detail;
  }
  if (!state.detail.proposal) { say("There is no proposal to decide on."); return null; }
  return state.detail;
}

async function decide(decision, notes) {
  const view = shown();
  if (!view) return;
  const id = view.workflow_id;
  const graph = view.kind === "graph_run";
  const channel = state.via && state.via.id === id ? state.via.channel : "inbox";
  const reply = graph
    ? await api(`/graph/runs/${encodeURIComponent(id)}/approve`, { method: "POST", channel, body: { decision, notes: notes || null } })
    : await api(`/workflows/${encodeURIComponent(id)}/approve`, {
      method: "POST",
      channel,
      body: { decision, notes: notes || null, proposal_version: view.proposal.version },
    });
  if (reply.ok && channel !== "inbox") state.via = null;
  if (!reply.ok) { say(`${id}: not ${decision} — ${problem(reply)}`); return; }
  say(`${id}: ${decision} (now ${graph ? reply.body.status : reply.body.state})`);
  afterDecision(id);
}

function afterDecision(id) {
  state.selected.delete(id);
  move(1);
  if (state.currentId && state.currentId !== id) open(state.currentId);
  refresh();
}

function askReject() {
  if (!shown()) return;
  $("reason").value = "";
  $("reject-error").textContent = "";
  $("reject-dialog").showModal();
  $("reason").focus();
}

async function submitReject(event) {
  event.preventDefault();
  const reason = $("reason").value.trim();
  if (!reason) { $("reject-error").textContent = "A rejection needs a reason."; $("reason").focus(); return; }
  $("reject-dialog").close();
  await decide("rejected", reason);
}

function askEdit() {
  const view = shown();
  if (!view) return;
  if (view.kind === "graph_run") { say("A graph approval node has nothing to edit: approve or reject it."); return; }
  const tool = state.tools.get(view.proposal.tool);
  if (!tool) { say(`No form for ${view.proposal.tool}.`); return; }
  $("edit-fields").replaceChildren(...argsForm(tool.args_schema, view.proposal.args));
  $("edit-notes").value = "";
  $("edit-error").textContent = "";
  $("edit-dialog").showModal();
  $("edit-fields").querySelector("input, select, textarea")?.focus();
}

async function submitEdit(event) {
  event.preventDefault();
  const form = $("edit-form");
  if (!form.reportValidity()) return;
  const view = state.detail;
  const tool = state.tools.get(view.proposal.tool);
  const args = readArgs(tool.args_schema, $("edit-fields"));
  const reply = await api(`/workflows/${encodeURIComponent(view.workflow_id)}/edit`, {
    method: "POST",
    body: { proposal_version: view.proposal.version, args, notes: $("edit-notes").value || null },
  });
  if (!reply.ok) { $("edit-error").textContent = problem(reply); return; }
  $("edit-dialog").close();
  state.detail = reply.body;
  renderDetail();
  say(`${view.workflow_id}: edited, now version ${reply.body.proposal ? reply.body.proposal.version : "?"}`);
  refresh();
}

async function approveSelected() {
  // A second `A` while a batch is on its way would send the same decisions again: one batch at a time.
  if (state.batching) { say("The batch is on its way…"); return; }
  state.batching = true;
  try { await sendBatch(); } finally { state.batching = false; }
}

async function sendBatch() {
  // Selections made just before `A` may still be reading their versions: they are part of the batch.
  // (Each read settles, failed or not, and toggleSelect moves it on before this resumes.)
  while (state.selecting.size) await Promise.all([...state.selecting.values()]);
  if (!state.selected.size) { say("Select requests with x first."); return; }
  // A graph run's item names no version: its approval node has one.
  const items = [...state.selected].map(([workflow_id, proposal_version]) =>
    (proposal_version === null ? { workflow_id } : { workflow_id, proposal_version }));
  const reply = await api("/approvals/batch", { method: "POST", body: { items, decision: "approved" } });
  if (!reply.ok) { say(`Batch refused: ${problem(reply)}`); return; }
  const done = reply.body.results.filter((r) => r.ok).length;
  const failed = reply.body.results.filter((r) => !r.ok);
  say(`Approved ${done} of ${items.length}` + (failed.length ? `; refused: ${failed.map((r) => `${r.workflow_id} (${r.detail})`).join(", ")}` : ""));
  for (const result of reply.body.results) if (result.ok) state.selected.delete(result.workflow_id);
  refresh();
}

// ---- links into the inbox ---------------------------------------------------------------------

// `#/requests/{id}` opens that request (a link in a Teams card or an email); `?decide=approve|reject`
// (a card's Approve… / Reject…) then puts the reviewer on that action. Nothing is decided on load: a
// link may be opened by a preview or a scanner. Approving still takes the button (or `a`), rejecting the
// reason dialog's submit, by the reviewer signed in here.
function linkedRequest() {
  const match = /^#\/requests\/([^?]+)(?:\?(.*))?$/.exec(window.location.hash);
  if (!match) return null;
  let id;
  try { id = decodeURIComponent(match[1]); } catch { return null; }
  const query = new URLSearchParams(match[2] || "");
  const decide = query.get("decide");
  return {
    id,
    decide: decide === "approve" || decide === "reject" ? decide : null,
    via: query.get("via") === "teams" ? "teams" : null,
  };
}

async function openLinked() {
  const link = linkedRequest();
  if (!link || !state.credential) return;
  // Once applied, the link is just the request's: a reload does not ask again.
  if (link.decide || link.via) window.history.replaceState(null, "", `#/requests/${encodeURIComponent(link.id)}`);
  // Where the reviewer came from, for the decision on this request only.
  state.via = link.via ? { id: link.id, channel: link.via } : null;
  state.currentId = link.id;
  renderList();
  await open(link.id);
  if (!state.detail || state.detail.workflow_id !== link.id) return;
  if (link.decide === "approve") {
    $("approve").focus();
    say(`${link.id}: read it, then press Approve (a) to confirm.`);
  } else if (link.decide === "reject") {
    askReject();
  }
}

// ---- keyboard ---------------------------------------------------------------------------------

const KEYS = {
  j: () => move(1),
  k: () => move(-1),
  Enter: () => state.currentId && open(state.currentId),
  a: () => decide("approved"),
  r: () => askReject(),
  e: () => askEdit(),
  x: () => state.currentId && toggleSelect(state.currentId),
  A: () => approveSelected(),
  "/": () => $("filter").focus(),
  "?": () => $("help").showModal(),
};

function onKey(event) {
  if ($("inbox").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector("dialog[open]")) return;
  const target = event.target;
  if (target.matches && target.matches("input, textarea, select")) {
    if (event.key === "Escape") target.blur();
    if (target.type !== "checkbox") return;
  }
  if (target.matches && target.matches("button, a") && event.key === "Enter") return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

// ---- wiring -----------------------------------------------------------------------------------

$("sign-in").addEventListener("submit", (event) => { event.preventDefault(); signIn($("credential").value.trim()); });
$("sign-out").addEventListener("click", () => signOut());
$("help-button").addEventListener("click", () => $("help").showModal());
$("filter").addEventListener("input", (event) => { state.filter = event.target.value; renderList(); });
$("approve-selected").addEventListener("click", approveSelected);
$("approve").addEventListener("click", () => decide("approved"));
$("reject").addEventListener("click", askReject);
$("edit").addEventListener("click", askEdit);
$("reject-form").addEventListener("submit", submitReject);
$("reject-cancel").addEventListener("click", () => $("reject-dialog").close());
$("edit-form").addEventListener("submit", submitEdit);
$("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
document.addEventListener("keydown", onKey);
window.addEventListener("hashchange", openLinked);

if (state.credential) signIn(state.credential); else $("credential").focus();
