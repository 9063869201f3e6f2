// The Raft Bookstore — cluster page. Polls GET /cluster/status (the orchestrator samples the
// queue nodes twice a second and remembers recent elections) and redraws everything from it.
// Plain JavaScript, no dependencies; server data is written with textContent, never as HTML.
(function () {
  "use strict";

  var POLL_INTERVAL_MS = 500;
  var REQUEST_TIMEOUT_MS = 3000;   // a hanging orchestrator must not stop the polling

  var $ = Dom.byId, el = Dom.el, clear = Dom.clear;

  function fact(list, term, value) {
    list.appendChild(el("dt", null, term));
    list.appendChild(el("dd", null, value));
  }

  // "1.2 s ago" / "in 3.0 s" between two instants in ms.
  function ago(thenMs, nowMs) {
    var seconds = Math.max(0, (nowMs - thenMs) / 1000);
    if (seconds < 60) return seconds.toFixed(1) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    return new Date(thenMs).toLocaleTimeString();
  }

  // Nodes are named by id only: the page is public, and addresses are internal.
  function nodeName(node, index) {
    return node.nodeId ? "node " + node.nodeId : "node ? (" + (index + 1) + " of those configured)";
  }

  // ------------------------------------------------------------------ nodes

  function renderNodes(view) {
    var grid = $("nodes");
    clear(grid);
    var now = view.sampledAtMs || Date.now();
    view.nodes.forEach(function (node, index) {
      var status = node.status;
      var role = status ? status.role : "down";
      var card = el("article", "node-card");
      card.id = "node-" + (node.nodeId || "unknown-" + index);
      card.dataset.nodeId = node.nodeId || "";
      card.dataset.state = node.up ? "up" : "down";
      card.dataset.role = role;
      card.dataset.term = status ? status.term : "";

      var head = el("div", "node-head");
      head.appendChild(el("h3", "node-name", nodeName(node, index)));
      var badges = el("div");
      if (role === "leader") badges.appendChild(el("span", "badge leader", "leader"));
      badges.appendChild(el("span", "badge " + (node.up ? "up" : "down"), node.up ? "up" : "down"));
      head.appendChild(badges);
      card.appendChild(head);

      var facts = el("dl");
      if (status) {
        fact(facts, "Role", status.role);
        fact(facts, "Term", status.term);
        fact(facts, "Commit index", status.commitIndex);
        fact(facts, "Applied index", status.appliedIndex);
        fact(facts, "Last log index", status.lastLogIndex);
        fact(facts, "Queue depth", status.queueDepth);
        fact(facts, "Last contact",
          role === "leader" ? "is the leader"
            : status.leaderId ? "leader " + status.leaderId + ", " + (status.millisSinceLeaderContact / 1000).toFixed(1) + " s ago"
            : "no leader known");
      } else {
        fact(facts, "Role", "–");
        fact(facts, "Last seen", node.lastSeenAtMs ? ago(node.lastSeenAtMs, now) : "never");
      }
      card.appendChild(facts);
      if (node.error) card.appendChild(el("p", "node-error", node.error));
      grid.appendChild(card);
    });

    var up = view.nodes.filter(function (n) { return n.up; }).length;
    $("leader-summary").textContent = up + " of " + view.nodes.length + " up · " +
      (view.leader ? "leader: node " + view.leader.nodeId + " in term " + view.leader.term : "no leader");
  }

  // ------------------------------------------------------------------ queue

  function renderQueue(queue) {
    $("queue-depth").textContent = queue.depth === null || queue.depth === undefined ? "?" : queue.depth;
    var error = $("queue-error");
    error.hidden = !queue.error;
    error.textContent = queue.error ? "Cannot list the orders: " + queue.error : "";
    var list = $("queue-orders");
    clear(list);
    queue.next.forEach(function (order) {
      var item = el("li");
      item.appendChild(el("strong", null, order.books + (order.books === 1 ? " book" : " books")));
      item.appendChild(document.createTextNode(" · priority " + order.priority + " · waiting since " +
        new Date(order.enqueuedAtMs).toLocaleTimeString() + " "));
      if (order.phase === "executing") {
        item.appendChild(el("span", "executing", "executing on " + (order.executor || "?")));
      }
      list.appendChild(item);
    });
    $("queue-empty").hidden = !!queue.error || queue.next.length > 0;
  }

  // ------------------------------------------------------------------ lease

  function renderLease(lease, now) {
    if (!lease) {
      $("lease-holder").textContent = "unknown (no node answers)";
      $("lease-expiry").textContent = "–";
      return;
    }
    $("lease-holder").textContent = lease.holder || "free";
    if (!lease.holder) {
      $("lease-expiry").textContent = "–";
    } else {
      var left = (lease.expiresAtMs - now) / 1000;
      $("lease-expiry").textContent = left >= 0 ? "in " + left.toFixed(1) + " s" : "expired " + (-left).toFixed(1) + " s ago";
    }
  }

  // -------------------------------------------------------------- elections

  function renderHistory(listId, entries, describe, now) {
    var list = $(listId);
    clear(list);
    if (entries.length === 0) {
      list.appendChild(el("li", "muted", "none seen yet"));
      return;
    }
    entries.forEach(function (entry) {
      var item = el("li", null, describe(entry) + " ");
      item.appendChild(el("span", "when", ago(entry.seenAtMs, now)));
      list.appendChild(item);
    });
  }

  // -------------------------------------------------------------- sparkline

  function points(values, max) {
    var width = 300, height = 60;
    var step = values.length > 1 ? width / (values.length - 1) : width;
    return values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (height - 2 - (v / max) * (height - 6)).toFixed(1);
    }).join(" ");
  }

  function renderThroughput(throughput) {
    var executed = throughput.map(function (p) { return p.executedPerSecond; });
    var applied = throughput.map(function (p) { return p.appliedPerSecond; });
    var max = Math.max.apply(null, [1].concat(executed, applied));
    $("spark-executed").setAttribute("points", points(executed, max));
    $("spark-applied").setAttribute("points", points(applied, max));
    var last = throughput[throughput.length - 1];
    $("rate-executed").textContent = last ? last.executedPerSecond.toFixed(1) : "–";
    $("rate-applied").textContent = last ? last.appliedPerSecond.toFixed(1) : "–";
  }

  // ------------------------------------------------------------------ polling

  function render(view) {
    var now = view.sampledAtMs || Date.now();
    renderNodes(view);
    renderQueue(view.queue);
    renderLease(view.lease, now);
    renderHistory("raft-elections", view.raftElections, function (e) {
      return "term " + e.term + ": node " + e.leaderId;
    }, now);
    renderHistory("executor-elections", view.executorElections, function (e) {
      return e.holder + " (run " + e.incarnation + ")";
    }, now);
    renderThroughput(view.throughput);
    var connection = $("connection");
    connection.className = "connection";
    connection.textContent = view.sampledAtMs
      ? "Sampled at " + new Date(view.sampledAtMs).toLocaleTimeString() + ", every " + view.sampleIntervalMs + " ms."
      : "Waiting for the first sample…";
  }

  function showUnreachable(message) {
    var connection = $("connection");
    connection.className = "connection stale";
    connection.textContent = "The orchestrator does not answer (" + message + "); showing the last sample.";
  }

  function poll() {
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    fetch("/cluster/status", { headers: { "Accept": "application/json" }, cache: "no-store", signal: controller ? controller.signal : undefined })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(render)
      .catch(function (err) { showUnreachable(err && err.message ? err.message : String(err)); })
      .then(function () {
        if (timer) clearTimeout(timer);
        setTimeout(poll, POLL_INTERVAL_MS);
      });
  }

  poll();
})();
