// KapokMQ web console: a hash-routed single page over the Console HTTP API (docs/protocol.md "HTTP API").
// Rule: broker data (message data, ids, topics, config values) only ever reaches the page
// through textContent / text nodes / setAttribute, never through innerHTML.
"use strict";

(() => {
  const KEY_STORE = "kapokmq.secretKey";
  const LANG_STORE = "kapokmq.lang";
  const KEY_MISMATCH = "Secret key matching error";
  const TICK_MS = 1500;
  const REQUEST_TIMEOUT_MS = 10000;
  const PING_TIMEOUT_MS = 4000;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ language
  const I18N = window.KAPOK_I18N;
  let lang = localStorage.getItem(LANG_STORE) || (navigator.language.startsWith("zh") ? "zh" : "en");

  // A {said} placeholder holds the broker's own words, shown in the chosen language (said()).
  function t(key, vars = {}) {
    const text = (I18N[lang] && I18N[lang][key]) ?? I18N.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (name === "said" ? said(vars.said) : String(vars[name] ?? "")));
  }

  // The broker's texts are English and part of its API (docs/protocol.md "HTTP API",
  // docs/durability.md): a known one is shown in the chosen language (i18n.js "broker.*"),
  // anything else as sent. Texts with a variable part match a pattern whose parts are
  // looked up in turn ("storage unavailable: No space left on device (creating …)").
  const SAID = [
    [/^storage unavailable: (.+)$/s, "broker.storageUnavailable"],
    [/^(No space left on device|Read-only file system|Input\/output error|Disk quota exceeded) \((.+)\)$/s, "broker.causeWhile"],
    [/^slave of (.+)$/, "broker.slaveOf"],
    [/^master (.+) unreachable \(sync\.ack: 1\)$/, "broker.masterUnreachable"],
    [/^(startTime|endTime) must look like 2006-01-02 15:04:05 \(local time\), got (.+)$/s, "broker.badTime"],
  ];

  function said(text) {
    text = String(text ?? "");
    if (`broker.${text}` in I18N.en) return t(`broker.${text}`);
    for (const [pattern, key] of SAID) {
      const match = pattern.exec(text);
      if (match) {
        const parts = Object.fromEntries(match.slice(1).map((part, i) => [i + 1, said(part)]));
        return t(key, parts);
      }
    }
    return text;
  }

  // Show a translated label in `node` and remember its key, so a language switch redraws it.
  function label(node, key, vars) {
    node.dataset.i18n = key;
    if (vars) node.dataset.i18nVars = JSON.stringify(vars);
    else delete node.dataset.i18nVars;
    node.textContent = t(key, vars);
    return node;
  }

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n, node.dataset.i18nVars ? JSON.parse(node.dataset.i18nVars) : {});
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    for (const node of document.querySelectorAll("[data-i18n-title]")) {
      node.title = t(node.dataset.i18nTitle);
    }
    for (const select of document.querySelectorAll(".lang-select")) select.value = lang;
    for (const table of document.querySelectorAll("table.reflow")) labelCells(table);
  }

  function setLanguage(value) {
    lang = value === "zh" ? "zh" : "en";
    localStorage.setItem(LANG_STORE, lang);
    applyLanguage();
    overview.redrawChart(); // its title and number format follow the language
  }

  // ------------------------------------------------------------------ DOM helpers (text only)
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  const tr = (key, vars) => label(el("span"), key, vars);
  // a name the broker sent (status, dead reason, event): its label, or the name as sent
  // when the console does not know it (a newer broker's), not "event.<name>"
  const named = (prefix, name) => (`${prefix}.${name}` in I18N.en ? tr(`${prefix}.${name}`) : el("span", {}, String(name)));
  const pad = (n) => String(n).padStart(2, "0");
  const dayKey = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

  function formatTime(unix) {
    if (!unix) return t("common.none");
    const d = new Date(unix * 1000);
    // a Date ends in the year 275760; DelayTime and TTL run to 2^63-1 s (docs/protocol.md)
    if (Number.isNaN(d.getTime())) return t("common.pastCalendar");
    return `${dayKey(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // A table body from rows of cells; numbers are right-aligned, Nodes are kept as they are.
  // A text cell longer than this (a long topic or client id) wraps instead of pushing the
  // columns after it out of the card (console.css td.long).
  const LONG_TEXT = 48;

  function fillTable(tbody, rows, emptyKey) {
    const head = tbody.parentElement.tHead.rows;
    const columns = head[head.length - 1].cells.length; // the last row names every column
    if (rows.length === 0) {
      tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns }, tr(emptyKey))));
      return;
    }
    tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((cell) =>
      typeof cell === "number" ? el("td", { class: "num" }, cell.toLocaleString("en"))
        : el("td", typeof cell === "string" && cell.length > LONG_TEXT ? { class: "long" } : {}, cell)))));
    labelCells(tbody.parentElement);
  }

  // On a phone a table.reflow shows each row as a block of "column: value" lines; the
  // column names come from the header (console.css, data-label). Under a group header row
  // (the Topics table's "Now" and "Totals since start") a column is named with its group,
  // "Now: Backlog", on a phone and for screen readers alike (the group row is hidden there,
  // or spans several columns).
  function labelCells(table) {
    const head = table.tHead.rows;
    const groups = head.length > 1
      ? [...head[0].cells].flatMap((cell) => Array(cell.colSpan).fill(cell.tagName === "TH" ? cell.textContent : ""))
      : [];
    const names = [...head[head.length - 1].cells].map((th, i) => {
      if (!groups[i]) return th.textContent;
      const name = t("table.grouped", { group: groups[i], name: th.textContent });
      th.setAttribute("aria-label", name);
      return name;
    });
    for (const row of table.tBodies[0].rows) {
      [...row.cells].forEach((td, i) => td.setAttribute("data-label", names[i] ?? ""));
    }
  }

  // a dead message's status with why it died (its latest death)
  const deadBadge = (m) => (m.DeadReason
    ? el("span", {}, statusBadge(m.Status), " ", el("span", { class: "muted small reason" }, named("reason", m.DeadReason)))
    : statusBadge(m.Status));

  const statusBadge = (status) => el("span", { class: `status s${status}` }, named("status", status));

  // ------------------------------------------------------------------ API
  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(message, answer = null) {
      super(message);
      this.answer = answer; // the broker's {"code":-1,...} when there was one
    }
  }

  // POST a form to the Console API; returns the parsed JSON, or null for an empty body.
  async function api(path, form = {}, key = sessionStorage.getItem(KEY_STORE) || "", timeoutMs = REQUEST_TIMEOUT_MS) {
    // a header value must be Latin-1: a key the browser cannot send cannot be right
    if (/[^\u0000-\u00ff]/.test(key)) throw new AuthError(KEY_MISMATCH);
    const body = new URLSearchParams();
    for (const [name, value] of Object.entries(form)) {
      if (value !== "" && value !== null && value !== undefined) body.set(name, String(value));
    }
    const response = await fetch(path, {
      method: "POST", headers: { secretKey: key }, body, cache: "no-store",
      signal: AbortSignal.timeout(timeoutMs), // a hung broker shows as down, not as nothing
    });
    if (!response.ok) throw new ApiError(`HTTP ${response.status} ${response.statusText}`);
    const text = await response.text();
    if (text === "") return null;
    const answer = JSON.parse(text);
    if (answer && answer.code === -1 && answer.msg === KEY_MISMATCH) throw new AuthError(KEY_MISMATCH);
    if (answer && answer.code === -1) throw new ApiError(String(answer.msg ?? answer.data ?? "failed"), answer);
    return answer;
  }

  // fetch() rejects with a TypeError when nothing answers, and AbortSignal.timeout with a
  // TimeoutError: both mean the broker cannot be reached, not that it said no.
  const unreachable = (error) => error instanceof TypeError || error?.name === "TimeoutError";

  function reason(error) {
    if (error?.name === "TimeoutError") return t("unreachable.timeout");
    if (error instanceof TypeError) return t("unreachable.refused");
    return error.message;
  }

  function showError(error) {
    if (error instanceof AuthError) {
      logout("login.expired");
      return;
    }
    if (unreachable(error)) return; // the health check shows the "Broker unreachable" banner
    console.error(error);
    const banner = $("page-error");
    label(banner, "common.error", { said: error.message });
    banner.hidden = false;
  }

  // ------------------------------------------------------------------ health (Ping)
  let healthy = null;
  let lastAnswer = null; // unix seconds of the last answer from the broker

  async function checkHealth() {
    const started = performance.now();
    try {
      await api("Console/Ping", {}, undefined, PING_TIMEOUT_MS);
      healthy = true;
      lastAnswer = Date.now() / 1000;
      label($("ov-ping-detail"), "overview.ping", { ms: Math.round(performance.now() - started) });
    } catch (error) {
      if (error instanceof AuthError) throw error;
      healthy = false;
      $("ov-ping-detail").textContent = reason(error);
      label($("unreachable"), lastAnswer ? "unreachable.since" : "unreachable.banner", {
        reason: reason(error), time: formatTime(lastAnswer),
      });
    }
    $("unreachable").hidden = healthy;
    // what the pages show is the last answer: greyed, and no rate can be computed
    document.querySelector("main").classList.toggle("stale", !healthy);
    if (!healthy) {
      for (const id of ["rate-in", "rate-out", "rate-acked"]) $(id).textContent = t("common.none");
      overview.previous = null;
    }
    for (const badge of [$("health"), $("ov-ping")]) {
      badge.className = `badge ${healthy ? "up" : "down"}`;
      label(badge, healthy ? "health.up" : "health.down");
    }
  }

  // GET /healthz answers 503 {"status":"degraded",...} while writes are refused for a fault:
  // with "storage" while storage fails (docs/durability.md), with "writes" alone while
  // sync.ack 1 refuses every write for want of the other broker (docs/protocol.md
  // "Master-slave sync"). The Overview says which.
  async function checkWrites() {
    let shown = null; // [label key, the broker's reason]
    try {
      const response = await fetch("healthz", { cache: "no-store", signal: AbortSignal.timeout(PING_TIMEOUT_MS) });
      if (response.status === 503) {
        const answer = await response.json().catch(() => ({}));
        if (answer.status === "degraded") {
          shown = answer.storage !== undefined ? ["storage.degraded", answer.storage] : ["writes.refused", answer.writes];
        }
      }
    } catch {
      return; // unreachable: the health check says so
    }
    const banner = $("ov-storage");
    banner.hidden = shown === null;
    if (shown !== null) label(banner, shown[0], { said: String(shown[1] ?? "") });
  }

  // ------------------------------------------------------------------ pages
  const overview = {
    every: 1,
    previous: null, // {at, published, pushed, acked} of the last Stats answer, for the rates
    chartKey: "",

    async load() {
      const [{ data }] = await Promise.all([api("Console/Stats"), checkWrites()]);
      const now = performance.now();
      for (const name of ["all", "unconsumed", "delay", "consumed", "dead"]) {
        $(`count-${name}`).textContent = data.counts[name].toLocaleString("en");
      }
      const sums = { published: 0, pushed: 0, acked: 0 };
      for (const topic of data.topics) for (const k in sums) sums[k] += topic[k];
      // rates over the time since the previous sample: not over a few milliseconds (two loads
      // at once), and not across a gap (the page was left); then the sample only starts anew
      const prev = this.previous;
      const seconds = prev ? (now - prev.at) / 1000 : Infinity;
      if (seconds >= 0.5) {
        const live = seconds <= 5;
        const rate = (k) => (live ? Math.max(0, (sums[k] - prev[k]) / seconds).toFixed(1) : t("common.none"));
        $("rate-in").textContent = rate("published");
        $("rate-out").textContent = rate("pushed");
        $("rate-acked").textContent = rate("acked");
        this.previous = { at: now, ...sums };
      }

      fillTable($("ov-topics").tBodies[0], data.topics.map((topic) => [
        topic.name, topic.ready, topic.inFlight, topic.consumers, topic.producers,
        topic.published, topic.pushed, topic.acked, topic.dead,
      ]), "overview.noTopics");
      this.drawChart(data.hourly);
      label($("ov-updated"), "common.updated", { time: formatTime(data.now) });
      // navigation start → first complete overview, for benchmarks/console_load.py
      if (performance.getEntriesByName("kapokmq:overview-rendered").length === 0) {
        performance.mark("kapokmq:overview-rendered");
      }
      $("ov-updated").title = `${t("overview.uptime", { time: formatTime(data.startedAt) })}`;
    },

    // hourly = {unix hour: messages created}; summed into the last 7 local days.
    // (In zones with a half-hour offset an hour is counted in the day it starts in.)
    drawChart(hourly) {
      const days = [];
      const today = new Date();
      today.setHours(0, 0, 0, 0);
      for (let i = 6; i >= 0; i--) {
        const d = new Date(today);
        d.setDate(today.getDate() - i);
        days.push({ key: dayKey(d), date: d, value: 0 });
      }
      const byKey = new Map(days.map((day) => [day.key, day]));
      for (const [hour, count] of Object.entries(hourly)) {
        const day = byKey.get(dayKey(new Date(Number(hour) * 3600 * 1000)));
        if (day) day.value += count;
      }
      this.days = days;
      this.redrawChart();
    },

    // drawn for the card's width: redrawn when the data, the language or the width change
    redrawChart() {
      const box = $("ov-chart");
      if (!this.days || box.clientWidth === 0) return; // hidden: drawn when shown
      const locale = lang === "zh" ? "zh-CN" : "en";
      const short = new Intl.DateTimeFormat(locale, { month: "short", day: "numeric" }); // Dec 1, 12月1日
      const days = this.days.map((day) => ({ ...day, label: short.format(day.date) }));
      const key = lang + box.clientWidth + JSON.stringify(days);
      if (key === this.chartKey) return; // unchanged: keep the SVG as it is
      this.chartKey = key;
      window.KapokChart.line(box, days, { title: t("overview.chart"), locale });
    },
  };

  const clients = {
    every: 2,
    async load() {
      const answer = await api("Console/GetClients");
      const rows = (list, id, ip) => (list || []).map((c) => [c[id], c.Topic, c[ip], formatTime(c.JoinTime)]);
      const producers = rows(answer.producers, "ProducerId", "ProducerIp");
      const consumers = rows(answer.consumers, "ConsumerId", "ConsumerIp");
      fillTable($("producers").tBodies[0], producers, "clients.none");
      fillTable($("consumers").tBodies[0], consumers, "clients.none");
      $("producers-count").textContent = `(${producers.length})`;
      $("consumers-count").textContent = `(${consumers.length})`;
      label($("clients-updated"), "common.updated", { time: formatTime(Date.now() / 1000) });
    },
  };

  const config = {
    async load() {
      const { data } = await api("Console/GetConfigSections");
      const cards = Object.entries(data).map(([section, values]) => {
        const table = el("table", { class: "kv" },
          el("thead", {}, el("tr", {}, el("th", {}, tr("config.key")), el("th", {}, tr("config.value")))),
          el("tbody"));
        fillTable(table.tBodies[0], Object.entries(values).map(([key, value]) => [
          el("span", { class: "mono" }, `${section}.${key}`),
          el("span", { class: "mono" }, typeof value === "object" ? JSON.stringify(value) : String(value)),
        ]), "common.none");
        return el("div", { class: "card", "data-section": section }, el("h2", { class: "mono" }, `${section}:`), table);
      });
      $("config-sections").replaceChildren(...cards);
    },
  };

  const cluster = {
    every: 2,
    async load() {
      const nodes = await api("Console/GetNodes"); // null (empty body) when not clustered
      $("cluster-off").hidden = nodes !== null;
      $("cluster-on").hidden = nodes === null;
      if (nodes !== null) {
        fillTable($("nodes").tBodies[0], nodes.map((n) => [n.Name, n.Addr, String(n.Port)]), "common.none");
        label($("nodes-count"), "cluster.count", { count: nodes.length });
      }
      label($("cluster-updated"), "common.updated", { time: formatTime(Date.now() / 1000) });
    },
  };

  const messages = {
    every: 2, // auto-refresh (the toggle), paused while the user interacts with the list
    page: 1,
    current: null, // the message shown in the detail dialog
    pointerInside: false,

    paused() {
      const focus = document.activeElement; // typing in a filter field, not a pressed button
      const typing = $("msg-form").contains(focus) && focus.matches("input, select");
      const detail = $("msg-detail").open; // the open message is refreshed, the list waits
      const interacting = !detail && (this.pointerInside || typing);
      $("msg-paused").hidden = !($("f-auto").checked && (interacting || detail));
      return !$("f-auto").checked || interacting;
    },

    // "2024-05-01", "2024-05-01 10:20" or "…10:20:30" (a T instead of the space is fine);
    // a date alone is the start (or end) of that day. Typed in this browser's time, as the
    // list shows times, and sent in the broker's local time, which the API wants
    // (docs/protocol.md "HTTP API"; Console/Stats utcOffset). A date that is no date
    // (2026-13-45) is sent as typed, for the broker to refuse.
    async apiTime(input, endOfDay) {
      const value = input.value.trim().replace("T", " ");
      if (!value) return "";
      const match = /^(\d{4}-\d{2}-\d{2})(?: (\d{2}:\d{2})(:\d{2})?)?$/.exec(value);
      if (!match) throw new ApiError(t("msg.badTime", { value, format: t("msg.timeFormat") }));
      const [, date, hm, sec] = match;
      const typed = hm ? `${date} ${hm}${sec ?? ":00"}` : `${date} ${endOfDay ? "23:59:59" : "00:00:00"}`;
      const offset = await this.brokerOffset();
      const [y, mo, d, h, mi, s] = typed.split(/[- :]/).map(Number);
      const here = new Date(y, mo - 1, d, h, mi, s);
      const real = [here.getFullYear(), here.getMonth() + 1, here.getDate(), here.getHours(), here.getMinutes()]
        .every((part, i) => part === [y, mo, d, h, mi][i]);
      if (offset === undefined || !real) return typed; // an older broker: as typed
      const there = new Date(here.getTime() + offset * 1000); // its fields, read as UTC
      return `${there.getUTCFullYear()}-${pad(there.getUTCMonth() + 1)}-${pad(there.getUTCDate())} `
        + `${pad(there.getUTCHours())}:${pad(there.getUTCMinutes())}:${pad(there.getUTCSeconds())}`;
    },

    // the broker's seconds east of UTC, asked once
    async brokerOffset() {
      if (!("offset" in this)) this.offset = (await api("Console/Stats")).data.utcOffset;
      return this.offset;
    },

    load() {
      if ($("msg-detail").open && this.current) return this.open(this.current.MessageCode, true);
      return this.search(this.page);
    },

    async search(page) {
      const size = Number($("f-size").value);
      const answer = await api("Console/GetMessageList", {
        startTime: await this.apiTime($("f-start"), false),
        endTime: await this.apiTime($("f-end"), true),
        status: $("f-status").value,
        topic: $("f-topic").value,
        reason: $("f-reason").value, // dead messages whose latest death had this reason
        page,
        pageSize: size,
      });
      const list = answer.data || [];
      const total = answer.total ?? (page - 1) * size + list.length;
      const pages = Math.max(1, Math.ceil(total / size));
      if (list.length === 0 && page > 1 && total > 0) return this.search(pages); // page emptied
      this.page = page;
      fillTable($("msg-table").tBodies[0], list.map((m) => [
        el("a", { href: "#/messages", class: "mono code", "data-code": m.MessageCode,
          onclick: (ev) => { ev.preventDefault(); this.open(m.MessageCode).catch(showError); } }, m.MessageCode),
        m.Topic, deadBadge(m), formatTime(m.CreateTime), formatTime(m.ConsumedTime), m.DelayTime,
        el("button", { type: "button", class: "small", onclick: () => this.open(m.MessageCode).catch(showError) },
          tr("msg.view")),
      ]), "msg.none");
      label($("msg-summary"), "msg.total", { total: total.toLocaleString("en") });
      label($("pg-info"), "msg.page", { page, pages });
      $("pg-prev").disabled = page <= 1;
      $("pg-next").disabled = answer.total === undefined ? list.length < size : page >= pages;
    },

    note(key, vars) {
      label($("msg-note"), key, vars).hidden = false;
    },

    // Show message `code` in the dialog; `refresh`: it is open already and is redrawn only
    // if the message or its trace changed (a redraw also disarms Delete and Deliver again,
    // which were asked for the message as it was).
    async open(code, refresh = false) {
      const dialog = $("msg-detail");
      const answer = await api("Console/GetMessage", { messageCode: code }).catch((error) => {
        if (error instanceof ApiError && error.answer?.data === "error") return null; // not found
        throw error;
      });
      if (answer === null) {
        this.note("msg.gone");
        if (dialog.open) dialog.close();
        return this.search(this.page);
      }
      const m = answer.data;
      const trace = await this.traceOf(m.MessageCode);
      const shown = JSON.stringify([m, trace]);
      if (refresh && shown === this.shown) return;
      this.shown = shown;
      this.current = m;
      $("d-code").textContent = m.MessageCode;
      $("d-topic").textContent = m.Topic;
      $("d-status").replaceChildren(statusBadge(m.Status));
      $("d-created").textContent = formatTime(m.CreateTime);
      $("d-consumed").textContent = formatTime(m.ConsumedTime);
      $("d-delay").textContent = String(m.DelayTime);
      // ours, present only where they apply (docs/protocol.md "TTL and dead letters")
      const show = (name, value) => {
        for (const node of document.querySelectorAll(`#msg-detail .d-${name}`)) node.hidden = value === undefined;
      };
      show("ttl", m.TTL);
      $("d-ttl").textContent = String(m.TTL ?? "");
      show("expires", m.ExpiresAt);
      $("d-expires").textContent = m.ExpiresAt ? formatTime(m.ExpiresAt) : "";
      show("reason", m.DeadReason);
      $("d-reason").replaceChildren(m.DeadReason ? named("reason", m.DeadReason) : "");
      show("history", m.History);
      $("d-history").replaceChildren(...(m.History || []).map((e) =>
        el("li", {}, `${formatTime(e.Time)} `, named("event", e.Event))));
      let pretty = null;
      try {
        const parsed = JSON.parse(m.MessageData);
        if (parsed !== null && typeof parsed === "object") pretty = JSON.stringify(parsed, null, 2);
      } catch {
        // not JSON: shown as it is
      }
      $("d-data").textContent = pretty ?? m.MessageData;
      label($("d-kind"), pretty === null ? "msg.text" : "msg.json");
      this.showTrace(trace);
      // a dead message is re-queued; a consumed one can be delivered again, after a
      // confirmation, since its consumers will see it a second time
      $("d-requeue").hidden = m.Status !== 2;
      $("d-again").hidden = m.Status !== 1;
      this.armDelete(false);
      this.arm($("d-again"), false, "msg.again", "msg.confirmAgain");
      $("d-note").hidden = true;
      if (!dialog.open) dialog.showModal();
    },

    // The Trace panel: the message's events, oldest first (docs/protocol.md "Message
    // trace"); the broker's reason when there is none (tracing off, not sampled, evicted).
    async traceOf(code) {
      try {
        return { events: (await api("Console/GetMessageTrace", { messageCode: code })).data.Events };
      } catch (error) {
        if (!(error instanceof ApiError) || !error.answer) throw error;
        return { events: [], why: error.message };
      }
    },

    showTrace({ events, why }) {
      const note = $("d-trace-note");
      note.hidden = why === undefined;
      if (why !== undefined) label(note, "common.said", { said: why });
      $("d-trace").replaceChildren(...events.map((e) => el("li", { "data-event": e.Event },
        el("time", { class: "mono small" }, this.traceTime(e.Time)), " ",
        el("strong", {}, named("trace.event", e.Event)), ...this.traceDetails(e))));
    },

    traceTime(unix) {
      const ms = String(Math.floor((unix % 1) * 1000)).padStart(3, "0");
      return `${formatTime(Math.floor(unix))}.${ms}`;
    },

    traceDetails(e) {
      const parts = [];
      if (e.Event === "published") {
        parts.push(e.ProducerId ? tr("trace.producer", { id: e.ProducerId }) : tr("trace.http"));
        if (e.ProducerIp) parts.push(e.ProducerIp);
        if (e.Engine) parts.push(e.Engine);
      } else if (e.ConsumerId !== undefined) {
        parts.push(tr("trace.consumer", { id: e.ConsumerId }));
        if (e.Attempt !== undefined) parts.push(tr("trace.attempt", { n: e.Attempt }));
      } else if (e.Reason) {
        parts.push(named("reason", e.Reason));
      }
      return parts.flatMap((part) => [el("span", { class: "muted" }, " · "), part]);
    },

    // Delete and Deliver again ask twice (an in-page confirmation: no browser dialog).
    arm(button, armed, key, confirmKey) {
      button.classList.toggle("armed", armed);
      label(button, armed ? confirmKey : key);
      clearTimeout(button.disarm);
      if (armed) button.disarm = setTimeout(() => this.arm(button, false, key, confirmKey), 4000);
    },

    armDelete(armed) {
      this.arm($("d-delete"), armed, "msg.delete", "msg.confirmDelete");
    },

    async remove() {
      if (!$("d-delete").classList.contains("armed")) return this.armDelete(true);
      const code = this.current.MessageCode;
      await api("Console/DelMessage", { messageCode: code });
      $("msg-detail").close();
      this.note("msg.deleted", { code });
      await this.search(this.page);
    },

    // Console/Requeue serves both: a dead message gets another life, a consumed one is
    // pushed again. The dialog and the list then show the message as it is now.
    async requeue(noteKey) {
      await api("Console/Requeue", { messageCode: this.current.MessageCode });
      this.note(noteKey);
      await this.open(this.current.MessageCode);
      await this.search(this.page);
    },

    async deliverAgain() {
      const button = $("d-again");
      if (!button.classList.contains("armed")) return this.arm(button, true, "msg.again", "msg.confirmAgain");
      return this.requeue("msg.deliveredAgain");
    },

    bind() {
      $("msg-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        $("msg-note").hidden = true;
        this.search(1).catch(showError);
      });
      $("msg-form").addEventListener("reset", () => setTimeout(() => this.search(1).catch(showError)));
      $("pg-prev").addEventListener("click", () => this.search(this.page - 1).catch(showError));
      $("pg-next").addEventListener("click", () => this.search(this.page + 1).catch(showError));
      $("d-close").addEventListener("click", () => $("msg-detail").close());
      $("d-delete").addEventListener("click", () => this.remove().catch((e) => this.dialogError(e)));
      $("d-requeue").addEventListener("click", () => this.requeue("msg.requeued").catch((e) => this.dialogError(e)));
      $("d-again").addEventListener("click", () => this.deliverAgain().catch((e) => this.dialogError(e)));
      const card = $("msg-card");
      card.addEventListener("pointerenter", () => { this.pointerInside = true; });
      card.addEventListener("pointerleave", () => { this.pointerInside = false; this.paused(); });
      $("f-auto").addEventListener("change", () => this.paused());
    },

    dialogError(error) {
      if (error instanceof AuthError) return showError(error);
      if (unreachable(error)) error = new Error(reason(error));
      label($("d-note"), "common.error", { said: error.message }).hidden = false;
    },
  };

  // pages kept in files of their own (schedule.js) register in window.KAPOK_PAGES and use
  // these helpers
  window.KapokConsole = { api, el, fillTable, formatTime, label, showError, statusBadge, t, tr };
  const PAGES = { overview, messages, clients, config, cluster, ...(window.KAPOK_PAGES || {}) };
  let current = "overview";

  // ------------------------------------------------------------------ routing and timer
  function route() {
    const name = location.hash.replace(/^#\//, "").split("/")[0];
    current = name in PAGES ? name : "overview";
    for (const page of Object.keys(PAGES)) $(`page-${page}`).hidden = page !== current;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.page === current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    $("page-error").hidden = true;
    setMenu(false);
    if ($("msg-detail").open) $("msg-detail").close();
    PAGES[current].load().catch(showError);
  }

  // Each tick pings the broker and refreshes the page (if it is a live one). The two run
  // independently, each skipping a tick while its previous request is still out, so a slow
  // page refresh never delays noticing that the broker is down.
  let timer = null, ticks = 0;
  const busy = { ping: false, page: false };

  async function once(kind, work) {
    if (busy[kind]) return;
    busy[kind] = true;
    try {
      await work();
    } catch (error) {
      showError(error);
    } finally {
      busy[kind] = false;
    }
  }

  function setMenu(open) {
    $("nav-toggle").setAttribute("aria-expanded", String(open));
    document.querySelector(".top").classList.toggle("open", open);
  }

  function tick() {
    const page = PAGES[current];
    const due = healthy !== false && page.every && ticks % page.every === 0;
    const refresh = due && !(page.paused && page.paused());
    ticks += 1;
    once("ping", checkHealth);
    if (refresh) {
      once("page", async () => {
        await page.load();
        $("page-error").hidden = true;
      });
    }
  }

  // ------------------------------------------------------------------ login / logout
  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    overview.previous = null;
    route();
    tick();
    timer = setInterval(tick, TICK_MS);
  }

  function logout(reasonKey) {
    clearInterval(timer);
    sessionStorage.removeItem(KEY_STORE);
    $("app").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.hidden = !reasonKey;
    if (reasonKey) label(error, reasonKey);
    $("login-key").value = "";
    $("login-key").focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const key = $("login-key").value;
    const button = $("login-submit");
    button.disabled = true;
    try {
      await api("Console/Ping", {}, key);
      sessionStorage.setItem(KEY_STORE, key);
      $("login-error").hidden = true;
      showApp();
    } catch (error) {
      label($("login-error"), error instanceof AuthError ? "login.wrongKey" : "login.unreachable").hidden = false;
      $("login-key").select();
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ start
  function start() {
    applyLanguage();
    for (const select of document.querySelectorAll(".lang-select")) {
      select.addEventListener("change", () => setLanguage(select.value));
    }
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout(null));
    $("nav-toggle").addEventListener("click", () => {
      setMenu($("nav-toggle").getAttribute("aria-expanded") !== "true");
    });
    new ResizeObserver(() => overview.redrawChart()).observe($("ov-chart"));
    window.addEventListener("hashchange", () => {
      if (!$("app").hidden) route();
    });
    messages.bind();
    if (sessionStorage.getItem(KEY_STORE) !== null) showApp();
    else logout(null);
  }

  start();
})();
