// Debian's Chromium driven by playwright-core: the citizen's phone.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const axePath = require.resolve('axe-core/axe.min.js');

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** A small phone: 360×740 CSS pixels, touch, bokmål unless told otherwise. */
export async function newPhone(browser, { locale = 'nb-NO', ignoreHTTPSErrors = false } = {}) {
  return browser.newContext({
    ignoreHTTPSErrors,
    viewport: { width: 360, height: 740 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale,
    extraHTTPHeaders: { 'Accept-Language': locale },
  });
}

/** Runs axe-core in the page and returns serious and critical violations. */
export async function seriousViolations(page) {
  // Evaluated through the DevTools protocol: the page's CSP (no inline script)
  // stays in force for everything else.
  await page.evaluate(readFileSync(axePath, 'utf8'));
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}
