// The stream page (/ws-test/{run_id}). A file, not an inline <script>: the page's CSP runs only this
// origin's files. The run id comes from the page, in <body data-run-id>.
const runId = document.body.dataset.runId;
const form = document.getElementById("auth");
const key = document.getElementById("key");
const statusLine = document.getElementById("status");
const list = document.getElementById("events");
key.value = sessionStorage.getItem("countersign-key") || "";

form.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("countersign-key", key.value);
  list.replaceChildren();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(runId)}`);
  socket.onopen = () => {
    // The credential goes in the first message, never in the URL.
    socket.send(JSON.stringify({ authorization: `Bearer ${key.value}` }));
    statusLine.textContent = "streaming";
  };
  socket.onmessage = (message) => {
    const e = JSON.parse(message.data);
    const item = document.createElement("li");
    item.value = e.seq + 1;
    item.className = `${e.kind} ${e.status || ""}`;
    const took = e.duration_ms == null ? "" : ` (${e.duration_ms} ms)`;
    item.textContent = `${e.at.slice(11, 23)} ${e.kind}${e.node ? " " + e.node : ""}: ${e.message}${took}`;
    list.append(item);
    if (e.kind === "run_ended") statusLine.textContent = e.status;
  };
  socket.onclose = (close) => {
    if (close.code === 1008) statusLine.textContent = "refused: check the key";
    else if (close.code === 1013) statusLine.textContent = "too many failed sign-ins: try again later";
    else if (close.code === 4404) statusLine.textContent = "no such run";
    else if (statusLine.textContent === "streaming") statusLine.textContent = "closed";
  };
});
