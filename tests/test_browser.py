"""Rendering in a real headless Chromium: colours, interaction, and that user text runs nothing.

Needs the ``playwright`` package and a ``chromium`` executable (Debian: ``apt-get install chromium``);
playwright's own browser download is not used. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hand_made
import numpy as np
import pytest
from hand_made import words

from interp_text.explanation import Explanation
from interp_text.render import explanation_html, save_html, score_rgb, text_rgb

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
# CI sets INTERP_TEXT_REQUIRE_BROWSER=1: there a missing browser is a failure, never a skip.
REQUIRED = os.environ.get("INTERP_TEXT_REQUIRE_BROWSER") == "1"
if CHROMIUM is None:
    if REQUIRED:
        raise RuntimeError("INTERP_TEXT_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("no chromium executable on PATH (apt-get install chromium)", allow_module_level=True)
if REQUIRED:
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WHITE = "rgb(255, 255, 255)"
NAN = "rgb(238, 240, 243)"  # the grey under the "not attributable" hatching
PAYLOADS = (
    "<script>alert(1)</script> & \"quotes\" 'single' </div></span> "
    '<img src=x onerror=alert(2)> "><svg onload=alert(3)> </script><script>window.__pwned=1</script>'
)


# ----------------------------------------------------------------- explanations
def classification(text: str, scores, labels, predicted: int) -> Explanation:
    return hand_made.classification(text, scores, labels, predicted)


def causal() -> Explanation:
    prompt, output = "The capital of France is", " Paris. It is a big city"
    n, m = len(words(prompt)[0]), len(words(output)[0])
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(m, n + m))  # (outputs, prompt + outputs)
    scores[1, :n] = -scores[0, :n]  # rows 0 and 1 differ on every prompt element
    return hand_made.causal(prompt, output, scores, probability=0.6)


def css(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def expected(row: np.ndarray, scale: float | None = None) -> list[str]:
    scale = scale if scale is not None else float(np.nanmax(np.abs(row)))
    return [NAN if np.isnan(v) else css(score_rgb(v, scale)) for v in row]


# ----------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.dialogs = []  # every alert/confirm/prompt that fires
    page.errors = []  # uncaught JS errors
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()
    assert page.errors == []


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_page(page, path: Path) -> None:
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")


def colours(page, selector: str, prop: str = "backgroundColor") -> list[str]:
    return page.eval_on_selector_all(selector, f"els => els.map(e => getComputedStyle(e).{prop})")


PROMPT = ".itx-text[data-side=prompt] .itx-el[data-col]"


# ----------------------------------------------------------------- tests
def test_spans_tinted_by_score(page, tmp_path):
    expl = classification(
        "A truly wonderful film,\n  though the ending was flat.",
        [[0.0, 0.3, 1.2, 0.5, 0.0, -0.2, -0.4, 0.0, -0.9], [0.1] * 9],
        labels=("positive", "negative"),
        predicted=0,
    )
    open_page(page, save_html(expl, tmp_path / "cls.html"))
    got = colours(page, PROMPT)
    assert got == expected(expl.scores[0])
    for value, colour in zip(expl.scores[0], got):
        assert (colour == WHITE) == (value == 0)
    assert colours(page, PROMPT, "color") == [css(text_rgb(score_rgb(v, 1.2))) for v in expl.scores[0]]
    text = page.eval_on_selector(".itx-text[data-side=prompt]", "e => e.textContent")
    assert text == expl.text
    assert page.eval_on_selector(".itx-text[data-side=prompt]", "e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    title = page.get_attribute(f"{PROMPT}[data-col='2']", "title")
    assert title == "wonderful: +1.2"
    assert page.is_visible(".itx-legend .itx-bar")
    shot(page, "classification")


def test_malicious_text_runs_nothing(page, tmp_path):
    labels = ("<script>alert(4)</script>", "</script><img src=x onerror=alert(5)>")
    n = len(words(PAYLOADS)[0])
    expl = classification(PAYLOADS, np.linspace(-1, 1, 2 * n), labels=labels, predicted=1)
    gen = causal()
    gen.text = gen.text + " " + PAYLOADS
    gen.elements, gen.spans = words(gen.text)
    gen.scores = np.hstack([np.ones((len(gen.targets), len(gen.elements) - 5)), gen.scores])
    gen.output_text = gen.output_text.replace("city", "<script>alert(6)</script>")
    gen.output_elements, gen.output_spans = words(gen.output_text)
    gen.targets[-1].label = "<script>alert(6)</script>"
    open_page(page, save_html([expl, gen], tmp_path / "evil.html"))
    for button in page.query_selector_all(".itx-btn"):
        button.click()
    for out in page.query_selector_all(".itx-out[data-row]"):
        out.hover()
        out.click()
    page.wait_for_timeout(300)
    assert page.dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.eval_on_selector_all("img, svg", "els => els.length") == 0
    texts = page.eval_on_selector_all(".itx-text[data-side=prompt]", "els => els.map(e => e.textContent)")
    assert texts == [expl.text, gen.text]
    assert page.eval_on_selector(".itx-text[data-side=output]", "e => e.textContent") == gen.output_text
    assert page.text_content(".itx-root .itx-label") == labels[1]  # the last button clicked
    shot(page, "malicious")


def test_hover_and_click_an_output_element(page, tmp_path):
    expl = causal()
    open_page(page, save_html(expl, tmp_path / "gen.html"))
    n = len(expl.elements)
    outputs = ".itx-text[data-side=output] .itx-out[data-row]"
    before = colours(page, PROMPT)
    assert before == expected(expl.scores[0])[:n]

    page.hover(f"{outputs}[data-row='1']")
    hovered = colours(page, PROMPT)
    assert hovered != before and hovered == expected(expl.scores[1])[:n]
    assert page.text_content(".itx-label") == expl.targets[1].label

    page.mouse.move(5, 5)  # leaving restores the pinned output
    assert colours(page, PROMPT) == before

    page.click(f"{outputs}[data-row='4']")
    page.mouse.move(5, 5)
    pinned = colours(page, PROMPT)
    assert pinned == expected(expl.scores[4])[:n]
    # earlier outputs are tinted, the output itself and later ones are not attributable
    out_cells = page.eval_on_selector_all(outputs, "els => els.map(e => e.classList.contains('itx-nan'))")
    assert out_cells == [False] * 4 + [True] * (len(expl.targets) - 4)
    # The pinned output is its row's target: drawn plain white, not as a cell without attribution.
    want = expected(expl.scores[4])[n:]
    want[4] = "rgb(255, 255, 255)"
    assert colours(page, outputs) == want
    assert page.get_attribute(f"{outputs}[data-row='5']", "title").endswith("not attributable")
    assert "itx-sel" in page.get_attribute(f"{outputs}[data-row='4']", "class")
    assert page.get_attribute(".itx-heat tr[data-row='4']", "class") == "itx-sel-row"
    shot(page, "generation")

    page.click(".itx-heat tbody tr[data-row='2'] th")  # the matrix rows pin too
    page.mouse.move(5, 5)
    assert colours(page, PROMPT) == expected(expl.scores[2])[:n]
    page.focus(f"{outputs}[data-row='1']")  # focus previews, as hover does
    assert colours(page, PROMPT) == expected(expl.scores[1])[:n]
    page.focus(f"{outputs}[data-row='3']")
    page.keyboard.press("Enter")
    page.mouse.move(5, 5)
    assert colours(page, PROMPT) == expected(expl.scores[3])[:n]
    page.focus(".itx-heat tbody tr[data-row='0'] th")  # a matrix row's label is reachable by keyboard
    page.keyboard.press("Enter")
    page.focus(f"{outputs}[data-row='3']")
    page.evaluate("document.activeElement.blur()")
    assert colours(page, PROMPT) == expected(expl.scores[0])[:n]


def test_class_switch_changes_colours(page, tmp_path):
    labels = ("negative", "neutral", "positive")
    scores = [[-0.8, 0.1, -0.3, 0.0], [0.0, 0.5, 0.0, -0.5], [0.8, -0.1, 0.3, 0.2]]
    expl = classification("not bad at all", scores, labels=labels, predicted=2)
    open_page(page, save_html(expl, tmp_path / "switch.html", scale=1.0))
    assert page.get_attribute(".itx-btn[data-row='2']", "aria-pressed") == "true"
    assert colours(page, PROMPT) == expected(expl.scores[2], 1.0)
    assert (
        page.text_content(".itx-top") == "largest |score|: not +0.80 \u00b7 at +0.30 \u00b7 all +0.20 \u00b7 bad -0.10"
    )
    page.click(".itx-btn[data-row='0']")
    assert colours(page, PROMPT) == expected(expl.scores[0], 1.0)
    assert (
        page.text_content(".itx-top") == "largest |score|: not -0.80 \u00b7 at -0.30 \u00b7 bad +0.10 \u00b7 all +0.00"
    )
    assert page.text_content(".itx-label") == "negative"
    assert page.get_attribute(".itx-btn[data-row='0']", "aria-pressed") == "true"
    assert page.get_attribute(".itx-btn[data-row='2']", "aria-pressed") == "false"
    assert page.text_content(".itx-hi") == "+1"
    shot(page, "class-switch")

    many = classification("good film", np.arange(24.0) - 12, labels=tuple(f"c{i}" for i in range(12)), predicted=3)
    open_page(page, save_html(many, tmp_path / "select.html"))
    assert page.input_value("select.itx-select") == "3"
    page.select_option("select.itx-select", "9")
    assert colours(page, PROMPT) == expected(many.scores[9])


def test_list_page_rows_are_independent(page, tmp_path):
    a = classification("good film", [[0.5, 0.2], [-0.5, -0.2]], labels=("pos", "neg"), predicted=0)
    b = classification("bad film", [[-0.7, 0.1], [0.7, -0.1]], labels=("pos", "neg"), predicted=1)
    open_page(page, save_html([a, b, causal()], tmp_path / "list.html"))
    roots = page.query_selector_all(".itx-root")
    assert len(roots) == 3
    before = colours(page, f".itx-list-row:nth-child(3) {PROMPT}")
    roots[0].query_selector(".itx-btn[data-row='1']").click()
    assert colours(page, f".itx-list-row:nth-child(2) {PROMPT}") == expected(a.scores[1])
    assert colours(page, f".itx-list-row:nth-child(3) {PROMPT}") == before
    shot(page, "list")


@pytest.mark.parametrize("host", ["jupyterlab", "classic"])
def test_fragment_works_when_a_notebook_inserts_it(page, host):
    """JupyterLab re-creates each script in place; the classic Notebook (jQuery) evaluates it in <head>.

    The same output shown twice (two views of one cell output) repeats its element id: each copy
    must still work on its own.
    """
    expl = classification("good film", [[0.5, 0.2], [-0.5, -0.2]], labels=("pos", "neg"), predicted=0)
    markup = explanation_html(expl)
    page.set_content("<!doctype html><html><head></head><body><div id=one></div><div id=two></div></body></html>")
    insert = """([markup, host, where]) => {
        const out = document.getElementById(where);
        out.innerHTML = markup;  // scripts inserted by innerHTML do not run
        for (const old of Array.from(out.querySelectorAll("script"))) {
            const s = document.createElement("script");
            if (old.type) s.type = old.type;
            s.textContent = old.textContent;
            if (host === "jupyterlab") old.replaceWith(s);
            else if (!old.type) { document.head.appendChild(s); s.remove(); }
        }
    }"""
    page.evaluate(insert, [markup, host, "one"])
    page.click("#one .itx-btn[data-row='1']")
    assert colours(page, f"#one {PROMPT}") == expected(expl.scores[1])
    page.evaluate(insert, [markup, host, "two"])
    assert colours(page, f"#two {PROMPT}") == expected(expl.scores[0])
    page.click("#two .itx-btn[data-row='1']")
    page.click("#one .itx-btn[data-row='0']")
    assert colours(page, f"#two {PROMPT}") == expected(expl.scores[1])
    assert colours(page, f"#one {PROMPT}") == expected(expl.scores[0])
