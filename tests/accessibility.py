"""WCAG 2.x A and AA, held by axe-core (npm, pinned in package.json) in every page the Chromium
tests visit.

`install(driver)` makes the current window run axe on each HTML document it loads: the script is
added through DevTools (`Page.addScriptToEvaluateOnNewDocument`, which the portal's content
security policy does not govern), runs once the page has loaded, and keeps each page's violations
in the tab's sessionStorage, which outlives the page within one origin. `findings(driver)` reads
them and audits the current page once more (the last page may have had no time to finish);
`audit(driver)` audits the current page alone. A page left before its audit finished is not
reported: the tests' own page checks (tests/test_browser_workspace.py) audit the pages they list
synchronously."""

from __future__ import annotations

import json
from pathlib import Path

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
STORE = "__portal_axe"
# WCAG 2.0, 2.1 and 2.2, levels A and AA: axe-core's tags for them.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
OPTIONS = json.dumps({"runOnly": {"type": "tag", "values": WCAG_TAGS},
                      "resultTypes": ["violations"]})

# A violation as kept: the rule, its impact, what it asks, and up to five offending elements.
SUMMARY = """function (result) {
  return result.violations.map(function (v) {
    return {id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(function (n) { return n.target.join(" "); })};
  });
}"""

RUN_ON_LOAD = """(function () {
  if (window.top !== window) return;
  var summary = %(summary)s;
  window.addEventListener("load", function () {
    if (document.contentType !== "text/html" || !window.axe) return;
    var page = location.pathname + location.search;
    window.axe.run(document, %(options)s).then(function (result) {
      var seen = JSON.parse(sessionStorage.getItem("%(store)s") || "[]");
      seen.push({page: page, violations: summary(result)});
      sessionStorage.setItem("%(store)s", JSON.stringify(seen));
    });
  });
})();"""


def _axe_source() -> str:
    if not AXE.exists():
        raise RuntimeError(f"{AXE} is missing: run scripts/setup.sh --browser (npm ci)")
    return AXE.read_text()


def install(driver) -> None:
    """Every document the driver's current window loads from now on is audited on load."""
    source = _axe_source() + "\n" + RUN_ON_LOAD % {
        "summary": SUMMARY, "options": OPTIONS, "store": STORE}
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})


def audit(driver) -> list[dict]:
    """The current page's violations, audited now (axe is injected if the page lacks it)."""
    if not driver.execute_script("return !!window.axe"):
        driver.execute_script(_axe_source())
    return driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        f"window.axe.run(document, {OPTIONS}).then(function (r) {{ done(({SUMMARY})(r)); }},"
        " function (e) { done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]); });")


def findings(driver) -> list[dict]:
    """Each audited page of this window's origin with violations, as {page, violations}: what the
    pages visited recorded, and the current page audited once more."""
    if not driver.current_url.startswith("http"):
        return []
    if driver.execute_script("return document.contentType") != "text/html":
        return []
    seen = json.loads(driver.execute_script(f"return sessionStorage.getItem('{STORE}') || '[]'"))
    page = driver.execute_script("return location.pathname + location.search")
    seen.append({"page": page, "violations": audit(driver)})
    return [entry for entry in seen if entry["violations"]]


def describe(found: list[dict]) -> str:
    """One line per violation: the page, the rule, its impact and help, the elements."""
    lines = []
    for entry in found:
        for v in entry["violations"]:
            lines.append(f"{entry['page']}: {v['id']} ({v['impact']}): {v['help']}; "
                         f"elements: {', '.join(v['nodes'])}")
    return "\n".join(dict.fromkeys(lines))  # a page visited twice reports once
