// Browser acceptance test of the web UI, driven by playwright-core in Debian's Chromium
// (Playwright starts it with a fresh temporary profile).
//
// Run by stackdrift/tests/detector.rs against a running `stackdrift all` that holds one
// service's CPU profiles with a regression after a deploy and the detector's anomaly for it.
// Exits 0 when every check passes; on failure prints what failed, saves failure.png and exits 1.
//
// Environment:
//   STACKDRIFT_URL        the server (http://127.0.0.1:PORT)
//   CHROMIUM              the browser binary (/usr/bin/chromium)
//   PLAYWRIGHT_MODULES    node_modules holding playwright-core (scripts/browser-env.sh)
//   SCREENSHOT_DIR        where the screenshots go (flame.png, diff.png, …)
//   EXPECT_SERVICE        the service to pick
//   EXPECT_TOP            the widest function below the root
//   EXPECT_HOT            a function to hover, zoom into and search for
//   EXPECT_REGRESSED      the function the anomaly names, red in the diff
//   DIFF_BASELINE, DIFF_COMPARISON   "FROM_MS,UNTIL_MS": the ranges of the manual diff
//   DIFF_LABEL, DIFF_VALUES          a label and "BEFORE,AFTER" values: the label diff
//   FILTER                "name=value": a label filter every pushed profile has
//   RANGE                 a preset of the range picker covering the data (now-3h)
//   TENANT                the tenant to type into the tenant box (sent as X-Scope-OrgID)

import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name}`);
  return v;
};
const url = env("STACKDRIFT_URL");
const shots = env("SCREENSHOT_DIR");
const service = env("EXPECT_SERVICE");
const expectTop = env("EXPECT_TOP");
const expectHot = env("EXPECT_HOT");
const regressed = env("EXPECT_REGRESSED");
const [baseFrom, baseUntil] = env("DIFF_BASELINE").split(",");
const [cmpFrom, cmpUntil] = env("DIFF_COMPARISON").split(",");
const [diffLabel, diffValues] = [env("DIFF_LABEL"), env("DIFF_VALUES").split(",")];
const [filterName, filterValue] = env("FILTER").split("=");
const range = env("RANGE");
const tenant = env("TENANT");

const require = createRequire(path.join(path.resolve(env("PLAYWRIGHT_MODULES")), "noop.js"));
const { chromium } = require("playwright-core");

fs.mkdirSync(shots, { recursive: true });
fs.rmSync(path.join(shots, "failure.png"), { force: true });
const started = Date.now();
const log = (msg) => console.log(`[ui-test +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(30_000);

// Any script error or failed request fails the test; every request must carry the tenant.
const problems = [];
const requests = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error: ${m.text()}`);
});
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
page.on("request", (r) => {
  if (r.url().includes("/api/") || r.url().includes("QuerierService")) requests.push(r);
});

/** Waits until a view has finished loading without an error. */
async function ready(view) {
  const section = page.locator(`#view-${view}`);
  // The state must belong to the current hash: right after a click the previous load's
  // `ready` is still there until the hashchange handler starts the next load.
  await page.waitForFunction((id) => {
    const e = document.getElementById(id);
    return ["ready", "error"].includes(e?.dataset.state ?? "") && e?.dataset.route === location.hash;
  }, `view-${view}`);
  const state = await section.getAttribute("data-state");
  const error = await section.evaluate((e) => e.querySelector(".view-error, .error")?.textContent ?? "");
  check(state === "ready", `view ${view} is ${state}: ${error}`);
}

/** Nodes of a flame graph as {name, depth, width (px), change, color}. */
async function nodes(containerId) {
  return page.locator(`#${containerId} .node`).evaluateAll((els) =>
    els.map((e) => ({
      name: e.dataset.name,
      depth: Number(e.dataset.depth),
      width: e.getBoundingClientRect().width,
      change: e.dataset.change,
      delta: e.dataset.delta,
      classes: e.className,
      color: getComputedStyle(e).backgroundColor,
    })),
  );
}

function rgb(color) {
  const m = /rgba?\((\d+), (\d+), (\d+)/.exec(color);
  check(m, `not an rgb colour: ${color}`);
  return m.slice(1, 4).map(Number);
}

try {
  // 1. The page loads; the tenant typed in is kept in localStorage and sent.
  log(`open ${url}/`);
  const resp = await page.goto(`${url}/`);
  check(resp.ok(), `GET / answered ${resp.status()}`);
  check((await page.title()) === "stackdrift", `title is ${await page.title()}`);
  await ready("flame");
  await page.fill("#tenant", tenant);
  const tenantFrom = requests.length;
  await page.click("#tenant-form button[type=submit]");
  check((await page.evaluate(() => localStorage.getItem("stackdrift.tenant"))) === tenant, "tenant not stored");

  // 2. Flame graph: pick the range and the service.
  log(`flame graph: range ${range}, service ${service}`);
  await page.selectOption("#range-preset", range);
  await ready("flame");
  await page.selectOption("#service", service);
  await page.waitForFunction((s) => location.hash.includes(`service=${s}`), service);
  await ready("flame");
  const flame = await nodes("flamegraph");
  check(flame.length > 5, `only ${flame.length} nodes drawn`);
  check(flame.some((n) => n.depth === 0 && n.name === "total"), "no root node");
  const widest = flame.filter((n) => n.depth > 0).sort((a, b) => b.width - a.width)[0];
  check(widest.name === expectTop, `widest function below the root is ${widest.name}, expected ${expectTop}`);
  log(`widest function: ${widest.name} (${widest.width.toFixed(0)} px)`);
  check(
    (await page.locator("#top-functions tbody tr").count()) > 5,
    "the top functions table is empty",
  );

  // Tooltip: name, self and total with their shares.
  const hot = page.locator(`#flamegraph .node[data-name="${expectHot}"]`).first();
  await hot.hover();
  const tip = page.locator("#flamegraph .tooltip");
  await tip.waitFor({ state: "visible" });
  const tipText = await tip.textContent();
  check(tipText.includes(expectHot), `tooltip: ${tipText}`);
  check(/Total.*%.*Self.*%/s.test(tipText), `tooltip lacks total/self shares: ${tipText}`);
  log(`tooltip: ${tipText.replace(/\s+/g, " ")}`);
  await page.screenshot({ path: path.join(shots, "flame.png"), fullPage: true });

  // Click to zoom: the node fills the width; clicking it again zooms out.
  const fullWidth = (await page.locator("#flamegraph").boundingBox()).width;
  await hot.click();
  const zoomed = page.locator(`#flamegraph .node[data-name="${expectHot}"]`).first();
  const zw = (await zoomed.boundingBox()).width;
  check(Math.abs(zw - fullWidth) < 2, `zoomed node is ${zw} px wide, the graph ${fullWidth}`);
  check((await zoomed.getAttribute("class")).includes("focus"), "zoomed node not marked focus");
  await page.screenshot({ path: path.join(shots, "flame-zoomed.png"), fullPage: true });
  await page.click("#reset-zoom");

  // Search highlights the matches and dims the rest.
  await page.fill("#search", expectHot);
  const matches = await page.locator("#flamegraph .node.match").evaluateAll((els) => els.map((e) => e.dataset.name));
  check(matches.length > 0 && matches.every((n) => n.includes(expectHot)), `matches: ${matches}`);
  check((await page.locator("#flamegraph .node.dim").count()) > 0, "nothing dimmed");
  const status = await page.locator("#view-flame .flame-status").textContent();
  check(/1 match, [\d.]+% of the total/.test(status), `status: ${status}`);
  await page.screenshot({ path: path.join(shots, "flame-search.png"), fullPage: true });
  log(`search: ${status}`);
  await page.fill("#search", "");

  // A label filter: a chip, and the same graph (every profile has the label).
  await page.selectOption("#filter-name", filterName);
  await page.waitForFunction((v) => [...document.querySelectorAll("#filter-value option")].some((o) => o.value === v), filterValue);
  await page.selectOption("#filter-value", filterValue);
  await page.click("#filter-add");
  await page.locator(`#filters .chip[data-matcher="${filterName}=${filterValue}"]`).waitFor();
  await ready("flame");
  const title = await page.locator("#flame-title").textContent();
  check(title.includes(`${filterName}="${filterValue}"`), `the selector lacks the filter: ${title}`);
  const filtered = await nodes("flamegraph");
  check(filtered.length === flame.length, `${filtered.length} nodes with the filter, ${flame.length} without`);
  await page.screenshot({ path: path.join(shots, "flame-filter.png"), fullPage: true });
  await page.click(`#filters .chip button`);
  await page.waitForFunction(() => !location.hash.includes("&m="));
  await ready("flame");
  log(`label filter ${filterName}=${filterValue}: ${filtered.length} nodes`);

  // 3. Anomalies: the detector's regression is listed.
  log("anomalies");
  await page.click('nav a[data-view="anomalies"]');
  await ready("anomalies");
  const row = page.locator(`#anomalies tr[data-function="${regressed}"][data-kind="regression"]`).first();
  await row.waitFor();
  check((await row.textContent()).includes(service), "the anomaly row does not name the service");
  await page.screenshot({ path: path.join(shots, "anomalies.png"), fullPage: true });

  // 4. Its diff link opens the diff view, where the function is a red regression.
  log("anomaly diff");
  await row.locator("a.diff-link").click();
  await page.waitForFunction(() => location.hash.startsWith("#/diff"));
  await ready("diff");
  const assertRegressed = async (what) => {
    const diff = await nodes("diff-flamegraph");
    const node = diff.find((n) => n.name === regressed);
    check(node, `${what}: no ${regressed} node in the diff`);
    check(node.change === "regression", `${what}: ${regressed} is marked ${node.change}`);
    const [r, g, b] = rgb(node.color);
    check(r > g + 40 && r > b + 40, `${what}: ${regressed} is not red: ${node.color}`);
    const root = diff.find((n) => n.depth === 0);
    check(root.change === "none", `${what}: the root is marked ${root.change}`);
    log(`${what}: ${regressed} is ${node.change} (relative share change ${node.delta}), ${node.color}`);
  };
  await assertRegressed("anomaly diff");
  // The anomaly's function is highlighted by the search box.
  check((await page.inputValue("#diff-search")) === regressed, "diff search not set to the function");
  await page.locator(`#diff-flamegraph .node[data-name="${regressed}"]`).first().hover();
  const diffTip = await page.locator("#diff-flamegraph .tooltip").textContent();
  check(/Baseline.*Comparison.*Change.*regression/s.test(diffTip), `diff tooltip: ${diffTip}`);
  await page.screenshot({ path: path.join(shots, "diff-anomaly.png"), fullPage: true });

  // 5. A diff of two ranges typed in: before the deploy against after it.
  log("diff of two ranges");
  await page.fill("#diff-left-from", baseFrom);
  await page.fill("#diff-left-until", baseUntil);
  await page.fill("#diff-right-from", cmpFrom);
  await page.fill("#diff-right-until", cmpUntil);
  await page.fill("#diff-search", "");
  await page.click("#diff-run");
  await page.waitForFunction((f) => location.hash.includes(`lfrom=${f}`), baseFrom);
  await ready("diff");
  await assertRegressed("range diff");
  const improved = await page.locator('#diff-flamegraph .node[data-change="improvement"]').count();
  log(`range diff: ${improved} nodes marked improvement`);
  await page.screenshot({ path: path.join(shots, "diff-ranges.png"), fullPage: true });

  // A diff of two label selections over the same range: one version against the next.
  log(`diff of ${diffLabel} ${diffValues[0]} against ${diffValues[1]}`);
  await page.selectOption("#diff-label", diffLabel);
  await page.waitForFunction((v) => [...document.querySelectorAll("#diff-value-b option")].some((o) => o.value === v), diffValues[1]);
  await page.selectOption("#diff-value-a", diffValues[0]);
  await page.selectOption("#diff-value-b", diffValues[1]);
  await page.click("#diff-by-label");
  await page.waitForFunction((v) => decodeURIComponent(location.hash).includes(v), `${diffLabel}="${diffValues[1]}"`);
  await ready("diff");
  check(
    (await page.inputValue("#diff-left-query")).includes(`${diffLabel}="${diffValues[0]}"`),
    `baseline selector: ${await page.inputValue("#diff-left-query")}`,
  );
  await assertRegressed("label diff");
  await page.screenshot({ path: path.join(shots, "diff-labels.png"), fullPage: true });

  // 6. SQL console: rows as a table, errors as messages.
  log("sql");
  await page.click('nav a[data-view="sql"]');
  await page.fill(
    "#sql-query",
    `SELECT function, kind, service_name FROM anomalies WHERE function = '${regressed}' AND kind = 'regression'`,
  );
  await page.click("#sql-run");
  await ready("sql");
  const cells = await page.locator("#sql-result tbody tr").first().locator("td").allTextContents();
  check(cells[0] === regressed && cells[1] === "regression" && cells[2] === service, `SQL row: ${cells}`);
  const header = await page.locator("#sql-result thead th").allTextContents();
  check(header.join(",") === "function,kind,service_name", `SQL header: ${header}`);
  await page.screenshot({ path: path.join(shots, "sql.png"), fullPage: true });
  check(problems.length === 0, `browser problems:\n${problems.join("\n")}`);
  // A refused statement: the 400 is expected (the browser logs it as a failed load).
  await page.fill("#sql-query", "DROP TABLE samples");
  await page.click("#sql-run");
  await page.locator("#sql-error").waitFor({ state: "visible" });
  const sqlError = await page.locator("#sql-error").textContent();
  check(sqlError.startsWith("400"), `SQL error message: ${sqlError}`);
  log(`sql error shown: ${sqlError}`);
  await page.screenshot({ path: path.join(shots, "sql-error.png"), fullPage: true });

  // Requests before the tenant was set carry no tenant (anonymous), every later one carries it.
  check(requests.length > 10, `only ${requests.length} API requests seen`);
  for (const [i, r] of requests.entries()) {
    const sent = (await r.allHeaders())["x-scope-orgid"];
    const want = i < tenantFrom ? undefined : tenant;
    check(sent === want, `request ${i} ${r.url()} sent X-Scope-OrgID ${sent}, expected ${want}`);
  }
  log(`${requests.length} API requests, ${requests.length - tenantFrom} with X-Scope-OrgID ${tenant}`);

  const unexpected = problems.filter((p) => !p.includes("status of 400"));
  check(unexpected.length === 0, `browser problems:\n${unexpected.join("\n")}`);
  log(`all checks passed; screenshots in ${shots}`);
} catch (e) {
  console.error(`[ui-test] FAILED: ${e.stack ?? e}`);
  if (problems.length) console.error(`[ui-test] browser problems:\n${problems.join("\n")}`);
  try {
    await page.screenshot({ path: path.join(shots, "failure.png"), fullPage: true });
    console.error(`[ui-test] page at failure: ${page.url()} (screenshot ${shots}/failure.png)`);
  } catch {}
  process.exitCode = 1;
} finally {
  await browser.close();
}
