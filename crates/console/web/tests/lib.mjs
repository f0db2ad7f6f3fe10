// What the browser tests share: Debian's chromium launched by playwright-core, pages that
// record every console error, page error and dialog as a problem, axe-core's serious and
// critical violations as problems, and an agent's sign-in.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const axePath = require.resolve("axe-core/axe.min.js");

export const say = (line) => process.stdout.write(`${line}\n`);

export async function launch() {
  return await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/// A page in a context of its own. `tolerated(text)` names console errors that are what
/// the test asks for at that moment (a refusal it provokes, a server it restarts).
export async function open(browser, problems, { tolerated = () => false, ...options } = {}) {
  const context = await browser.newContext({
    // The console's policy runs only its own scripts; axe is added by the test alone.
    bypassCSP: true,
    locale: "en-US",
    viewport: { width: 1280, height: 800 },
    ...options,
  });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error" || tolerated(message.text())) return;
    problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  // A dialog means somebody's text ran as script.
  page.on("dialog", async (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
  return page;
}

/// axe-core on the page as it is: each serious or critical violation is a problem.
export async function axe(page, name, problems) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(async () => await window.axe.run());
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of serious) problems.push(`axe on ${name}: ${v.id} (${v.impact}): ${v.help}`);
  say(`AXE ${name} ${serious.length}`);
}

/// Signs `agent` in to the console at `url` and waits until the page is connected (in
/// German: every agent of these tests has German first).
export async function signIn(page, url, agent, password) {
  await page.goto(url);
  await page.locator("#agent").fill(agent);
  await page.locator("#password").fill(password);
  await page.locator("#sign-in-button").click();
  await page.locator("#connection", { hasText: "verbunden" }).waitFor();
}
