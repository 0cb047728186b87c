// The Schedule page: delayed messages by due time with live countdowns, "deliver now" and
// "cancel" (Console/GetScheduled, Console/DeliverNow, Console/DelMessage; docs/protocol.md
// "Delayed messages"). Loaded before console.js, which adds it to its pages and lends it
// its helpers (window.KapokConsole) when they are first needed. Broker data reaches the
// page only as text, as everywhere in the console.
"use strict";

(() => {
  const C = () => window.KapokConsole;
  const $ = (id) => document.getElementById(id);

  Object.assign(window.KAPOK_I18N.en, {
    "nav.schedule": "Schedule",
    "sched.topic": "Topic",
    "sched.due": "Due",
    "sched.in": "Due in",
    "sched.delay": "Delay (s)",
    "sched.none": "Nothing is scheduled.",
    "sched.total": "{total} delayed messages, soonest first",
    "sched.now": "Deliver now",
    "sched.cancel": "Cancel",
    "sched.confirmCancel": "Click again to cancel",
    "sched.delivered": "Message {code} is due now.",
    "sched.cancelled": "Message {code} cancelled (deleted).",
    "sched.overdue": "due",
    "sched.days": "{days}d {clock}",
  });
  Object.assign(window.KAPOK_I18N.zh, {
    "nav.schedule": "定时",
    "sched.topic": "主题",
    "sched.due": "到期时间",
    "sched.in": "倒计时",
    "sched.delay": "延时(秒)",
    "sched.none": "没有定时消息。",
    "sched.total": "{total} 条延时消息，按到期时间排序",
    "sched.now": "立即投递",
    "sched.cancel": "取消",
    "sched.confirmCancel": "再次点击以取消",
    "sched.delivered": "消息 {code} 已到期。",
    "sched.cancelled": "消息 {code} 已取消（删除）。",
    "sched.overdue": "到期",
    "sched.days": "{days} 天 {clock}",
  });

  // "3d 04:05:06" (3 天 04:05:06) / "04:05:06" until `seconds` from now
  function countdown(seconds) {
    if (seconds <= 0) return C().t("sched.overdue");
    const s = Math.ceil(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    const days = Math.floor(s / 86400);
    const clock = `${pad(Math.floor((s % 86400) / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
    return days ? C().t("sched.days", { days: days.toLocaleString("en"), clock }) : clock;
  }

  const schedule = {
    every: 2,
    page: 1,
    offset: 0, // broker clock minus this browser's, from the latest answer
    timer: null,
    armed: null, // the message whose Cancel waits for its second click
    disarm: null,

    load() {
      this.bind();
      return this.search(this.page);
    },

    async search(page) {
      const { api, el, fillTable, formatTime, label, tr } = C();
      const size = Number($("s-size").value);
      const answer = await api("Console/GetScheduled", { topic: $("s-topic").value, page, pageSize: size });
      const pages = Math.max(1, Math.ceil(answer.total / size));
      if (answer.data.length === 0 && page > 1 && answer.total > 0) return this.search(pages);
      this.page = page;
      this.offset = answer.now - Date.now() / 1000;
      fillTable($("sched-table").tBodies[0], answer.data.map((m) => [
        el("span", { class: "mono code" }, m.MessageCode),
        m.Topic,
        formatTime(m.DueTime),
        el("span", { class: "countdown", "data-due": String(m.DueTime) }, countdown(m.DueTime - answer.now)),
        m.DelayTime,
        el("span", { class: "actions" },
          el("button", { type: "button", class: "small", "data-code": m.MessageCode,
            onclick: () => this.deliver(m.MessageCode).catch(C().showError) }, tr("sched.now")),
          el("button", { type: "button", class: "small danger", "data-cancel": m.MessageCode,
            onclick: () => this.cancel(m.MessageCode).catch(C().showError) },
          tr("sched.cancel"))),
      ]), "sched.none");
      this.showArmed();
      label($("sched-summary"), "sched.total", { total: answer.total.toLocaleString("en") });
      label($("sched-pg-info"), "msg.page", { page, pages });
      $("sched-prev").disabled = page <= 1;
      $("sched-next").disabled = page >= pages;
      this.tick();
    },

    // countdowns move every second between refreshes
    tick() {
      clearTimeout(this.timer);
      if ($("page-schedule").hidden) return;
      const now = Date.now() / 1000 + this.offset;
      for (const cell of document.querySelectorAll("#sched-table .countdown")) {
        cell.textContent = countdown(Number(cell.dataset.due) - now);
      }
      this.timer = setTimeout(() => this.tick(), 1000);
    },

    note(key, vars) {
      C().label($("sched-note"), key, vars).hidden = false;
    },

    async deliver(code) {
      await C().api("Console/DeliverNow", { messageCode: code });
      this.note("sched.delivered", { code });
      await this.search(this.page);
    },

    // Cancel asks twice within 4 s (an in-page confirmation, as Delete does on the Messages
    // page). The armed message is kept here, not on its button: a refresh replaces the
    // buttons, and the second click would arm the new one instead.
    async cancel(code) {
      if (this.armed !== code) return this.arm(code);
      this.arm(null);
      await C().api("Console/DelMessage", { messageCode: code });
      this.note("sched.cancelled", { code });
      await this.search(this.page);
    },

    arm(code) {
      clearTimeout(this.disarm);
      this.armed = code;
      if (code !== null) this.disarm = setTimeout(() => this.arm(null), 4000);
      this.showArmed();
    },

    showArmed() {
      for (const button of document.querySelectorAll("#sched-table button[data-cancel]")) {
        const armed = button.dataset.cancel === this.armed;
        button.classList.toggle("armed", armed);
        C().label(button, armed ? "sched.confirmCancel" : "sched.cancel");
      }
    },

    bind() {
      if (this.bound) return;
      this.bound = true;
      const { showError } = C();
      $("sched-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        $("sched-note").hidden = true;
        this.search(1).catch(showError);
      });
      $("sched-prev").addEventListener("click", () => this.search(this.page - 1).catch(showError));
      $("sched-next").addEventListener("click", () => this.search(this.page + 1).catch(showError));
    },
  };

  window.KAPOK_PAGES = Object.assign(window.KAPOK_PAGES || {}, { schedule });
})();
