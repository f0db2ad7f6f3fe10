// The console's page: sign-in, then the agent's inbox over the AgentDesk API (gRPC-Web,
// clients generated from proto/). Every text that comes from the server is set as text,
// never as markup. The session cookie is out of this script's reach; the CSRF token is
// read from its own cookie and sent with every call.

import { GrpcWebFetchTransport } from "@protobuf-ts/grpcweb-transport";
import { AgentDeskClient } from "./gen/helpline/v1/agent_desk.client";
import type { AgentTicket } from "./gen/helpline/v1/agent_desk";
import { AgentPresence } from "./gen/helpline/v1/agents";
import { Channel } from "./gen/helpline/v1/common";
import type { MessageBody } from "./gen/helpline/v1/common";
import type { EventEnvelope } from "./gen/helpline/v1/events";
import { Timestamp } from "./gen/google/protobuf/timestamp";
import { TicketQueryClient } from "./gen/helpline/v1/ticket_query.client";
import { TicketPhase } from "./gen/helpline/v1/ticket_query";
import { FeedbackClient } from "./gen/helpline/v1/feedback.client";
import { ReportsClient } from "./gen/helpline/v1/reports.client";
import type { ServiceLevelAlarm } from "./gen/helpline/v1/reports";
import { SlaClock } from "./gen/helpline/v1/events";
import type { CannedReply, CustomerContact } from "./gen/helpline/v1/agent_desk";
import { CsatGrouping } from "./gen/helpline/v1/feedback";
import { type Key, locale, speak, t } from "./i18n";

interface Who {
  agent: string;
  name: string;
  role: string;
  /** The agent's languages, the console's first. */
  languages: string[];
  expires_at: number;
}

/** One line of a conversation. */
interface Line {
  /** The event's id: a line the watch and the conversation's read both bring is one. */
  id: string;
  from: "customer" | "bot" | "agent" | "note" | "system";
  text: string;
  at: Date;
  /** The message's id, which a later AttachmentStored names. */
  messageId?: string;
  /** An attachment: its object in the media bucket once stored (empty until then). */
  media?: { object: string; mimeType: string };
}

interface Held {
  ticket: AgentTicket;
  lines: Line[];
  /** The ids of `lines`. */
  seen: Set<string>;
  unread: number;
  lastCustomerMessage?: Date;
}

const CHANNELS: Record<number, string> = {
  [Channel.WHATSAPP]: "WhatsApp",
  [Channel.MESSENGER]: "Messenger",
  [Channel.TELEGRAM]: "Telegram",
  [Channel.VIBER]: "Viber",
  [Channel.APPLE_MESSAGES]: "Apple Messages",
  [Channel.WEB_CHAT]: "web chat",
};

const $ = (id: string) => document.getElementById(id) as HTMLElement;
const WHATSAPP_WINDOW_MS = 24 * 60 * 60 * 1000;

function csrfToken(): string {
  const pair = document.cookie.split("; ").find((c) => c.startsWith("helpline_csrf="));
  return pair ? pair.slice("helpline_csrf=".length) : "";
}

const transport = new GrpcWebFetchTransport({
  baseUrl: location.origin,
  format: "binary",
  fetchInit: { credentials: "same-origin" },
  interceptors: [
    {
      interceptUnary(next, method, input, options) {
        return next(method, input, { ...options, meta: { ...options.meta, "x-csrf-token": csrfToken() } });
      },
      interceptServerStreaming(next, method, input, options) {
        return next(method, input, { ...options, meta: { ...options.meta, "x-csrf-token": csrfToken() } });
      },
    },
  ],
});
const desk = new AgentDeskClient(transport);
const query = new TicketQueryClient(transport);
const feedback = new FeedbackClient(transport);
const reports = new ReportsClient(transport);

const held = new Map<string, Held>();
let selected: string | null = null;
let watching: AbortController | null = null;
/** The shortcut of the canned reply the message box was filled from, until it is sent or emptied. */
let cannedReply = "";
/** The selected ticket's customer's contacts, and which ticket they were read for. */
let contacts: { ticketId: string; list: CustomerContact[] } | null = null;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string) {
  const element = document.createElement(tag);
  if (text !== undefined) element.textContent = text;
  if (className !== undefined) element.className = className;
  return element;
}

function bodyText(body: MessageBody | undefined): string {
  switch (body?.content.oneofKind) {
    case "text":
      return body.content.text;
    case "media":
      return body.content.media.caption ? `${t("attachment")} ${body.content.media.caption}` : t("attachment");
    case "location":
      return t("location");
    default:
      return "";
  }
}

function when(stamp: Timestamp | undefined): Date {
  return stamp ? Timestamp.toDate(stamp) : new Date();
}

/** What an event adds to its ticket's conversation, if anything. */
function lineOf(event: EventEnvelope): Line | null {
  const line = lineContent(event);
  return line ? { id: event.eventId, at: when(event.occurredAt), ...line } : null;
}

function lineContent(event: EventEnvelope): Omit<Line, "id" | "at"> | null {
  const e = event.event;
  switch (e.oneofKind) {
    case "customerMessageReceived": {
      const received = e.customerMessageReceived;
      const media = received.body?.content.oneofKind === "media" ? received.body.content.media : undefined;
      return {
        from: "customer",
        text: bodyText(received.body),
        messageId: received.messageId,
        media: media ? { object: media.object, mimeType: media.mimeType } : undefined,
      };
    }
    case "botMessageSent":
      return { from: "bot", text: bodyText(e.botMessageSent.body) };
    case "agentMessageSent":
      return { from: "agent", text: bodyText(e.agentMessageSent.body) };
    // The brand wrote first ("your repair is ready"): the customer may be answering it.
    case "notificationSent":
      return { from: "bot", text: bodyText(e.notificationSent.body) };
    case "agentNoteAdded":
      return { from: "note", text: e.agentNoteAdded.text };
    case "ticketResolved":
      return { from: "system", text: t("line_resolved", e.ticketResolved.summary) };
    case "ticketReleased":
      return { from: "system", text: t("line_released") };
    default:
      return null;
  }
}

function onEvent(ticketId: string, event: EventEnvelope) {
  const entry = held.get(ticketId);
  if (!entry) return;
  for (const one of [event, ...event.moreEvents]) {
    attach(entry, one);
    const line = lineOf(one);
    if (line && !entry.seen.has(line.id)) {
      entry.seen.add(line.id);
      entry.lines.push(line);
      if (line.from === "customer") {
        entry.lastCustomerMessage = line.at;
        if (selected !== ticketId) entry.unread += 1;
      }
    }
    const kind = one.event.oneofKind;
    if (kind === "ticketReleased" || kind === "ticketResolved" || kind === "ticketClosed") {
      held.delete(ticketId);
      if (selected === ticketId) selected = null;
    }
    if (kind === "agentAccepted") entry.ticket.accepted = true;
  }
}

function onTicket(ticket: AgentTicket) {
  const lastCustomerMessage = ticket.lastCustomerMessageAt ? Timestamp.toDate(ticket.lastCustomerMessageAt) : undefined;
  const known = held.get(ticket.ticketId);
  if (known) {
    known.ticket = ticket;
    known.lastCustomerMessage = lastCustomerMessage ?? known.lastCustomerMessage;
  } else {
    held.set(ticket.ticketId, { ticket, lines: [], seen: new Set(), unread: 0, lastCustomerMessage });
    if (!ticket.accepted) announce(t("new_offer", ticket.details?.product || ticket.queue));
  }
  // The conversation so far (and, after a reconnect, what the broken stream missed).
  void loadConversation(ticket.ticketId);
}

/** Adds the ticket's earlier events to its lines, in the order they happened. */
async function loadConversation(ticketId: string) {
  let events: EventEnvelope[];
  try {
    ({ events } = await desk.getConversation({ ticketId }).response);
  } catch {
    // The watch's lines stand; the next stream reads the conversation again.
    return;
  }
  const entry = held.get(ticketId);
  if (!entry) return;
  const all = events.flatMap((event) => [event, ...event.moreEvents]);
  for (const event of all) {
    const line = lineOf(event);
    if (!line || entry.seen.has(line.id)) continue;
    entry.seen.add(line.id);
    entry.lines.push(line);
    if (line.from === "customer" && (!entry.lastCustomerMessage || line.at > entry.lastCustomerMessage)) {
      entry.lastCustomerMessage = line.at;
    }
  }
  for (const event of all) attach(entry, event);
  // Stable: lines of one moment keep the order they came in.
  entry.lines.sort((a, b) => a.at.getTime() - b.at.getTime());
  render();
}

/** An attachment fetched after its message: the message's line can show it now. */
function attach(entry: Held, event: EventEnvelope) {
  if (event.event.oneofKind !== "attachmentStored") return;
  const stored = event.event.attachmentStored;
  const line = entry.lines.find((line) => line.messageId === stored.messageId);
  if (line) line.media = { object: stored.object, mimeType: stored.mimeType };
}

/** Attachments opened in this page, by object: shown again on every render. */
const opened = new Map<string, { url: string; mimeType: string }>();

async function openAttachment(ticketId: string, object: string) {
  try {
    const { data, mimeType } = await desk.getAttachment({ ticketId, object }).response;
    const url = URL.createObjectURL(new Blob([data as BlobPart], { type: mimeType }));
    opened.set(object, { url, mimeType });
  } catch (error) {
    $("action-error").textContent = String((error as Error).message ?? error);
  }
  renderConversation();
}

/** A line of the conversation; an attachment is opened on request, an image shown. */
function lineElement(line: Line, ticketId: string): HTMLLIElement {
  const item = el("li", line.text, `line ${line.from}`);
  const object = line.media?.object;
  if (!object) return item;
  const shown = opened.get(object);
  if (!shown) {
    const button = el("button", t("show_attachment"), "attachment");
    button.type = "button";
    button.addEventListener("click", () => void openAttachment(ticketId, object));
    item.append(" ", button);
  } else if (shown.mimeType.startsWith("image/")) {
    const image = el("img", undefined, "attachment");
    image.src = shown.url;
    image.alt = t("attachment_from_customer");
    item.append(image);
  } else {
    const link = el("a", t("download_attachment"), "attachment");
    link.href = shown.url;
    link.download = object;
    item.append(" ", link);
  }
  return item;
}

/** A short chime: a new offer is waiting (sign-in was the gesture that lets a page play). */
function chime() {
  try {
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    const volume = audio.createGain();
    tone.frequency.value = 880;
    volume.gain.setValueAtTime(0.15, audio.currentTime);
    volume.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    tone.connect(volume).connect(audio.destination);
    tone.onended = () => void audio.close();
    tone.start();
    tone.stop(audio.currentTime + 0.4);
  } catch {
    // No audio here: the title and the screen reader's announcement still say it.
  }
}

function announce(text: string) {
  $("announce").textContent = text;
  chime();
  if (document.hidden) document.title = `(!) helpline console`;
}

/**
 * Keeps a server stream open until `abort`: `follow` opens it and reads it to its end
 * (calling `progress` on each answer); when it ends or breaks, `broken` says so and it is
 * opened again after a pause that doubles up to 10 s and starts over with the next answer.
 * A failure `refused` claims ends it instead.
 */
async function keepOpen(
  abort: AbortSignal,
  follow: (progress: () => void) => Promise<void>,
  broken: () => void,
  refused: (error: unknown) => boolean = () => false,
) {
  let pause = 500;
  while (!abort.aborted) {
    try {
      await follow(() => (pause = 500));
    } catch (error) {
      if (abort.aborted || refused(error)) return;
    }
    broken();
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10_000);
  }
}

async function watch() {
  watching?.abort();
  const abort = new AbortController();
  watching = abort;
  await keepOpen(
    abort.signal,
    async (progress) => {
      // A new stream starts with every ticket the agent holds: what it does not send
      // again within a few seconds has left meanwhile. What was held keeps its
      // conversation.
      const resent = new Set<string>();
      const sweep =
        held.size === 0
          ? undefined
          : setTimeout(() => {
              for (const id of [...held.keys()]) if (!resent.has(id)) held.delete(id);
              render();
            }, 3000);
      try {
        const call = desk.watch({}, { abort: abort.signal });
        $("connection").textContent = t("connected");
        for await (const update of call.responses) {
          progress();
          if (update.update.oneofKind === "ticket") {
            resent.add(update.ticketId);
            onTicket(update.update.ticket);
          } else if (update.update.oneofKind === "event") onEvent(update.ticketId, update.update.event);
          render();
        }
      } finally {
        clearTimeout(sweep);
      }
    },
    // The stream ended or broke: the desk sends the held tickets again on the next one.
    () => ($("connection").textContent = t("reconnecting")),
    (error) => {
      if (!String(error).includes("UNAUTHENTICATED")) return false;
      show(null);
      return true;
    },
  );
}

function render() {
  const offers = $("offers");
  const mine = $("mine");
  offers.replaceChildren();
  mine.replaceChildren();
  for (const [id, entry] of held) {
    const item = el("li");
    item.dataset.ticket = id;
    const open = el("button", `${entry.ticket.details?.product || entry.ticket.queue} · ${CHANNELS[entry.ticket.channel] ?? ""}`);
    open.type = "button";
    open.addEventListener("click", () => {
      selected = id;
      entry.unread = 0;
      render();
    });
    item.append(open);
    if (entry.unread > 0) item.append(el("span", String(entry.unread), "unread"));
    if (entry.ticket.accepted) {
      mine.append(item);
    } else {
      const expires = entry.ticket.offerExpiresAt ? Timestamp.toDate(entry.ticket.offerExpiresAt) : null;
      if (expires) {
        const countdown = el("span", "", "countdown");
        countdown.dataset.expires = String(expires.getTime());
        item.append(countdown);
      }
      const accept = el("button", t("accept"), "accept");
      accept.type = "button";
      accept.addEventListener("click", () => act(() => desk.accept({ ticketId: id }), id));
      item.append(accept);
      offers.append(item);
    }
  }
  renderConversation();
  tick();
}

function renderConversation() {
  const view = $("conversation");
  const entry = selected ? held.get(selected) : undefined;
  view.hidden = !entry;
  if (!entry || !selected) return;
  const ticket = entry.ticket;
  $("summary").textContent = ticket.summary;
  $("product").textContent = ticket.details?.product ?? "";
  $("serial").textContent = ticket.details?.serialNumber ?? "";
  $("problem").textContent = ticket.details?.problem ?? "";
  const lines = $("lines");
  const ticketId = selected;
  lines.replaceChildren(...entry.lines.map((line) => lineElement(line, ticketId)));
  const whatsapp = ticket.channel === Channel.WHATSAPP;
  const outside =
    whatsapp && (!entry.lastCustomerMessage || Date.now() - entry.lastCustomerMessage.getTime() > WHATSAPP_WINDOW_MS);
  $("window").textContent = !whatsapp
    ? ""
    : outside
      ? t("window_outside")
      : t("window_inside", new Date(entry.lastCustomerMessage!.getTime() + WHATSAPP_WINDOW_MS).toLocaleString(locale()));
  (document.getElementById("reply-form") as HTMLFormElement).hidden = !ticket.accepted;
  (document.getElementById("transfer-form") as HTMLFormElement).hidden = !ticket.accepted;
  if (contacts?.ticketId !== ticketId) void loadContacts(ticketId);
  renderContacts();
}

/** The customer's contacts (their own first, then those an agent linked), read afresh. */
async function loadContacts(ticketId: string) {
  contacts = { ticketId, list: [] };
  $("history").hidden = true;
  $("history-lines").replaceChildren();
  try {
    const { contacts: list } = await desk.listLinkedContacts({ ticketId }).response;
    if (contacts?.ticketId === ticketId) contacts = { ticketId, list };
  } catch (error) {
    $("action-error").textContent = String((error as Error).message ?? error);
  }
  renderContacts();
}

function renderContacts() {
  const list = $("contact-list");
  if (!contacts || contacts.ticketId !== selected) return list.replaceChildren();
  const ticketId = contacts.ticketId;
  list.replaceChildren(
    ...contacts.list.map((contact, i) => {
      const item = el("li", t("contact_tickets", CHANNELS[contact.channel] ?? "?", contact.ticketIds.length));
      item.dataset.customer = contact.customerId;
      if (i === 0) {
        item.append(" (", t("contact_this"), ")");
      } else {
        for (const other of contact.ticketIds) {
          const show = el("button", t("show_history"));
          show.type = "button";
          show.dataset.ticket = other;
          show.addEventListener("click", () => void showHistory(other));
          item.append(" ", show);
        }
        const unlink = el("button", t("unlink"));
        unlink.type = "button";
        unlink.addEventListener("click", () =>
          act(async () => {
            const other = { who: { oneofKind: "customerId" as const, customerId: contact.customerId } };
            const { contacts: list } = await desk.unlinkContacts({ ticketId, other }).response;
            contacts = { ticketId, list };
          }, ticketId),
        );
        item.append(" ", unlink);
      }
      return item;
    }),
  );
}

/** A ticket of a linked contact, read only: the customer's history on that contact. */
async function showHistory(ticketId: string) {
  let events: EventEnvelope[];
  try {
    ({ events } = await desk.getConversation({ ticketId }).response);
  } catch (error) {
    $("action-error").textContent = String((error as Error).message ?? error);
    return;
  }
  const lines = events
    .flatMap((event) => [event, ...event.moreEvents])
    .map(lineOf)
    .filter((line): line is Line => line !== null);
  $("history-lines").replaceChildren(...lines.map((line) => el("li", line.text, `line ${line.from}`)));
  $("history").hidden = false;
}

/** The canned replies matching what the agent typed, filled in for the selected ticket. */
async function searchCanned(query: string) {
  const ticketId = selected;
  const list = $("canned-list");
  if (!ticketId || !query.trim()) return list.replaceChildren();
  let replies: CannedReply[];
  try {
    ({ replies } = await desk.listCannedReplies({ ticketId, query }).response);
  } catch (error) {
    $("action-error").textContent = String((error as Error).message ?? error);
    return;
  }
  if (replies.length === 0) return list.replaceChildren(el("li", t("canned_none")));
  list.replaceChildren(
    ...replies.map((reply) => {
      const item = el("li");
      const use = el("button", `${reply.shortcut} · ${reply.title}`);
      use.type = "button";
      use.title = reply.text;
      use.addEventListener("click", () => {
        ($("reply") as HTMLTextAreaElement).value = reply.text;
        cannedReply = reply.shortcut;
        ($("canned-search") as HTMLInputElement).value = "";
        list.replaceChildren();
        $("reply").focus();
      });
      item.append(use);
      return item;
    }),
  );
}

const CLOCKS: Record<number, Key> = {
  [SlaClock.FIRST_RESPONSE]: "clock_first_response",
  [SlaClock.NEXT_RESPONSE]: "clock_next_response",
  [SlaClock.RESOLUTION]: "clock_resolution",
};

/** One SLA alarm at the top of the supervisor's alerts (the latest 50 are kept). */
function onAlarm(alarm: ServiceLevelAlarm) {
  const list = $("sla-alerts");
  const item = el(
    "li",
    t(
      "sla_alert_line",
      t(alarm.breached ? "sla_breached" : "sla_warning"),
      t(CLOCKS[alarm.clock] ?? "clock_first_response"),
      alarm.ticketId.slice(0, 8),
      alarm.queue || "—",
      Math.round(Number(alarm.targetSeconds) / 60),
    ),
    alarm.breached ? "alert breached" : "alert warning",
  );
  item.dataset.ticket = alarm.ticketId;
  list.prepend(item);
  while (list.children.length > 50) list.lastElementChild?.remove();
}

/** The supervisor's alert feed; after a break it resumes after the last alarm it showed. */
async function watchAlarms(abort: AbortSignal) {
  let after = 0n;
  await keepOpen(
    abort,
    async (progress) => {
      const call = reports.watchServiceLevelAlarms({ queue: "", afterSequence: after }, { abort });
      for await (const { alarm } of call.responses) {
        progress();
        if (!alarm) continue;
        if (alarm.sequence > after) after = alarm.sequence;
        onAlarm(alarm);
      }
    },
    () => undefined,
    // Signed out or no supervisor any more: the inbox's own watch says so; stop here.
    (error) => /UNAUTHENTICATED|PERMISSION_DENIED/.test(String(error)),
  );
}

// The agent's actions go to the desk one after the other, in the order they were
// clicked: a note typed right after a reply must not race it to the ticket.
let acting: Promise<void> = Promise.resolve();

function act(call: () => PromiseLike<unknown>, ticketId: string): Promise<void> {
  acting = acting.then(async () => {
    $("action-error").textContent = "";
    try {
      await call();
      selected = ticketId;
    } catch (error) {
      $("action-error").textContent = String((error as Error).message ?? error);
    }
    render();
  });
  return acting;
}

// The supervisor's view: figures read afresh whenever a ticket of the region changes
// (TicketQuery.WatchTickets pushes each change; nothing is polled).
let supervising: AbortController | null = null;
let refreshing: ReturnType<typeof setTimeout> | null = null;
let latestChange = 0n;

function cells(row: HTMLTableRowElement, values: string[]) {
  row.replaceChildren(...values.map((value) => el("td", value)));
  return row;
}

function table(id: string, rows: string[][]) {
  const body = document.querySelector(`#${id} tbody`) as HTMLElement;
  body.replaceChildren(...rows.map((values) => cells(document.createElement("tr"), values)));
}

const PRESENCE: Record<number, Key> = {
  [AgentPresence.ONLINE]: "available",
  [AgentPresence.AWAY]: "away",
  [AgentPresence.OFFLINE]: "offline",
};
const PHASES: [TicketPhase, Key][] = [
  [TicketPhase.OPEN, "phase_open"],
  [TicketPhase.ROUTING, "phase_routing"],
  [TicketPhase.QUEUED, "phase_queued"],
  [TicketPhase.ASSIGNED, "phase_assigned"],
  [TicketPhase.REFERRED_TO_STORE, "phase_referred"],
  [TicketPhase.RESOLVED, "phase_resolved"],
  [TicketPhase.AWAITING_RATING, "phase_awaiting_rating"],
  [TicketPhase.CLOSED, "phase_closed"],
  [TicketPhase.ABANDONED, "phase_abandoned"],
];

async function refreshFigures(tries = 0) {
  refreshing = null;
  const [queues, agents, tickets] = await Promise.all([
    desk.listQueues({}).response,
    desk.listAgents({}).response,
    query.listTickets({ limit: 1000 }).response,
  ]);
  table(
    "queues",
    queues.queues.map((q) => [q.name || q.queue, String(q.waiting), `${q.longestWaitSecs} s`, String(q.assigned), String(q.agentsOnline)]),
  );
  table(
    "agents",
    agents.agents.map((a) => [a.name || a.agentId, t(PRESENCE[a.presence] ?? "offline"), t("load_of", a.load, a.maxTickets)]),
  );
  const counts = new Map<TicketPhase, number>();
  for (const ticket of tickets.tickets) counts.set(ticket.phase, (counts.get(ticket.phase) ?? 0) + 1);
  table(
    "phases",
    PHASES.filter(([phase]) => counts.has(phase)).map(([phase, name]) => [t(name), String(counts.get(phase))]),
  );
  const groups: [Key, CsatGrouping][] = [
    ["by_queue", CsatGrouping.QUEUE],
    ["by_agent", CsatGrouping.AGENT],
    ["by_day", CsatGrouping.DAY],
  ];
  const csat = await Promise.all(groups.map(([, by]) => feedback.getCsat({ groupBy: [by] }).response));
  const rows: string[][] = [];
  csat.forEach((answer, i) => {
    for (const row of answer.rows) {
      if (row.ratingsRequested === 0 && row.ratings === 0) continue;
      rows.push([t(groups[i][0]), row.group[0] || "—", String(row.ratings), row.average.toFixed(2), `${row.csatPercent.toFixed(0)} %`]);
    }
  });
  table("csat", rows);
  const applied = csat[0].position?.appliedSequence ?? 0n;
  $("figures-position").textContent = t("live_up_to", String(applied));
  // The CSAT projection follows the log on its own: if it has not reached the change
  // that called for this refresh yet, look again in a moment (a few times at most).
  if (applied < latestChange && tries < 10) {
    refreshing = setTimeout(() => void refreshFigures(tries + 1), 300);
  }
}

function figuresChanged() {
  if (refreshing === null) refreshing = setTimeout(() => void refreshFigures().catch(() => undefined), 200);
}

async function supervise() {
  supervising?.abort();
  const abort = new AbortController();
  supervising = abort;
  void watchAlarms(abort.signal);
  await keepOpen(
    abort.signal,
    async (progress) => {
      const call = query.watchTickets({}, { abort: abort.signal });
      await refreshFigures();
      for await (const change of call.responses) {
        progress();
        const sequence = change.event?.sequence ?? 0n;
        if (sequence > latestChange) latestChange = sequence;
        figuresChanged();
      }
    },
    () => ($("figures-position").textContent = t("reconnecting")),
  );
}

function show(who: Who | null) {
  $("sign-in").hidden = who !== null;
  $("inbox").hidden = who === null;
  $("sign-out").hidden = who === null;
  $("who").hidden = who === null;
  $("supervisor").hidden = who === null || (who.role !== "supervisor" && who.role !== "admin");
  if (who === null) {
    speak(navigator.languages);
    watching?.abort();
    supervising?.abort();
    held.clear();
    selected = null;
    return;
  }
  speak(who.languages ?? []);
  const role = ({ agent: "role_agent", supervisor: "role_supervisor", admin: "role_admin" } as const)[who.role] ?? "role_agent";
  $("who").textContent = `${who.name || who.agent} (${t(role as Key)})`;
  void desk.signIn({}).then(
    ({ response }) => {
      // The agent's own queues are offered as transfer targets; any queue id is taken.
      $("transfer-targets").replaceChildren(
        ...response.queues.map((queue) => Object.assign(document.createElement("option"), { value: queue })),
      );
      return watch();
    },
    (error) => ($("action-error").textContent = String(error)),
  );
  if (!$("supervisor").hidden) void supervise();
}

async function current(): Promise<Who | null> {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  return response.status === 200 ? response.json() : null;
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const agent = ($("agent") as HTMLInputElement).value;
  const password = $("password") as HTMLInputElement;
  const response = await fetch("/api/sign-in", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ agent, password: password.value }),
  });
  password.value = "";
  if (response.ok) {
    show(await response.json());
  } else {
    const problem = await response.json().catch(() => ({ error: response.statusText }));
    $("sign-in-error").textContent =
      response.status === 401 ? t("wrong_credentials") : response.status === 429 ? t("locked") : problem.error;
  }
});

$("sign-out").addEventListener("click", async () => {
  await desk.signOut({}).then(undefined, () => undefined);
  await fetch("/api/sign-out", {
    method: "POST",
    credentials: "same-origin",
    headers: { "x-csrf-token": csrfToken() },
  });
  show(null);
});

$("presence").addEventListener("change", (event) => {
  const away = (event.target as HTMLSelectElement).value === "away";
  void desk.setPresence({ presence: away ? AgentPresence.AWAY : AgentPresence.ONLINE });
});

$("reply-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("reply") as HTMLTextAreaElement;
  const ticketId = selected;
  if (!ticketId || !text.value.trim()) return;
  const body = { content: { oneofKind: "text" as const, text: text.value } };
  const requestId = crypto.randomUUID();
  // Sent as the agent edited it; the record says which canned reply it came from.
  const canned = cannedReply;
  text.value = "";
  cannedReply = "";
  void act(() => desk.reply({ ticketId, body, requestId, cannedReply: canned }), ticketId);
});

$("reply").addEventListener("input", () => {
  if (!($("reply") as HTMLTextAreaElement).value.trim()) cannedReply = "";
});

let cannedTyping: ReturnType<typeof setTimeout> | null = null;
$("canned-search").addEventListener("input", () => {
  if (cannedTyping !== null) clearTimeout(cannedTyping);
  cannedTyping = setTimeout(() => void searchCanned(($("canned-search") as HTMLInputElement).value), 150);
});
$("canned-search").addEventListener("keydown", (event) => {
  // Enter picks the first match rather than sending the message box.
  if ((event as KeyboardEvent).key !== "Enter") return;
  event.preventDefault();
  ($("canned-list").querySelector("button") as HTMLButtonElement | null)?.click();
});

$("transfer-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ticketId = selected;
  const target = ($("transfer-target") as HTMLInputElement).value.trim();
  if (!ticketId || !target) return;
  const toAgent = ($("transfer-kind") as HTMLSelectElement).value === "agent";
  const note = ($("transfer-note") as HTMLInputElement).value;
  const to = toAgent
    ? { oneofKind: "agentId" as const, agentId: target }
    : { oneofKind: "queue" as const, queue: target };
  void act(async () => {
    await desk.transfer({ ticketId, target: to, note }).response;
    ($("transfer-target") as HTMLInputElement).value = "";
    ($("transfer-note") as HTMLInputElement).value = "";
  }, ticketId);
});

$("link-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ticketId = selected;
  const address = ($("link-address") as HTMLInputElement).value.trim();
  if (!ticketId || !address) return;
  const channel = Number(($("link-channel") as HTMLSelectElement).value) as Channel;
  void act(async () => {
    const other = { who: { oneofKind: "contact" as const, contact: { channel, address } } };
    const { contacts: list } = await desk.linkContacts({ ticketId, other }).response;
    contacts = { ticketId, list };
    ($("link-address") as HTMLInputElement).value = "";
  }, ticketId);
});

$("note-button").addEventListener("click", () => {
  const text = $("reply") as HTMLTextAreaElement;
  const ticketId = selected;
  if (!ticketId || !text.value.trim()) return;
  const note = text.value;
  text.value = "";
  void act(() => desk.addNote({ ticketId, text: note }), ticketId);
});

$("release").addEventListener("click", () => {
  if (selected) void act(() => desk.release({ ticketId: selected! }), selected);
});

$("resolve").addEventListener("click", () => {
  const summary = ($("resolution") as HTMLInputElement).value.trim();
  if (selected) void act(() => desk.resolve({ ticketId: selected!, summary }), selected);
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) document.title = "helpline console";
});
// The offers' countdowns tick; nothing else is redrawn, so focus and typing stay put.
function tick() {
  for (const countdown of document.querySelectorAll<HTMLElement>(".countdown")) {
    const left = Math.max(0, Math.round((Number(countdown.dataset.expires) - Date.now()) / 1000));
    countdown.textContent = t("seconds_left", left);
  }
}
setInterval(tick, 1000);

show(await current());
