// The console's words in German and English. The page speaks the first of the signed-in
// agent's languages (their `[[agents]]` entry) that it has, and before sign-in the
// browser's; English otherwise. Static texts carry `data-t` (their text) or
// `data-t-label` (their aria-label) with a key of this table.

const en = {
  sign_in: "Sign in",
  agent_id: "Agent id",
  password: "Password",
  sign_out: "Sign out",
  presence: "Presence",
  available: "Available",
  away: "Away",
  offline: "offline",
  tickets: "Tickets",
  offers: "Offers",
  my_tickets: "My tickets",
  conversation: "Conversation",
  product: "Product",
  serial_number: "Serial number",
  problem: "Problem",
  message: "Message",
  send: "Send to customer",
  add_note: "Add internal note",
  release: "Release to queue",
  resolution: "Resolution",
  resolve: "Resolve",
  accept: "Accept",
  connected: "connected",
  reconnecting: "reconnecting…",
  new_offer: "New offer: {0}",
  seconds_left: "{0} s left",
  window_inside: "Inside WhatsApp's 24-hour window (until {0}).",
  window_outside: "Outside WhatsApp's 24-hour window: the reply goes as the region's template message.",
  wrong_credentials: "Unknown agent or wrong password.",
  locked: "Too many failed sign-ins: try again in a minute.",
  role_agent: "agent",
  role_supervisor: "supervisor",
  role_admin: "admin",
  supervisor_view: "Supervisor view",
  live_up_to: "live, up to event {0}",
  queues: "Queues",
  queue: "Queue",
  waiting: "Waiting",
  longest_wait: "Longest wait",
  with_agents: "With agents",
  agents_online: "Agents online",
  agents: "Agents",
  agent: "Agent",
  load: "Load",
  load_of: "{0} of {1}",
  tickets_by_phase: "Tickets by phase",
  phase: "Phase",
  csat_title: "Customer satisfaction",
  by: "By",
  group: "Group",
  ratings: "Ratings",
  average: "Average",
  csat: "CSAT",
  by_queue: "queue",
  by_agent: "agent",
  by_day: "day",
  phase_open: "with the bot",
  phase_routing: "routing",
  phase_queued: "queued",
  phase_assigned: "with an agent",
  phase_referred: "referred to a store",
  phase_resolved: "resolved",
  phase_awaiting_rating: "awaiting a rating",
  phase_closed: "closed",
  phase_abandoned: "abandoned",
  line_resolved: "resolved: {0}",
  line_released: "released to the queue",
  attachment: "[attachment]",
  show_attachment: "Show attachment",
  download_attachment: "Download attachment",
  attachment_from_customer: "The customer's attachment",
  location: "[location]",
};

export type Key = keyof typeof en;

const de: Record<Key, string> = {
  sign_in: "Anmelden",
  agent_id: "Agenten-ID",
  password: "Passwort",
  sign_out: "Abmelden",
  presence: "Status",
  available: "Verfügbar",
  away: "Abwesend",
  offline: "offline",
  tickets: "Tickets",
  offers: "Angebote",
  my_tickets: "Meine Tickets",
  conversation: "Gespräch",
  product: "Produkt",
  serial_number: "Seriennummer",
  problem: "Problem",
  message: "Nachricht",
  send: "An Kunden senden",
  add_note: "Interne Notiz hinzufügen",
  release: "Zurück in die Warteschlange",
  resolution: "Lösung",
  resolve: "Als gelöst markieren",
  accept: "Annehmen",
  connected: "verbunden",
  reconnecting: "verbinde neu…",
  new_offer: "Neues Angebot: {0}",
  seconds_left: "noch {0} s",
  window_inside: "Im 24-Stunden-Fenster von WhatsApp (bis {0}).",
  window_outside: "Außerhalb des 24-Stunden-Fensters von WhatsApp: die Antwort geht als Vorlagen-Nachricht der Region.",
  wrong_credentials: "Unbekannter Agent oder falsches Passwort.",
  locked: "Zu viele fehlgeschlagene Anmeldungen: bitte in einer Minute erneut versuchen.",
  role_agent: "Agent",
  role_supervisor: "Supervisor",
  role_admin: "Admin",
  supervisor_view: "Supervisor-Ansicht",
  live_up_to: "live, bis Ereignis {0}",
  queues: "Warteschlangen",
  queue: "Warteschlange",
  waiting: "Wartend",
  longest_wait: "Längste Wartezeit",
  with_agents: "Bei Agenten",
  agents_online: "Agenten online",
  agents: "Agenten",
  agent: "Agent",
  load: "Auslastung",
  load_of: "{0} von {1}",
  tickets_by_phase: "Tickets nach Phase",
  phase: "Phase",
  csat_title: "Kundenzufriedenheit",
  by: "Nach",
  group: "Gruppe",
  ratings: "Bewertungen",
  average: "Durchschnitt",
  csat: "CSAT",
  by_queue: "Warteschlange",
  by_agent: "Agent",
  by_day: "Tag",
  phase_open: "beim Bot",
  phase_routing: "wird zugeordnet",
  phase_queued: "wartend",
  phase_assigned: "bei einem Agenten",
  phase_referred: "an einen Store verwiesen",
  phase_resolved: "gelöst",
  phase_awaiting_rating: "wartet auf Bewertung",
  phase_closed: "geschlossen",
  phase_abandoned: "abgebrochen",
  line_resolved: "gelöst: {0}",
  line_released: "zurück in die Warteschlange",
  attachment: "[Anhang]",
  show_attachment: "Anhang anzeigen",
  download_attachment: "Anhang herunterladen",
  attachment_from_customer: "Anhang des Kunden",
  location: "[Standort]",
};

const tables: Record<string, Record<Key, string>> = { en, de };
let current: Record<Key, string> = en;
let currentTag = "en";

/** Speaks the first of `languages` (BCP 47 tags) the console has; English otherwise. */
export function speak(languages: readonly string[]) {
  const tag = languages.map((l) => l.toLowerCase().split("-")[0]).find((l) => l in tables) ?? "en";
  current = tables[tag];
  currentTag = tag;
  document.documentElement.lang = tag;
  for (const element of document.querySelectorAll<HTMLElement>("[data-t]")) {
    element.textContent = current[element.dataset.t as Key] ?? element.textContent;
  }
  for (const element of document.querySelectorAll<HTMLElement>("[data-t-label]")) {
    element.setAttribute("aria-label", current[element.dataset.tLabel as Key] ?? "");
  }
}

/** The text of `key`, `{0}`, `{1}`… replaced by `values`. */
export function t(key: Key, ...values: (string | number)[]): string {
  return current[key].replace(/\{(\d)\}/g, (_, i) => String(values[Number(i)] ?? ""));
}

/** The language spoken now, for dates and numbers. */
export function locale(): string {
  return currentTag;
}
