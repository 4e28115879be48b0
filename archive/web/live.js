// The live page: server-sent events (/live/events) into the tables the server rendered.
// No framework and no inline script (the console's CSP): labels and the CSRF token come
// from the page itself; every value is set as text, never as HTML.
"use strict";
(function () {
  const page = document.getElementById("live");
  if (!page || !window.EventSource) return;
  const labels = JSON.parse(page.dataset.labels);
  const alerts = document.getElementById("alerts");
  const devices = document.getElementById("devices");
  const state = document.getElementById("live-state");
  const csrf = page.dataset.csrf;
  const mayAck = page.dataset.mayAck === "1";

  function cell(row, text, cls) {
    const td = row.insertCell(-1);
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function label(prefix, key) {
    return labels[prefix + key] || key;
  }
  function ackForm(td, device, seq) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/live/ack";
    form.className = "inline ack";
    for (const [name, value] of [["csrf", csrf], ["device", device], ["seq", String(seq)]]) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = labels["live.ack"];
    form.appendChild(button);
    td.appendChild(form);
  }
  function onAlert(d) {
    const empty = document.getElementById("no-alerts");
    if (empty) empty.remove();
    const row = alerts.insertRow(1);
    row.className = d.genuine ? "alert genuine" : "alert flagged";
    row.dataset.device = d.device;
    row.dataset.seq = d.seq == null ? "" : String(d.seq);
    row.dataset.verdict = d.verdict;
    cell(row, d.utc);
    cell(row, d.device + (d.seq == null ? "" : " #" + d.seq));
    cell(row, d.officer);
    cell(row, label("alert.", d.kind) + (d.level ? " " + d.level : ""));
    cell(row, d.detail);
    cell(row, label("verdict.", d.verdict) + (d.problem ? ": " + d.problem : ""),
         d.genuine ? "ok" : "bad");
    const td = cell(row, "", "ack-cell");
    if (mayAck && d.ackable) ackForm(td, d.device, d.seq);
  }
  function onStatus(d) {
    let row = devices.querySelector('tr[data-device="' + CSS.escape(d.device) + '"]');
    if (!row) {
      row = devices.insertRow(-1);
      row.dataset.device = d.device;
    }
    row.replaceChildren();
    row.dataset.online = d.online ? "1" : "0";
    cell(row, d.device);
    cell(row, d.officer);
    cell(row, d.online ? labels["live.online"] : labels["live.offline"], d.online ? "ok" : "bad");
    cell(row, d.text);
    cell(row, d.utc);
  }
  function onAck(d) {
    const rows = alerts.querySelectorAll('tr[data-device="' + CSS.escape(d.device) + '"]');
    for (const row of rows) {
      if (row.dataset.seq === String(d.seq)) {
        const td = row.querySelector(".ack-cell");
        if (td) td.textContent = labels["live.acked"].replace("{by}", d.by);
      }
    }
  }
  const source = new EventSource("/live/events?after=" + encodeURIComponent(page.dataset.lastId));
  source.addEventListener("open", () => { state.textContent = labels["live.connected"]; });
  source.addEventListener("error", () => { state.textContent = labels["live.disconnected"]; });
  source.addEventListener("alert", (e) => onAlert(JSON.parse(e.data)));
  source.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  source.addEventListener("ack", (e) => onAck(JSON.parse(e.data)));
})();
