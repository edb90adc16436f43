/*
 * keybroker dashboard: hand-written, no framework, no build step, nothing fetched from elsewhere.
 *
 * Every value from the gateway is written with textContent (never innerHTML), so a bot name, an
 * exchange's error text or an audit detail can never become markup. Pages poll their JSON
 * (/_/dashboard/api/...) every second while visible; audit and alerts fetch only rows newer than
 * the last one shown. Actions POST JSON with the page's CSRF token and the confirmed target.
 */
(function () {
  "use strict";

  var body = document.body;
  var pageName = body.dataset.page;
  if (pageName === "login") {
    var field = document.getElementById("token");
    if (field) field.focus();
    return;
  }
  var prefix = body.dataset.prefix;
  var csrf = body.dataset.csrf;
  var content = document.getElementById("content");
  var statusLine = document.getElementById("status");
  var POLL_MS = 1000;

  // -- small DOM helpers -------------------------------------------------------------------

  function el(tag, options) {
    var node = document.createElement(tag);
    options = options || {};
    if (options.cls) node.className = options.cls;
    if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
    if (options.attrs) {
      Object.keys(options.attrs).forEach(function (key) { node.setAttribute(key, options.attrs[key]); });
    }
    (options.children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function badge(text, kind) { return el("span", { cls: "badge " + kind, text: text }); }

  function cell(value, cls) {
    var td = el("td", { cls: cls || "" });
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    return td;
  }

  function table(headings, id) {
    var thead = el("thead", { children: [el("tr", { children: headings.map(function (h) { return el("th", { text: h }); }) })] });
    var tbody = el("tbody");
    var node = el("table", { children: [thead, tbody] });
    if (id) node.id = id;
    return { node: node, body: tbody };
  }

  function shortTime(iso) {
    if (!iso) return "–";
    return String(iso).replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z");
  }

  function number(value, digits) {
    if (value === null || value === undefined) return "–";
    var n = Number(value);
    if (!isFinite(n)) return String(value);
    return n.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 2 : digits });
  }

  // -- talking to the gateway ------------------------------------------------------------

  function loginAgain() { window.location.assign(prefix + "/login"); }

  function getJson(path) {
    return fetch(prefix + "/api/" + path, {
      headers: { accept: "application/json" }, cache: "no-store", credentials: "same-origin",
    }).then(function (response) {
      if (response.status === 401) { loginAgain(); throw new Error("logged out"); }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function postAction(action, payload) {
    return fetch(prefix + "/api/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-keybroker-csrf": csrf },
      body: JSON.stringify(payload),
    }).then(function (response) {
      if (response.status === 401) { loginAgain(); throw new Error("logged out"); }
      return response.json().then(function (answer) {
        if (!response.ok) throw new Error(answer.detail || ("HTTP " + response.status));
        return answer;
      });
    });
  }

  function showStatus(ok, text) {
    clear(statusLine);
    statusLine.className = ok ? "status" : "status lost";
    statusLine.appendChild(el("span", { cls: "dot" }));
    statusLine.appendChild(document.createTextNode(text));
  }

  function poll(load, every) {
    var timer = null;
    var wait = every || POLL_MS;
    function tick() {
      if (document.hidden) { timer = setTimeout(tick, wait); return; }
      load().then(function () {
        showStatus(true, "Live · updated " + new Date().toLocaleTimeString());
      }).catch(function (error) {
        showStatus(false, "Not updating: " + error.message + " (retrying)");
      }).then(function () { timer = setTimeout(tick, wait); });
    }
    tick();
    return { now: function () { clearTimeout(timer); tick(); } };
  }

  // -- confirmation --------------------------------------------------------------------

  function confirmAction(text, askReason) {
    var dialog = document.getElementById("confirm");
    var reason = document.getElementById("confirm-reason");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-reason-label").hidden = !askReason;
    reason.value = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        resolve({ ok: dialog.returnValue === "ok", reason: reason.value });
      });
      dialog.returnValue = "cancel";
      dialog.showModal();
    });
  }

  function act(action, field, target, question, askReason, after) {
    confirmAction(question, askReason).then(function (answer) {
      if (!answer.ok) return;
      var payload = { confirm: target, reason: answer.reason };
      payload[field] = target;
      postAction(action, payload).then(function (result) {
        showStatus(true, result.detail);
        after();
      }).catch(function (error) { showStatus(false, "Refused: " + error.message); });
    });
  }

  // -- overview --------------------------------------------------------------------------

  function overviewPage() {
    var summary = el("div", { cls: "summary", attrs: { id: "summary" } });
    var toolbar = el("div", { cls: "toolbar" });
    var haltAll = el("button", { cls: "danger", text: "Halt all", attrs: { id: "halt-all", type: "button" } });
    var resumeAll = el("button", { text: "Resume all", attrs: { id: "resume-all", type: "button" } });
    toolbar.appendChild(haltAll);
    toolbar.appendChild(resumeAll);
    var grid = table(["Credential", "Exchange", "Environment", "Mode", "Scopes", "Key age",
      "Rotation", "Orders", "Breaker", "Last error", ""], "credentials");
    content.appendChild(summary);
    content.appendChild(toolbar);
    content.appendChild(grid.node);
    var poller;

    haltAll.addEventListener("click", function () {
      act("halt", "credential", "*", "Halt new orders on EVERY credential? Cancels and reads still pass.",
        true, function () { poller.now(); });
    });
    resumeAll.addEventListener("click", function () {
      act("resume", "credential", "*", "Lift every halt, so orders flow again on all credentials?",
        false, function () { poller.now(); });
    });

    function render(doc) {
      clear(summary);
      [["Credentials", doc.credentials.length], ["Forwarded", doc.requests.forwarded],
        ["Denied", doc.requests.denied], ["Rate-limited", doc.requests.rate_limited],
        ["No answer", doc.requests.no_answer]].forEach(function (pair) {
        summary.appendChild(el("div", { children: [el("b", { text: pair[1] }), el("span", { text: pair[0] })] }));
      });
      if (doc.all_halted) summary.appendChild(el("div", { children: [badge("ALL HALTED", "bad")] }));
      clear(grid.body);
      if (!doc.credentials.length) {
        grid.body.appendChild(el("tr", { children: [el("td", { cls: "empty", text: "No credentials in the vault yet (keybroker keys add).", attrs: { colspan: "11" } })] }));
      }
      doc.credentials.forEach(function (c) {
        var rotation = c.rotation === "ok" ? badge("ok", "ok") : badge(c.rotation, c.rotation === "due" ? "bad" : "warn");
        var halted = c.halted ? badge("halted", "bad") : badge("trading", "ok");
        var breaker = c.breaker === "open" ? badge("open until " + shortTime(c.breaker_until), "bad") : badge("closed", "muted");
        var mode = badge(c.mode, c.mode === "paper" ? "info" : "muted");
        var button;
        if (c.halted) {
          button = el("button", { text: "Resume", attrs: { type: "button", "data-action": "resume", "data-credential": c.name } });
          button.addEventListener("click", function () {
            act("resume", "credential", c.name, "Resume " + c.name + "? New orders will be signed and sent again.",
              false, function () { poller.now(); });
          });
        } else {
          button = el("button", { cls: "danger", text: "Halt", attrs: { type: "button", "data-action": "halt", "data-credential": c.name } });
          button.addEventListener("click", function () {
            act("halt", "credential", c.name, "Halt new orders for " + c.name + "? Cancels and reads still pass.",
              true, function () { poller.now(); });
          });
        }
        var lastError = c.last_error
          ? el("span", { children: [el("span", { cls: "error-text", text: c.last_error.text }), el("br"), el("small", { text: shortTime(c.last_error.time) })] })
          : "–";
        var row = el("tr", { attrs: { "data-credential": c.name } });
        [cell(el("b", { text: c.name })), cell(c.exchange), cell(c.environment), cell(mode),
          cell(c.scopes.join(", ")), cell(number(c.key_age_days, 1) + " d", "num"), cell(rotation),
          cell(halted), cell(breaker), cell(lastError), cell(button)].forEach(function (td) { row.appendChild(td); });
        grid.body.appendChild(row);
      });
    }

    poller = poll(function () { return getJson("overview").then(render); });
  }

  // -- rate limits -----------------------------------------------------------------------

  function limitsPage() {
    var summary = el("div", { cls: "summary" });
    var grid = table(["Bucket", "Limit", "Counts", "Used", "Use", "Waiting", "Paused until"], "budgets");
    var blocks = el("div");
    content.appendChild(summary);
    content.appendChild(grid.node);
    content.appendChild(blocks);

    function render(doc) {
      clear(summary);
      var t = doc.totals || {};
      [["Granted", t.granted], ["Waited", t.waited], ["Refused (429 by the gateway)", t.rejected],
        ["Waiting now", t.waiting]].forEach(function (pair) {
        summary.appendChild(el("div", { children: [el("b", { text: pair[1] === undefined ? "–" : pair[1] }), el("span", { text: pair[0] })] }));
      });
      clear(grid.body);
      if (!doc.budgets.length) {
        grid.body.appendChild(el("tr", { children: [el("td", { cls: "empty", text: "No budget has been spent from yet: buckets appear with the first request.", attrs: { colspan: "7" } })] }));
      }
      doc.budgets.forEach(function (b) {
        var share = b.capacity ? Math.min(1, Number(b.used) / Number(b.capacity)) : 0;
        var fill = el("div", { cls: "fill" + (share > 0.9 ? " bad" : share > 0.7 ? " warn" : "") });
        fill.style.width = (share * 100).toFixed(1) + "%";
        var bar = el("div", { cls: "bar", attrs: { title: (share * 100).toFixed(1) + "%" }, children: [fill] });
        var row = el("tr", { attrs: { "data-bucket": b.key } });
        [cell(b.key, "mono"), cell(number(b.capacity) + " / " + number(b.per_seconds) + " s", "num"), cell(b.counts),
          cell(number(b.used, 3), "num"), cell(bar), cell(b.waiting, "num"),
          cell(b.paused_until_ms ? shortTime(new Date(b.paused_until_ms).toISOString()) : "–")].forEach(function (td) { row.appendChild(td); });
        grid.body.appendChild(row);
      });
      clear(blocks);
      blocks.appendChild(el("h2", { text: "Breakers (418: the exchange banned this IP)" }));
      blocks.appendChild(doc.breakers.length
        ? listTable(["Host", "Closed again at"], doc.breakers.map(function (b) { return [b.host, shortTime(b.until)]; }))
        : el("p", { cls: "empty", text: "None open." }));
      blocks.appendChild(el("h2", { text: "Pauses (429 with Retry-After)" }));
      blocks.appendChild(doc.pauses.length
        ? listTable(["Budget prefix", "Until"], doc.pauses.map(function (p) { return [p.key, shortTime(p.until)]; }))
        : el("p", { cls: "empty", text: "None." }));
    }

    poll(function () { return getJson("limits").then(render); });
  }

  function listTable(headings, rows) {
    var t = table(headings);
    rows.forEach(function (values) {
      t.body.appendChild(el("tr", { children: values.map(function (v) { return cell(v); }) }));
    });
    return t.node;
  }

  // -- audit -----------------------------------------------------------------------------

  function orderText(order) {
    if (!order) return "–";
    var parts = [order.side, order.type, order.quantity, order.symbol];
    if (order.price) parts.push("@ " + order.price);
    if (order.quote_quantity) parts.push("quote " + order.quote_quantity);
    if (order.batch_size) parts.push("(batch of " + order.batch_size + ")");
    return parts.filter(Boolean).join(" ");
  }

  function outcomeText(row) {
    if (row.kind === "denied") return "denied: " + (row.rule || "") + (row.detail ? " — " + row.detail : "");
    if (row.kind === "result") {
      if (row.status === null || row.status === undefined) return "no answer: " + (row.detail || "");
      var text = "HTTP " + row.status;
      if (row.venue_code) text += " code " + row.venue_code;
      if (row.latency_ms !== null && row.latency_ms !== undefined) text += " · " + number(row.latency_ms, 1) + " ms";
      if (row.detail) text += " · " + row.detail;
      return text;
    }
    if (row.kind === "intent") return "sent, waiting for the answer";
    return row.detail || "";
  }

  function auditRow(row) {
    var decision = row.decision === "deny" ? badge("deny", "bad") : row.decision === "allow" ? badge("allow", "ok") : "–";
    var tr = el("tr", { cls: "fresh", attrs: { "data-row": String(row.id), "data-kind": row.kind } });
    var outcome = cell(outcomeText(row));
    outcome.setAttribute("data-outcome", "");
    [cell(row.id, "num"), cell(shortTime(row.time)), cell(row.kind), cell(row.bot), cell(row.credential),
      cell(row.request_kind), cell((row.method || "") + " " + (row.path || ""), "mono"), cell(orderText(row.order)),
      cell(decision), outcome].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function auditPage() {
    var filters = { bot: "all", credential: "all", kind: "all", decision: "all" };
    var toolbar = el("div", { cls: "toolbar" });
    var selects = {};
    [["bot", "Bot"], ["credential", "Credential"], ["kind", "Kind"], ["decision", "Decision"]].forEach(function (pair) {
      var select = el("select", { attrs: { id: "filter-" + pair[0] } });
      select.appendChild(el("option", { text: "all", attrs: { value: "all" } }));
      selects[pair[0]] = select;
      toolbar.appendChild(el("label", { children: [pair[1] + " ", select] }));
      select.addEventListener("change", function () { filters[pair[0]] = select.value; restart(); });
    });
    ["intent", "result", "denied", "event"].forEach(function (k) { selects.kind.appendChild(el("option", { text: k, attrs: { value: k } })); });
    ["allow", "deny"].forEach(function (k) { selects.decision.appendChild(el("option", { text: k, attrs: { value: k } })); });
    var grid = table(["#", "Time (UTC)", "Kind", "Bot", "Credential", "Request", "Method and path", "Order", "Decision", "Outcome"], "audit");
    content.appendChild(toolbar);
    content.appendChild(grid.node);
    var lastId = 0;
    var byId = {};
    var generation = 0;

    Promise.all([getJson("tokens"), getJson("overview")]).then(function (docs) {
      docs[0].bots.forEach(function (b) { addOption(selects.bot, b.bot); });
      docs[1].credentials.forEach(function (c) { addOption(selects.credential, c.name); });
    }).catch(function () { /* the filters stay at "all" */ });

    function addOption(select, value) {
      if (Array.prototype.some.call(select.options, function (o) { return o.value === value; })) return;
      select.appendChild(el("option", { text: value, attrs: { value: value } }));
    }

    function query() {
      var parts = ["limit=200"];
      Object.keys(filters).forEach(function (k) { if (filters[k] !== "all") parts.push(k + "=" + encodeURIComponent(filters[k])); });
      if (lastId) parts.push("after=" + lastId);
      return "audit?" + parts.join("&");
    }

    function restart() { generation += 1; lastId = 0; byId = {}; clear(grid.body); poller.now(); }

    function add(rows) {
      rows.forEach(function (row) {
        lastId = Math.max(lastId, row.id);
        var intent = row.kind === "result" && row.intent_id ? byId[row.intent_id] : null;
        if (intent) {  // the intent's outcome arrived: show it on the intent's line
          var target = intent.querySelector("[data-outcome]");
          target.textContent = outcomeText(row);
          intent.classList.remove("fresh"); void intent.offsetWidth; intent.classList.add("fresh");
          return;
        }
        var tr = auditRow(row);
        byId[row.id] = tr;
        grid.body.insertBefore(tr, grid.body.firstChild);
      });
      while (grid.body.children.length > 500) grid.body.removeChild(grid.body.lastChild);
    }

    var poller = poll(function () {
      var mine = generation;
      return getJson(query()).then(function (doc) { if (mine === generation) add(doc.rows); });
    });
  }

  // -- alerts and denials ----------------------------------------------------------------

  function alertsPage() {
    content.appendChild(el("h2", { text: "Alerts" }));
    var alerts = table(["#", "Time (UTC)", "Alert", "Bot", "Credential", "Rule", "Status", "Venue code"], "alerts");
    content.appendChild(alerts.node);
    content.appendChild(el("h2", { text: "Denials" }));
    var denials = table(["#", "Time (UTC)", "Bot", "Credential", "Request", "Method and path", "Order", "Rule", "Detail"], "denials");
    content.appendChild(denials.node);
    var lastSeq = 0;
    var lastDenial = 0;

    function render(doc) {
      doc.alerts.forEach(function (a) {
        lastSeq = Math.max(lastSeq, a.seq);
        var tr = el("tr", { cls: "fresh", attrs: { "data-alert": a.alert } });
        [cell(a.seq, "num"), cell(shortTime(a.time)), cell(badge(a.alert, a.alert === "IPBanned" ? "bad" : "warn")),
          cell(a.bot), cell(a.credential), cell(a.rule), cell(a.status), cell(a.venue_code)].forEach(function (td) { tr.appendChild(td); });
        alerts.body.insertBefore(tr, alerts.body.firstChild);
      });
      doc.denials.forEach(function (d) {
        lastDenial = Math.max(lastDenial, d.id);
        var tr = el("tr", { cls: "fresh", attrs: { "data-row": String(d.id) } });
        [cell(d.id, "num"), cell(shortTime(d.time)), cell(d.bot), cell(d.credential), cell(d.request_kind),
          cell((d.method || "") + " " + (d.path || ""), "mono"), cell(orderText(d.order)), cell(badge(d.rule || "denied", "bad")),
          cell(d.detail)].forEach(function (td) { tr.appendChild(td); });
        denials.body.insertBefore(tr, denials.body.firstChild);
      });
    }

    poll(function () {
      return getJson("alerts?after=" + lastSeq + "&after_denial=" + lastDenial).then(render);
    });
  }

  // -- tokens ----------------------------------------------------------------------------

  function tokensPage() {
    content.appendChild(el("h2", { text: "Bot tokens" }));
    var bots = table(["Bot", "State", "Credentials", "Orders/min", "Created", "Expires", "Last used", ""], "bot-tokens");
    content.appendChild(bots.node);
    content.appendChild(el("h2", { text: "Admin tokens" }));
    var admins = table(["Name", "State", "Created", "Expires", "Last used"], "admin-tokens");
    content.appendChild(admins.node);
    content.appendChild(el("p", { cls: "status", text: "Tokens are never shown: the vault keeps only their hashes. Make new ones with keybroker tokens create." }));
    var poller;

    function stateBadge(state) { return badge(state, state === "active" ? "ok" : state === "expired" ? "warn" : "muted"); }

    function render(doc) {
      clear(bots.body);
      doc.bots.forEach(function (t) {
        var action = "–";
        if (t.state === "active") {
          action = el("button", { cls: "danger", text: "Revoke", attrs: { type: "button", "data-action": "revoke", "data-bot": t.bot } });
          action.addEventListener("click", function () {
            act("revoke", "bot", t.bot, "Revoke the token of bot " + t.bot + "? Its next request is refused; a new token needs the CLI.",
              false, function () { poller.now(); });
          });
        }
        var row = el("tr", { attrs: { "data-bot": t.bot } });
        [cell(el("b", { text: t.bot })), cell(stateBadge(t.state)), cell(t.credentials.join(", ")), cell(t.max_orders_per_minute, "num"),
          cell(shortTime(t.created_at)), cell(t.expires_at ? shortTime(t.expires_at) : "never"),
          cell(t.last_used_at ? shortTime(t.last_used_at) : "never"), cell(action)].forEach(function (td) { row.appendChild(td); });
        bots.body.appendChild(row);
      });
      clear(admins.body);
      doc.admins.forEach(function (t) {
        admins.body.appendChild(el("tr", { children: [cell(el("b", { text: t.name })), cell(stateBadge(t.state)),
          cell(shortTime(t.created_at)), cell(t.expires_at ? shortTime(t.expires_at) : "never"),
          cell(t.last_used_at ? shortTime(t.last_used_at) : "never")] }));
      });
    }

    poller = poll(function () { return getJson("tokens").then(render); });
  }

  // -- paper -----------------------------------------------------------------------------

  var SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function equityChart(points) {
    var width = 600, height = 180, left = 64, right = 8, top = 10, bottom = 24;
    var chart = svg("svg", { "class": "equity", viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "equity curve" });
    if (points.length < 2) {
      var note = svg("text", { x: String(left), y: String(height / 2) });
      note.textContent = points.length ? "one point so far" : "no equity points yet";
      chart.appendChild(note);
      return chart;
    }
    var times = points.map(function (p) { return Number(p[0]); });
    var values = points.map(function (p) { return Number(p[1]); });
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    var v0 = Math.min.apply(null, values), v1 = Math.max.apply(null, values);
    if (v1 === v0) { v1 += 1; v0 -= 1; }
    if (t1 === t0) t1 += 1;
    function x(t) { return left + (t - t0) / (t1 - t0) * (width - left - right); }
    function y(v) { return top + (1 - (v - v0) / (v1 - v0)) * (height - top - bottom); }
    var line = points.map(function (p) { return x(Number(p[0])).toFixed(1) + "," + y(Number(p[1])).toFixed(1); });
    chart.appendChild(svg("line", { "class": "axis", x1: String(left), y1: String(height - bottom), x2: String(width - right), y2: String(height - bottom) }));
    chart.appendChild(svg("line", { "class": "axis", x1: String(left), y1: String(top), x2: String(left), y2: String(height - bottom) }));
    var area = line.concat([x(t1).toFixed(1) + "," + (height - bottom), x(t0).toFixed(1) + "," + (height - bottom)]);
    chart.appendChild(svg("polygon", { "class": "area", points: area.join(" ") }));
    chart.appendChild(svg("polyline", { "class": "line", points: line.join(" ") }));
    [[v1, y(v1) + 4], [v0, y(v0)]].forEach(function (pair) {
      var label = svg("text", { x: String(left - 6), y: pair[1].toFixed(1), "text-anchor": "end" });
      label.textContent = number(pair[0], 2);
      chart.appendChild(label);
    });
    [[t0, "start"], [t1, "end"]].forEach(function (pair) {
      var label = svg("text", { x: x(pair[0]).toFixed(1), y: String(height - 6), "text-anchor": pair[1] });
      label.textContent = new Date(pair[0]).toISOString().replace("T", " ").slice(0, 16);
      chart.appendChild(label);
    });
    return chart;
  }

  function signed(value) {
    var n = Number(value);
    return el("b", { cls: n > 0 ? "pos" : n < 0 ? "neg" : "", text: number(value, 2) });
  }

  function paperPage() {
    var cards = el("div", { cls: "cards", attrs: { id: "paper" } });
    content.appendChild(cards);

    function render(doc) {
      clear(cards);
      if (!doc.credentials.length) cards.appendChild(el("p", { cls: "empty", text: "No credentials in the vault yet." }));
      doc.credentials.forEach(function (c) {
        var card = el("section", { cls: "card", attrs: { "data-credential": c.name }, children: [el("h3", { text: c.name })] });
        if (!c.summary) {
          card.appendChild(el("p", { cls: "empty", text: c.note === "no paper ledger" ? "No paper ledger: this credential has not traded on paper." : "Paper ledger unreadable (" + c.note + ")." }));
        } else {
          var s = c.summary;
          var figures = el("div", { cls: "figures" });
          [["Realised P&L", signed(s.realized_pnl)], ["Unrealised P&L", signed(s.unrealized_pnl)], ["Fees", el("b", { text: number(s.fees, 4) })],
            ["Fills", el("b", { text: s.fills })], ["Win rate", el("b", { text: s.win_rate === null ? "–" : number(Number(s.win_rate) * 100, 1) + " %" })],
            ["Slippage vs mid", el("b", { text: s.slippage_vs_mid === null ? "–" : number(s.slippage_vs_mid, 6) })]].forEach(function (pair) {
            figures.appendChild(el("div", { children: [el("span", { text: pair[0] }), pair[1]] }));
          });
          card.appendChild(figures);
          card.appendChild(equityChart(s.equity));
        }
        cards.appendChild(card);
      });
    }

    poll(function () { return getJson("paper").then(render); }, 5000);
  }

  var pages = { overview: overviewPage, limits: limitsPage, audit: auditPage, alerts: alertsPage, tokens: tokensPage, paper: paperPage };
  (pages[pageName] || function () {})();
})();
