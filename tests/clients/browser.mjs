// A headless Chromium (Debian's, driven by playwright-core) for the browser
// suites. Commands arrive as JSON lines on stdin and every one is answered
// with one JSON line on stdout: {"ok": true, ...} or {"error": "…"}.
//   {"cmd":"cookie","name":N,"value":V,"url":U}   set a cookie for U's host
//   {"cmd":"goto","url":U}                          open a page (one tab)
//   {"cmd":"wait_text","selector":S,"text":T}       until S's text contains T -> {"text"}
//   {"cmd":"text","selector":S}                     S's text now -> {"text"}
//   {"cmd":"fill","selector":S,"value":V} / {"cmd":"click","selector":S}
//   {"cmd":"screenshot","path":P}                   full page PNG
// CHROMIUM overrides the browser's path (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
let browser;
try {
  // Playwright adds --no-sandbox itself (needed as root); headless Chromium.
  browser = await chromium.launch({ executablePath, headless: true });
} catch (e) {
  out({ error: `cannot start ${executablePath} (apt-get install chromium): ${e.message}` });
  process.exit(1);
}
const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
const page = await context.newPage();
const consoleLines = [];
page.on('console', (m) => consoleLines.push(m.text()));
out({ ok: true, version: browser.version() });

const timeout = Number(process.env.BROWSER_TIMEOUT_MS ?? 15000);
async function run(c) {
  switch (c.cmd) {
    case 'cookie':
      await context.addCookies([{ name: c.name, value: c.value, url: c.url }]);
      return {};
    case 'goto':
      await page.goto(c.url, { timeout });
      return {};
    case 'wait_text': {
      const loc = page.locator(c.selector);
      await loc.filter({ hasText: c.text }).first().waitFor({ timeout });
      return { text: await loc.first().innerText() };
    }
    case 'text':
      return { text: await page.locator(c.selector).first().innerText({ timeout }) };
    case 'fill':
      await page.locator(c.selector).fill(c.value, { timeout });
      return {};
    case 'click':
      await page.locator(c.selector).click({ timeout });
      return {};
    case 'screenshot':
      await page.screenshot({ path: c.path, fullPage: true });
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    out({ ok: true, ...(await run(JSON.parse(line))) });
  } catch (e) {
    out({ error: e.message.split('\n')[0], console: consoleLines.slice(-5) });
  }
}
await browser.close();
