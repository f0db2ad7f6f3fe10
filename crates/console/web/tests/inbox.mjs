// Agent Anna in a real browser (Debian's chromium, driven by playwright-core): signs in
// to the console (in English, the browser's language) and works in German (her first
// language in [[agents]]), takes the offer, reads the bot's summary and the 24-hour window,
// replies, adds an internal note, sends a canned reply, links the customer's second
// phone and reads its earlier conversation,
// waits for the customer's answer, transfers the ticket with a note (and takes it again
// from the queue), resolves; axe-core on
// every page along the way. Driven by crates/helpline/tests/console_browser.rs, which
// plays the customer: this script says where it is on stdout (READY, REPLIED,
// TRANSFERRED, RESOLVED)
// and fails (exit 1) on anything it does not find.
//
// Supervisor Sabine watches in a second browser context: after the customer's rating
// her CSAT figures show it without a reload (CSAT).
//
// Environment: CONSOLE_URL, AGENT, SUPERVISOR, PASSWORD (both's), SCREENSHOTS (a
// folder), CHROMIUM (the binary, /usr/bin/chromium by default).
import { axe as axeOn, launch, open as openPage, say, signIn } from "./lib.mjs";

const { CONSOLE_URL, AGENT, SUPERVISOR, PASSWORD, SCREENSHOTS } = process.env;
// What the customer writes after Anna's reply (console_browser.rs sends the same list).
const XSS_PAYLOADS = JSON.parse(process.env.XSS_PAYLOADS ?? "[]");

const browser = await launch();
const problems = [];
// While a refusal is what the test asks for, the browser's note of that 401 is no problem.
let refusalExpected = false;
const tolerated = (text) => refusalExpected && text.includes("status of 401");
try {
  const open = () => openPage(browser, problems, { tolerated });
  const page = await open();
  const axe = (name, on = page) => axeOn(on, name, problems);

  // Sabine first, away, so that the offer goes to Anna.
  const supervisor = await open();
  await signIn(supervisor, CONSOLE_URL, SUPERVISOR, PASSWORD);
  await supervisor.locator("#presence").selectOption("away");
  await supervisor.locator("#figures-position", { hasText: "live" }).waitFor();

  await page.goto(CONSOLE_URL);
  await page.getByLabel("Agent id").waitFor();
  await axe("sign-in");
  // A wrong password: refused, in the page's language.
  await page.getByLabel("Agent id").fill(AGENT);
  await page.getByLabel("Password").fill("not the password");
  refusalExpected = true;
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#sign-in-error", { hasText: "Unknown agent or wrong password." }).waitFor();
  refusalExpected = false;
  // Keyboard only: type, Tab, type, Enter.
  await page.getByLabel("Agent id").fill(AGENT);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  // Anna works in German.
  await page.locator("#connection", { hasText: "verbunden" }).waitFor();
  const signOut = await page.locator("#sign-out").textContent();
  if (signOut !== "Abmelden") problems.push(`the console does not speak Anna's German: ${signOut}`);
  say("READY");

  const offer = page.locator("#offers li").first();
  await offer.waitFor({ timeout: 60_000 });
  await page.locator("#offers .countdown").first().waitFor();
  await axe("inbox");
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/console-inbox.png` });
  // Two agents, one offer: Sabine's Accept of Anna's offer is refused; Anna's goes through.
  const ticketId = await offer.getAttribute("data-ticket");
  const stolen = await supervisor.evaluate(async (id) => {
    const text = new TextEncoder().encode(id);
    const message = new Uint8Array([0x0a, text.length, ...text]);
    const frame = new Uint8Array(5 + message.length);
    new DataView(frame.buffer).setUint32(1, message.length);
    frame.set(message, 5);
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("helpline_csrf=")).slice(14);
    const response = await fetch("/helpline.v1.AgentDesk/Accept", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "x-csrf-token": csrf },
      body: frame,
    });
    const headerStatus = response.headers.get("grpc-status");
    if (headerStatus !== null) return headerStatus;
    const body = new TextDecoder().decode(await response.arrayBuffer());
    return /grpc-status:\s*(\d+)/.exec(body)?.[1] ?? "none";
  }, ticketId);
  say(`SABINE_ACCEPT ${stolen}`);
  if (stolen === "0") problems.push("Sabine accepted an offer made to Anna");
  await offer.getByRole("button", { name: "Annehmen" }).click();
  const mine = page.locator("#mine li").first();
  await mine.waitFor();
  await mine.getByRole("button").first().click();
  await page.locator("#summary").filter({ hasText: /\S/ }).waitFor();
  const product = await page.locator("#product").textContent();
  const serial = await page.locator("#serial").textContent();
  if (!/MateBook/.test(product)) problems.push(`product shown: ${product}`);
  if (serial !== "2NS7N19B12345678") problems.push(`serial shown: ${serial}`);
  // The conversation from its start, the bot's intake included.
  await page.locator("#lines .line.customer", { hasText: "Hallo, ich brauche Hilfe" }).waitFor();
  const window24 = await page.locator("#window").textContent();
  // The customer wrote moments ago: inside the window.
  if (!/^Im 24-Stunden-Fenster von WhatsApp/.test(window24)) problems.push(`the 24-hour window is not shown: ${window24}`);

  await page.getByLabel("Nachricht").fill("Guten Tag, hier ist Anna. Ich helfe Ihnen gern.");
  await page.getByRole("button", { name: "An Kunden senden" }).click();
  await page.getByLabel("Nachricht").fill("Intern: Garantie prüfen");
  await page.getByRole("button", { name: "Interne Notiz hinzufügen" }).click();
  await page.locator("#lines .line.note", { hasText: "Garantie prüfen" }).waitFor();
  // A canned reply, found by its shortcut, filled in for this ticket, sent.
  await page.getByLabel("Textbaustein: Kürzel oder Wörter").fill("kva");
  await page.getByRole("button", { name: /^kva · Kostenvoranschlag/ }).click();
  const filled = await page.getByLabel("Nachricht").inputValue();
  if (!/Kostenvoranschlag/.test(filled) || !/Anna Becker/.test(filled)) problems.push(`the canned reply was not filled in: ${filled}`);
  await page.getByRole("button", { name: "An Kunden senden" }).click();
  await page.locator("#lines .line.agent", { hasText: "Kostenvoranschlag" }).waitFor();
  // The customer's contacts: this WhatsApp conversation, no other linked yet. They say
  // they wrote from their second phone before: Anna links it, and reads that ticket.
  await page.locator("#contact-list li", { hasText: "WhatsApp · 1 Ticket(s)" }).waitFor();
  await page.locator("#link-channel").selectOption("1");
  await page.getByLabel("Nummer oder ID dort").fill("+49 151 99887766");
  await page.getByRole("button", { name: "Als derselbe Kunde verknüpfen" }).click();
  const linked = page.locator("#contact-list li").nth(1);
  await linked.waitFor();
  await linked.getByRole("button", { name: "Gespräch anzeigen" }).first().click();
  await page.locator("#history-lines .line.customer", { hasText: "Zweithandy" }).waitFor();
  say("REPLIED");

  // The customer's photo: opened on request, shown in the conversation.
  const photo = page.locator("#lines .line.customer", { hasText: "Foto vom Fehler" });
  await photo.getByRole("button", { name: "Anhang anzeigen" }).click({ timeout: 60_000 });
  const image = photo.getByRole("img", { name: "Anhang des Kunden" });
  await image.waitFor();
  const width = await image.evaluate((img) => img.complete && img.naturalWidth);
  if (width !== 8) problems.push(`the customer's photo did not show (width ${width})`);

  // The customer's text is shown as text, whatever it holds (XSS).
  for (const payload of XSS_PAYLOADS) {
    await page.locator("#lines .line.customer").filter({ hasText: payload }).waitFor({ timeout: 60_000 });
  }
  const markup = await page.locator("#lines img:not(.attachment), #lines script, #lines svg, #lines a, #lines iframe").count();
  if (markup > 0) problems.push(`a customer's text became ${markup} element(s) in the conversation`);

  await page.locator("#lines .line.customer", { hasText: "jetzt klappt es" }).waitFor({ timeout: 60_000 });
  await axe("conversation");
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/console-conversation.png` });
  // Transferred to the general queue with a note: the ticket leaves Anna; the queue
  // offers it again, to her (the only agent available); the note is in the conversation.
  await page.locator("#transfer-kind").selectOption("queue");
  await page.locator("#transfer-target").fill("de-general");
  await page.getByLabel("Notiz für die Übernahme").fill("Bitte Rückruf zur Garantie");
  await page.getByRole("button", { name: "Weiterleiten" }).click();
  await page.locator("#mine li").waitFor({ state: "detached" });
  const again = page.locator("#offers li").first();
  await again.waitFor({ timeout: 60_000 });
  await again.getByRole("button", { name: "Annehmen" }).click();
  await page.locator("#mine li").first().getByRole("button").first().click();
  await page.locator("#lines .line.note", { hasText: "Bitte Rückruf zur Garantie" }).waitFor();
  say("TRANSFERRED");
  await page.getByLabel("Lösung").fill("Konto nach Update zurückgesetzt");
  await page.getByRole("button", { name: "Als gelöst markieren" }).click();
  await page.locator("#mine li").waitFor({ state: "detached" });
  say("RESOLVED");

  // The customer rates 5: Sabine's figures show it, pushed, no reload.
  await supervisor
    .locator("#csat tbody tr", { hasText: AGENT })
    .filter({ hasText: "5.00" })
    .waitFor({ timeout: 60_000 });
  await axe("supervisor", supervisor);
  if (SCREENSHOTS) await supervisor.screenshot({ path: `${SCREENSHOTS}/console-supervisor.png`, fullPage: true });
  say("CSAT");
} catch (error) {
  problems.push(String(error));
  // What the page itself said, if anything.
  for (const open of browser.contexts().flatMap((c) => c.pages())) {
    const said = await open.locator("#action-error").textContent().catch(() => "");
    if (said) problems.push(`the page said: ${said}`);
    const connection = await open.locator("#connection").textContent().catch(() => "");
    problems.push(`its connection: ${connection}`);
  }
} finally {
  await browser.close();
}
for (const problem of problems) say(`PROBLEM ${problem}`);
process.exit(problems.length === 0 ? 0 : 1);
