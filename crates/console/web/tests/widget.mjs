// A customer on the brand's service website (a page of another origin, served here) opens
// the web-chat widget on a phone-sized screen and writes in German; agent Anna, signed in
// to the console, takes the ticket, sees the summary and the messages, replies (markup in
// her reply is shown as text) and adds an internal note, which never reaches the widget.
// The server then restarts mid-conversation while the customer writes: the message waits,
// goes once, and Anna's next reply arrives once. Anna resolves, the widget shows the
// rating stars, the customer gives 5, and supervisor Sabine's CSAT shows it without a
// reload. A second customer's widget shows none of the first's conversation; axe-core
// finds no serious or critical violation in the widget, closed or open.
//
// Driven by crates/helpline/tests/widget_browser.rs, which restarts the server: this
// script says RESTART and waits for DOWN on stdin, says TYPED and waits for UP. It fails
// (exit 1) on anything it does not find, each problem on a line of its own.
//
// Environment: CONSOLE_URL, AGENT, SUPERVISOR, PASSWORD (both's), XSS_PAYLOADS (JSON),
// SCREENSHOTS (a folder), CHROMIUM.
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { axe, launch, open, say, signIn } from "./lib.mjs";

const { CONSOLE_URL, AGENT, SUPERVISOR, PASSWORD, SCREENSHOTS } = process.env;
const XSS_PAYLOADS = JSON.parse(process.env.XSS_PAYLOADS ?? "[]");

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function heard(expected) {
  const { value } = await lines.next();
  if (value !== expected) throw new Error(`expected ${expected} on stdin, got ${value}`);
}

// The brand's service page: another origin than the console's, one <script> tag.
const site = createServer((request, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(`<!doctype html>
<html lang="de"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Service und Support</title></head>
<body><main><h1>Service und Support</h1><p>Wir helfen Ihnen gern weiter.</p></main>
<script src="${CONSOLE_URL}/widget.js" data-lang="de" defer></script></body></html>`);
});
await new Promise((listening) => site.listen(0, "127.0.0.1", listening));
const SITE_URL = `http://127.0.0.1:${site.address().port}/service`;

const browser = await launch();
const problems = [];
// While the server is down, the browser's notes of refused connections are expected.
let restarting = false;
const tolerated = (text) => restarting && /net::ERR_|Failed to fetch|status of 50\d/.test(text);
try {
  const supervisor = await open(browser, problems, { tolerated });
  await signIn(supervisor, CONSOLE_URL, SUPERVISOR, PASSWORD);
  await supervisor.locator("#presence").selectOption("away");
  await supervisor.locator("#figures-position", { hasText: "live" }).waitFor();
  const anna = await open(browser, problems, { tolerated });
  await signIn(anna, CONSOLE_URL, AGENT, PASSWORD);

  const customer = await open(browser, problems, {
    tolerated,
    bypassCSP: false,
    locale: "de-DE",
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
  });
  await customer.goto(SITE_URL);
  const launcher = customer.getByRole("button", { name: "Chatten Sie mit uns" });
  await launcher.waitFor();
  await axe(customer, "widget-closed", problems);
  await launcher.click();
  const input = customer.getByLabel("Ihre Nachricht");
  await input.waitFor();
  const log = customer.locator("#helpline-chat .log");
  const fromHelpline = log.locator(".line.helpline");
  const fromCustomer = log.locator(".line.customer");
  async function write(text) {
    await input.fill(text);
    await input.press("Enter");
  }

  await write("Mein MateBook startet nicht");
  await fromHelpline.filter({ hasText: "Seriennummer" }).waitFor({ timeout: 60_000 });
  await write("2NS7N19B12345678");
  await fromHelpline.filter({ hasText: "weiter" }).first().waitFor({ timeout: 60_000 });
  say("INTAKE");

  const offer = anna.locator("#offers li").first();
  await offer.waitFor({ timeout: 60_000 });
  await offer.getByRole("button", { name: "Annehmen" }).click();
  const mine = anna.locator("#mine li").first();
  await mine.waitFor();
  await mine.getByRole("button").first().click();
  await anna.locator("#summary").filter({ hasText: /\S/ }).waitFor();
  const product = await anna.locator("#product").textContent();
  const serial = await anna.locator("#serial").textContent();
  if (!/MateBook/.test(product)) problems.push(`product shown: ${product}`);
  if (serial !== "2NS7N19B12345678") problems.push(`serial shown: ${serial}`);
  // The conversation from its start, the bot's intake included.
  await anna.locator("#lines .line.customer", { hasText: "Mein MateBook startet nicht" }).waitFor();
  await anna.locator("#lines .line.bot", { hasText: "Seriennummer" }).waitFor();
  // Markup in an agent's reply reaches the customer as text.
  const reply = "Guten Tag, hier ist Anna. <b>Wichtig:</b> <img src=x onerror=\"alert('reply')\">";
  await anna.getByLabel("Nachricht").fill(reply);
  await anna.getByRole("button", { name: "An Kunden senden" }).click();
  await anna.getByLabel("Nachricht").fill("Intern: Garantie prüfen");
  await anna.getByRole("button", { name: "Interne Notiz hinzufügen" }).click();
  await anna.locator("#lines .line.note", { hasText: "Garantie prüfen" }).waitFor();

  await fromHelpline.filter({ hasText: "hier ist Anna" }).waitFor({ timeout: 60_000 });
  const shown = await fromHelpline.filter({ hasText: "hier ist Anna" }).locator(".text").textContent();
  if (shown !== reply) problems.push(`Anna's reply shows as ${JSON.stringify(shown)}`);
  for (const payload of XSS_PAYLOADS) await write(payload);
  for (const payload of XSS_PAYLOADS) {
    await fromCustomer.filter({ hasText: payload }).locator(".note").waitFor({ state: "detached" });
    await anna.locator("#lines .line.customer").filter({ hasText: payload }).waitFor({ timeout: 60_000 });
  }
  // A photo, attached in the widget: Anna opens it in the console.
  const photo = Buffer.from(
    "89504e470d0a1a0a0000000d49484452000000080000000808020000004b6d29dc0000001149444154789c63b860608015310c2d0900da7b4c01eb962a9a0000000049454e44ae426082",
    "hex",
  );
  await customer.locator("#helpline-chat input[type=file]").setInputFiles({
    name: "fehler.png",
    mimeType: "image/png",
    buffer: photo,
  });
  const attached = fromCustomer.filter({ hasText: "📎 fehler.png" });
  await attached.waitFor();
  await attached.locator(".note").waitFor({ state: "detached", timeout: 60_000 });
  const annaSees = anna.locator("#lines .line.customer", { hasText: "[Anhang]" });
  await annaSees.getByRole("button", { name: "Anhang anzeigen" }).click({ timeout: 60_000 });
  const image = annaSees.getByRole("img", { name: "Anhang des Kunden" });
  await image.waitFor();
  const width = await image.evaluate((img) => img.complete && img.naturalWidth);
  if (width !== 8) problems.push(`the widget's photo did not show in the console (width ${width})`);

  const markup = await log.locator("img, script, svg, a, iframe, b").count();
  if (markup > 0) problems.push(`text became ${markup} element(s) in the widget`);
  await axe(customer, "widget", problems);
  if (SCREENSHOTS) await customer.screenshot({ path: `${SCREENSHOTS}/console-widget.png` });

  // The server restarts while the customer writes.
  restarting = true;
  say("RESTART");
  await heard("DOWN");
  const during = "Sind Sie noch da? Mein Laptop ist immer noch aus.";
  await write(during);
  await fromCustomer.filter({ hasText: during }).waitFor();
  say("TYPED");
  await heard("UP");
  await fromCustomer.filter({ hasText: during }).locator(".note").waitFor({ state: "detached", timeout: 60_000 });
  await anna.locator("#lines .line.customer", { hasText: during }).waitFor({ timeout: 60_000 });
  const after = "Ja, ich bin noch da. Bitte halten Sie den Einschaltknopf 15 Sekunden gedrückt.";
  await anna.getByLabel("Nachricht").fill(after);
  await anna.getByRole("button", { name: "An Kunden senden" }).click();
  await fromHelpline.filter({ hasText: "Einschaltknopf" }).waitFor({ timeout: 60_000 });
  restarting = false;
  await write("Danke, jetzt startet er wieder!");
  await anna.locator("#lines .line.customer", { hasText: "jetzt startet er" }).waitFor({ timeout: 60_000 });
  for (const [what, lines] of [
    ["the customer's message written while the server was down", fromCustomer.filter({ hasText: during })],
    ["Anna's reply after the restart", fromHelpline.filter({ hasText: "Einschaltknopf" })],
    ["Anna's first reply", fromHelpline.filter({ hasText: "hier ist Anna" })],
  ]) {
    const count = await lines.count();
    if (count !== 1) problems.push(`${what} shows ${count} times in the widget`);
  }
  const note = await log.locator(".line", { hasText: "Garantie" }).count();
  if (note > 0) problems.push("the internal note reached the widget");
  say("RESTARTED");

  await anna.getByLabel("Lösung").fill("Neustart durch langes Drücken");
  await anna.getByRole("button", { name: "Als gelöst markieren" }).click();
  await anna.locator("#mine li").waitFor({ state: "detached" });
  const five = customer.getByRole("button", { name: "5 von 5 Sternen" });
  await five.waitFor({ timeout: 60_000 });
  await axe(customer, "widget-rating", problems);
  await five.click();
  await supervisor
    .locator("#csat tbody tr", { hasText: AGENT })
    .filter({ hasText: "5.00" })
    .waitFor({ timeout: 60_000 });
  say("CSAT");

  // Another customer, another browser: a conversation of their own, nothing of the first's.
  const other = await open(browser, problems, { locale: "en-GB", viewport: { width: 390, height: 844 } });
  await other.goto(SITE_URL);
  // The tag names German; the widget speaks it whatever the browser's language.
  await other.getByRole("button", { name: "Chatten Sie mit uns" }).click();
  await other.getByLabel("Ihre Nachricht").fill("Hello, my watch does not charge");
  await other.getByLabel("Ihre Nachricht").press("Enter");
  const otherLog = other.locator("#helpline-chat .log");
  await otherLog.locator(".line.helpline").first().waitFor({ timeout: 60_000 });
  const seen = (await otherLog.textContent()) ?? "";
  for (const text of ["MateBook", "Anna", "Einschaltknopf"]) {
    if (seen.includes(text)) problems.push(`a second customer's widget shows the first's ${text}`);
  }
  say("ISOLATED");
} catch (error) {
  problems.push(String(error));
} finally {
  await browser.close();
  site.close();
}
for (const problem of problems) say(`PROBLEM ${problem}`);
process.exit(problems.length === 0 ? 0 : 1);
