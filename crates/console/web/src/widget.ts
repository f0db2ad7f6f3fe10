// The web-chat widget: what one <script> tag puts on the brand's service website — a chat
// button and a chat window in a shadow root of their own (the site's styles and the
// widget's do not meet). It talks only to the helpline console it was loaded from
// (crates/console/src/widget.rs): a session token it keeps in the site's localStorage,
// messages it sends there (never signed here: the page holds no secret), and the
// session's conversation as server-sent events from the last sequence it has shown.
//
// Nothing is lost or shown twice across a network drop or a server restart: a message
// waits in a kept outbox until the backend took it, is sent again with the same id (which
// ingress dedupes), and the conversation is read on from the last sequence shown.
// Every text is set as text, never as markup.
import { fill, widgetWords, type WidgetWords } from "./widget-i18n";

type Kept = {
  seq: number;
  id?: string;
  from?: "customer" | "helpline";
  text?: string;
  quick_replies?: string[];
  attachments?: string[];
  erased?: boolean;
};
/// A message waiting to be sent; with a file, `upload` once the backend has the file.
type Outgoing = { id: string; text: string; fileName?: string; upload?: string };

/// The files of messages not yet uploaded, by message id: a page opened again has lost
/// them (storage keeps no files), and says so.
const files = new Map<string, File>();

/// What a message shows: its text, then a line per attached file.
function shownText(text: string, attachments: readonly string[]): string {
  return [text, ...attachments.map((name) => `📎 ${name}`)].filter((part) => part).join("\n");
}

const RATING = ["1", "2", "3", "4", "5"];
/// A reading that hears nothing this long (the backend's keep-alive comes every 15 s) is
/// taken as broken and opened again.
const SILENCE_MS = 40_000;

const script = document.currentScript as HTMLScriptElement | null;
const base = script?.src ? new URL(script.src).origin : location.origin;
const [language, t] = widgetWords(script?.dataset.lang ?? null, navigator.languages);
const storageKey = `helpline-widget ${base}`;

type Saved = { token: string | null; outbox: Outgoing[] };

function load(): Saved {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey) ?? "null") as Saved | null;
    if (saved && Array.isArray(saved.outbox)) return saved;
  } catch {
    // No storage (private mode, or blocked): the chat lasts as long as the page.
  }
  return { token: null, outbox: [] };
}

const saved = load();

function save() {
  try {
    localStorage.setItem(storageKey, JSON.stringify(saved));
  } catch {
    // As in load(): kept in the page only.
  }
}

function newId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const backoff = (attempt: number) => Math.min(10_000, 500 * 2 ** Math.min(attempt, 5));

const STYLE = `
:host { all: initial; }
* { box-sizing: border-box; font-family: system-ui, sans-serif; }
.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  background: #0b57d0; color: #fff; border: 0; border-radius: 24px; padding: 12px 20px;
  font-size: 16px; cursor: pointer; box-shadow: 0 2px 8px rgba(0,0,0,.3); }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #1f1f1f; outline-offset: 2px; }
.panel { position: fixed; right: 20px; bottom: 80px; z-index: 2147483001; width: 360px;
  height: 520px; max-height: calc(100vh - 100px); display: flex; flex-direction: column;
  background: #fff; color: #1f1f1f; border-radius: 12px; box-shadow: 0 4px 24px rgba(0,0,0,.3); }
.panel[hidden] { display: none; }
header { display: flex; align-items: center; justify-content: space-between;
  background: #0b57d0; color: #fff; padding: 8px 12px; border-radius: 12px 12px 0 0; }
h2 { margin: 0; font-size: 17px; }
.close { background: transparent; color: #fff; border: 0; font-size: 24px; cursor: pointer; line-height: 1; }
.log { flex: 1; overflow-y: auto; margin: 0; padding: 12px; }
.log:focus-visible { outline: 3px solid #1f1f1f; outline-offset: -3px; }
.line { margin: 6px 0; max-width: 85%; padding: 8px 10px; border-radius: 10px;
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: 15px; }
.customer { margin-left: auto; background: #0b57d0; color: #fff; }
.helpline { background: #eef1f5; color: #1f1f1f; }
.note { display: block; font-size: 12px; margin-top: 4px; }
.refused { background: #fde7e9; color: #8c1d18; }
.status { margin: 0; padding: 0 12px; min-height: 20px; font-size: 13px; color: #444; }
.rating { display: flex; gap: 4px; padding: 4px 12px; align-items: center; }
.rating[hidden] { display: none; }
.rating span { font-size: 14px; margin-right: 6px; }
.star { background: #fff; border: 1px solid #767676; border-radius: 6px; font-size: 22px;
  color: #8a5a00; cursor: pointer; padding: 2px 6px; }
form { display: flex; gap: 8px; padding: 8px 12px 12px; border-top: 1px solid #ddd; }
textarea { flex: 1; resize: none; font-size: 15px; padding: 6px; border: 1px solid #767676; border-radius: 6px; }
.attach { background: #fff; border: 1px solid #767676; border-radius: 6px; font-size: 18px; cursor: pointer; padding: 0 8px; }
.send { background: #0b57d0; color: #fff; border: 0; border-radius: 6px; padding: 0 14px; font-size: 15px; cursor: pointer; }
.hidden-label { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 480px) {
  .panel { right: 0; bottom: 0; width: 100%; height: 100%; max-height: 100%; border-radius: 0; }
  header { border-radius: 0; }
}
`;

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined) made.setAttribute(name, value);
  }
  if (text !== undefined) made.textContent = text;
  return made;
}

class Chat {
  private root: ShadowRoot;
  private launcher: HTMLButtonElement;
  private panel: HTMLElement;
  private log: HTMLDivElement;
  private status: HTMLParagraphElement;
  private rating: HTMLDivElement;
  private input: HTMLTextAreaElement;
  /// Shown lines by their id (the backend's; a customer's is `c_` and the page's id).
  private lines = new Map<string, HTMLDivElement>();
  private lastSeq = 0;
  private reading = false;
  private flushing = false;

  constructor(private words: WidgetWords) {
    const host = element("div", { id: "helpline-chat", lang: language });
    document.body.append(host);
    this.root = host.attachShadow({ mode: "open" });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
    this.root.adoptedStyleSheets = [sheet];

    this.launcher = element(
      "button",
      { type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "helpline-chat-panel" },
      words.open,
    );
    this.panel = element("section", {
      id: "helpline-chat-panel",
      class: "panel",
      role: "dialog",
      "aria-label": words.title,
    });
    this.panel.hidden = true;
    const header = element("header");
    const close = element("button", { type: "button", class: "close", "aria-label": words.close }, "×");
    header.append(element("h2", {}, words.title), close);
    // Focusable, so that a keyboard scrolls it.
    this.log = element("div", {
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-label": words.title,
      tabindex: "0",
    });
    this.status = element("p", { class: "status", role: "status" });
    this.rating = element("div", { class: "rating", role: "group", "aria-label": words.rate });
    this.rating.hidden = true;
    this.rating.append(element("span", { "aria-hidden": "true" }, words.rate));
    for (const stars of RATING) {
      const star = element(
        "button",
        { type: "button", class: "star", "aria-label": fill(words.stars, stars), "data-stars": stars },
        "★",
      );
      star.addEventListener("click", () => this.submit(stars));
      this.rating.append(star);
    }
    const form = element("form");
    const label = element("label", { for: "helpline-chat-input", class: "hidden-label" }, words.message);
    this.input = element("textarea", {
      id: "helpline-chat-input",
      rows: "2",
      placeholder: words.placeholder,
      maxlength: "4096",
    });
    const send = element("button", { type: "submit", class: "send" }, words.send);
    // A visible button for the file picker, which stays out of sight and of the tab order.
    const picker = element("input", { type: "file", class: "hidden-label", tabindex: "-1", "aria-hidden": "true" });
    picker.accept = "image/*,video/*,audio/*,application/pdf,text/plain";
    const attach = element("button", { type: "button", class: "attach", "aria-label": words.attach, title: words.attach }, "📎");
    attach.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      for (const file of Array.from(picker.files ?? [])) this.submit("", file);
      picker.value = "";
    });
    form.append(label, attach, picker, this.input, send);
    this.panel.append(header, this.log, this.status, this.rating, form);
    this.root.append(this.launcher, this.panel);

    this.launcher.addEventListener("click", () => (this.panel.hidden ? this.open() : this.close()));
    close.addEventListener("click", () => this.close());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = "";
      this.submit(text);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    // A session from before (the page opened again): read its conversation, and send
    // what had not gone out.
    if (saved.token) this.read();
    if (saved.outbox.length) {
      for (const waiting of saved.outbox) this.showPending(waiting);
      this.flush();
    }
  }

  open() {
    this.panel.hidden = false;
    this.launcher.setAttribute("aria-expanded", "true");
    this.input.focus();
    this.log.scrollTop = this.log.scrollHeight;
  }

  close() {
    this.panel.hidden = true;
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.focus();
  }

  private say(text: string) {
    this.status.textContent = text;
  }

  private submit(text: string, file?: File) {
    const outgoing: Outgoing = { id: newId(), text, fileName: file?.name };
    if (file) files.set(outgoing.id, file);
    saved.outbox.push(outgoing);
    save();
    this.showPending(outgoing);
    this.rating.hidden = true;
    this.flush();
  }

  private showPending(outgoing: Outgoing) {
    const attached = outgoing.fileName ? [outgoing.fileName] : [];
    const line = this.line(`c_${outgoing.id}`, "customer", shownText(outgoing.text, attached), true);
    line.append(element("span", { class: "note" }, this.words.sending));
  }

  /// A line in the log, made once per id. Lines still waiting to be sent stay last: what
  /// the backend has kept is shown above them, in its order.
  private line(id: string, from: "customer" | "helpline", text: string, pending = false): HTMLDivElement {
    let line = this.lines.get(id);
    if (!line) {
      line = element("div", { class: `line ${from}${pending ? " pending" : ""}` });
      line.append(
        element("span", { class: "hidden-label" }, `${from === "customer" ? this.words.you : this.words.us}: `),
        element("span", { class: "text" }, text),
      );
      this.lines.set(id, line);
      const firstPending = pending ? null : this.log.querySelector(".pending");
      this.log.insertBefore(line, firstPending);
      this.log.scrollTop = this.log.scrollHeight;
    }
    return line;
  }

  /// Sends the outbox in order, each message until the backend took it.
  private async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      let attempt = 0;
      while (saved.outbox.length) {
        const next = saved.outbox[0];
        const outcome = await this.post(next);
        if (outcome === "again") {
          const note = this.lines.get(`c_${next.id}`)?.querySelector(".note");
          if (note) note.textContent = this.words.not_sent;
          await sleep(backoff(attempt++));
          continue;
        }
        attempt = 0;
        if (outcome === "refused") {
          const line = this.lines.get(`c_${next.id}`);
          line?.classList.add("refused");
          const note = line?.querySelector(".note");
          if (note) note.textContent = this.words.refused;
        }
        saved.outbox.shift();
        save();
      }
    } finally {
      this.flushing = false;
    }
  }

  private async post(outgoing: Outgoing): Promise<"taken" | "refused" | "again"> {
    try {
      if (!saved.token) {
        const opened = await fetch(`${base}/widget/api/sessions`, { method: "POST" });
        if (!opened.ok) return "again";
        saved.token = ((await opened.json()) as { token: string }).token;
        save();
        this.read();
      }
      if (outgoing.fileName && !outgoing.upload) {
        const file = files.get(outgoing.id);
        // The page was opened again before the file went: it is gone.
        if (!file) return "refused";
        const uploaded = await fetch(`${base}/widget/api/uploads`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${saved.token}`,
            "content-type": file.type || "application/octet-stream",
          },
          body: file,
        });
        if (uploaded.status === 401) {
          saved.token = null;
          save();
          return "again";
        }
        if (uploaded.status === 413 || uploaded.status === 415 || uploaded.status === 400) return "refused";
        if (!uploaded.ok) return "again";
        outgoing.upload = ((await uploaded.json()) as { upload: string }).upload;
        save();
      }
      const attachments = outgoing.upload ? [{ upload: outgoing.upload, file_name: outgoing.fileName }] : [];
      const answer = await fetch(`${base}/widget/api/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${saved.token}`, "content-type": "application/json" },
        body: JSON.stringify({ id: outgoing.id, text: outgoing.text, locale: language, attachments }),
      });
      if (answer.ok) return "taken";
      if (answer.status === 401) {
        // Not a session of this site's (any more): the next try opens a new one.
        saved.token = null;
        save();
        return "again";
      }
      return answer.status === 400 ? "refused" : "again";
    } catch {
      return "again";
    }
  }

  /// Reads the session's conversation from after the last sequence shown, and on, opening
  /// the reading again whenever it breaks.
  private async read() {
    if (this.reading) return;
    this.reading = true;
    let attempt = 0;
    while (saved.token) {
      const token = saved.token;
      const abort = new AbortController();
      let watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
      try {
        const answer = await fetch(`${base}/widget/api/events?after=${this.lastSeq}`, {
          headers: { authorization: `Bearer ${token}` },
          cache: "no-store",
          signal: abort.signal,
        });
        if (answer.status === 401) {
          saved.token = null;
          save();
          break;
        }
        if (!answer.ok || !answer.body) throw new Error(`events: ${answer.status}`);
        this.say("");
        attempt = 0;
        const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          clearTimeout(watchdog);
          watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = frame
              .split("\n")
              .filter((line) => line.startsWith("data: "))
              .map((line) => line.slice(6))
              .join("\n");
            if (data) this.receive(JSON.parse(data) as Kept);
          }
        }
      } catch {
        // The network or the server went away: read on from the last sequence below.
      } finally {
        clearTimeout(watchdog);
      }
      this.say(this.words.reconnecting);
      await sleep(backoff(attempt++));
    }
    this.reading = false;
  }

  private receive(kept: Kept) {
    if (kept.seq <= this.lastSeq) return;
    this.lastSeq = kept.seq;
    const from = kept.from ?? "helpline";
    const id = kept.id ?? `seq-${kept.seq}`;
    const line = this.line(id, from, kept.erased ? this.words.erased : shownText(kept.text ?? "", kept.attachments ?? []));
    // A message of the customer's the backend kept: no longer waiting, and in its place.
    if (line.classList.contains("pending")) {
      line.classList.remove("pending");
      line.querySelector(".note")?.remove();
      this.log.insertBefore(line, this.log.querySelector(".pending"));
    }
    if (from === "helpline") {
      const rating = kept.quick_replies ?? [];
      this.rating.hidden = !(rating.length === RATING.length && rating.every((r, i) => r === RATING[i]));
    } else {
      this.rating.hidden = true;
    }
  }
}

function start() {
  if (document.getElementById("helpline-chat")) return;
  new Chat(t);
}

if (document.body) start();
else document.addEventListener("DOMContentLoaded", start);
