"""Open a Snakemake HTML report in headless Chromium and click through it as a reader would (for tests).

    with open_report("results/report.html", screenshot=tmp_path / "report.png") as report:
        assert report.errors == []
        view = report.show("results/figures/paper/training_curves/Office.png")   # menu -> category -> row -> eye
        assert view.kind == "img" and view.image_size[0] > 0
        assert "0.4321" in report.info("results/tables/paper/overall.csv")       # the row's info panel: its caption

Snakemake 9's report is one React app with every result embedded as a data: URI (`results`: path -> name,
labels, caption HTML, mime_type, data_uri; `categories`: category -> subcategory -> [paths]). The menu lists
the categories (a single one is called "Results"); a category with several subcategories lists them; a
subcategory is a table with one row per result, its columns the results' labels (or the path when a result has
none), and each row's eye button shows the result: PNG/JPEG/SVG as an <img> in the content pane, HTML and PDF in an
<iframe>, anything else (CSV, Markdown, ...) only as a download link. A label after the first with exactly two
values, each on half of the subcategory's results (e.g. {"file": "csv"} / {"file": "md"}), becomes a toggle above
the table instead of a column, and a row then shows the toggled file. The info button opens a panel with the
labels, the caption ("Description") and the rule.

Browser: playwright (the `test` extra) driving the system's Chromium (ANT_CHROMIUM, else `chromium` on PATH;
`.ci/browser-up` installs Debian's), since playwright's own browser downloads are not reachable here. Without
playwright or Chromium, or when Chromium cannot start, the calling test is skipped; with ANT_TEST_BROWSER=1 (CI,
after .ci/browser-up succeeded) it fails instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_MS = 15_000  # one UI step (a click and React's re-render, an image decode); a whole report loads in ~3 s
VIEWPORT = {"width": 1400, "height": 900}
NAV = "#app > div > nav"  # the left panel: breadcrumbs, then the menu / category / results table / info
CONTENT = "#app > div > div.grow"  # the right pane where a shown image or iframe goes


def _unavailable(reason: str) -> None:
    if os.environ.get("ANT_TEST_BROWSER") == "1":
        pytest.fail(f"ANT_TEST_BROWSER=1 but {reason}")
    pytest.skip(reason)


def chromium_or_skip() -> str:
    """The Chromium executable, after checking playwright is importable; skips (or fails, see above) otherwise.

    Cheap (no browser start): call it first in a test that builds a workflow before opening its report."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    exe = os.environ.get("ANT_CHROMIUM") or shutil.which("chromium")
    if not exe or not Path(exe).exists():
        _unavailable("no Chromium (run .ci/browser-up, or point ANT_CHROMIUM at one)")
    return exe


@dataclass
class ResultView:
    path: str  # the result's key in the report: its output path relative to the workflow's directory
    kind: str  # "img", "html", "pdf" (shown in the content pane) or "download" (the eye is only a download link)
    text: str = ""  # an HTML result's rendered text (its iframe's body); "" for the other kinds
    image_size: tuple[int, int] | None = None  # the shown <img>'s natural (width, height) in pixels, once decoded
    download: bytes | None = None  # the bytes the eye button downloads (kind "download")


@dataclass
class ReportPage:
    page: Any  # playwright Page
    screenshot_path: Path | None  # written by close(): the view the test ended on
    errors: list[str] = field(default_factory=list)  # console errors, uncaught page errors, failed requests
    _stop: Any = None  # closes the browser and the playwright driver

    # ------------------------------------------------------------------ what the report holds
    def categories(self) -> dict[str, dict[str, list[str]]]:
        """category -> subcategory -> result paths, as embedded in the report."""
        return self.page.evaluate("categories")

    def result_names(self) -> list[str]:
        """Every result's path, category by category."""
        return [p for subs in self.categories().values() for paths in subs.values() for p in paths]

    def text(self) -> str:
        """The whole page's visible text (menu, breadcrumbs, the current view)."""
        return self.page.locator("#app").inner_text()

    # ------------------------------------------------------------------ clicking through
    def show(self, path: str) -> ResultView:
        """Menu -> the result's category (-> subcategory) -> its row's eye button; what it then shows."""
        eye = self._row(path).locator("td").last.locator("a").first
        mime = self.page.evaluate("p => results[p].mime_type", path)
        if mime.startswith("image/"):
            eye.click()
            self.page.wait_for_function(
                """([sel, p]) => { const img = document.querySelector(sel);
                                   return img && img.src === results[p].data_uri && img.complete }""",
                arg=[f"{CONTENT} img", path],
            )
            size = self.page.locator(f"{CONTENT} img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
            return ResultView(path, "img", image_size=(size[0], size[1]))
        if mime in ("text/html", "application/pdf"):
            eye.click()
            self.page.wait_for_function(
                "([sel, p]) => { const f = document.querySelector(sel); return f && f.src === results[p].data_uri }",
                arg=[f"{CONTENT} iframe", path],
            )
            if mime == "application/pdf":  # Chromium's PDF viewer: no text to read back
                return ResultView(path, "pdf")
            frame = self.page.locator(f"{CONTENT} iframe").element_handle().content_frame()
            frame.wait_for_load_state()
            return ResultView(path, "html", text=frame.locator("body").inner_text())
        if eye.get_attribute("href") != self.page.evaluate("p => results[p].data_uri", path):
            raise AssertionError(f"{path}: its row's download link holds another file (two results, one row?)")
        with self.page.expect_download() as download:
            eye.click()
        return ResultView(path, "download", download=Path(download.value.path()).read_bytes())

    def info(self, path: str) -> str:
        """The text of the result's info panel (its row's (i) button): labels, Description (the caption), size,
        rule."""
        self._row(path).locator("td").last.locator("a").nth(1).click()
        self._wait_info()
        return self.page.locator(NAV).inner_text()

    def screenshot(self, path: str | os.PathLike[str]) -> None:
        self.page.screenshot(path=str(path))

    def close(self) -> None:
        if self._stop is None:
            return
        try:
            if self.screenshot_path is not None:
                self.screenshot(self.screenshot_path)
        finally:
            self._stop()
            self._stop = None

    def __enter__(self) -> ReportPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ navigation
    def _menu(self) -> None:
        self.page.locator(f"{NAV} ol > li").first.locator("a").click()  # the home breadcrumb
        self.page.locator(f"{NAV} div.p-3 > ul").get_by_role("link", name="Workflow", exact=True).wait_for()

    def _open(self, category: str, subcategory: str) -> None:
        """The results table of one subcategory, reached from the menu as a reader would."""
        self._menu()
        categories = self.categories()
        menu_name = "Results" if len(categories) == 1 else category  # the app's name for a lone category
        panel = self.page.locator(f"{NAV} div.p-3")
        panel.get_by_role("link", name=menu_name, exact=True).click()
        if len(categories[category]) > 1:
            panel.get_by_role("link", name=subcategory, exact=True).click()
        panel.locator("table").wait_for()

    def _row(self, path: str) -> Any:
        """The table row that lists `path`, its subcategory opened from the menu and its toggle set.

        Found by what the row shows: the table's header names the label columns, and the row whose cells hold
        this result's values for them (its path when the results have no labels) is the one."""
        where = [(c, s) for c, subs in self.categories().items() for s, paths in subs.items() if path in paths]
        if not where:
            raise AssertionError(f"{path} is not a result of this report; it has {self.result_names()}")
        (category, subcategory), labels = where[0], self.page.evaluate("p => results[p].labels || {}", path)
        self._open(category, subcategory)
        radios = self.page.locator(f"{NAV} fieldset input").evaluate_all("rs => rs.map(r => r.name)")
        if radios:  # a toggle (at most one): its two radio buttons are named after its label
            self._set_toggle(radios[0], str(labels.get(radios[0], "")))
        # the cells as the app fills them: String(label value) or "" (its `labels[l] || ""`), the path when unlabelled
        table = self.page.locator(f"{NAV} div.p-3 table").evaluate(
            """(t, p) => {
                const header = [...t.tHead.rows[0].cells].slice(0, -1).map(c => c.textContent);
                const labels = results[p].labels;
                return {want: labels ? header.map(h => String(labels[h] || "")) : [p],
                        rows: [...t.tBodies[0].rows].map(r => [...r.cells].slice(0, -1).map(c => c.textContent))};
            }""",
            path,
        )
        want = table["want"]
        if want not in table["rows"]:
            raise AssertionError(f"{path}: no row {want} in the {category}/{subcategory} table: {table['rows']}")
        return self.page.locator(f"{NAV} div.p-3 table > tbody > tr").nth(table["rows"].index(want))

    def _set_toggle(self, label: str, value: str) -> None:
        self.page.locator(f'{NAV} label[for="toggle-{label}-{value}"]').click()

    def _wait_info(self) -> None:
        """Until the info panel is up: its breadcrumb's last entry is then the result's path."""
        self.page.locator(NAV).get_by_text("Snakemake rule", exact=True).wait_for()


def open_report(html_path: str | os.PathLike[str], screenshot: str | os.PathLike[str] | None = None) -> ReportPage:
    """Load the report in headless Chromium and wait until the app has rendered its menu.

    `screenshot`: where close() saves a screenshot of the last view. Errors the page logs while the test clicks
    through it collect in `.errors`. Use as a context manager (or call close())."""
    exe = chromium_or_skip()
    html = Path(html_path).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no report there (build it with `snakemake --report {html.name}`)")
    from playwright.sync_api import Error, sync_playwright

    driver = sync_playwright().start()
    try:
        # playwright passes --no-sandbox itself (chromium_sandbox=False): root in a container has no user namespace
        browser = driver.chromium.launch(executable_path=exe, headless=True, chromium_sandbox=False)
    except Error as err:
        driver.stop()
        _unavailable(f"Chromium at {exe} cannot start: {str(err).strip().splitlines()[0]}")

    def stop() -> None:
        browser.close()
        driver.stop()

    try:
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        report = ReportPage(page, Path(screenshot) if screenshot is not None else None, _stop=stop)
        page.on("console", lambda m: report.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: report.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: report.errors.append(f"request failed: {r.url[:200]} ({r.failure})"))
        page.goto(html.as_uri())
        # React renders after the embedded scripts ran: wait for the menu, whose first entry is always Workflow
        page.locator(f"{NAV} div.p-3 > ul").get_by_role("link", name="Workflow", exact=True).wait_for()
    except BaseException:
        stop()
        raise
    return report
