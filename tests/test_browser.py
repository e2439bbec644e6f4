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
from test_render import _contrast

from interp_text.explanation import Explanation, Target
from interp_text.render import POSITIVE_RGB, explanation_html, explanations_html, save_html, score_rgb, text_rgb

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


def top_line(*picks: tuple[str, str]) -> str:
    """The "largest |score|" line: each name between Unicode isolates (FSI ... PDI)."""
    return "largest |score|: " + " \u00b7 ".join(f"\u2068{name}\u2069 {score}" for name, score in picks)


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
    assert page.text_content(".itx-top") == top_line(
        ("not", "+0.80"), ("at", "+0.30"), ("all", "+0.20"), ("bad", "-0.10")
    )
    page.click(".itx-btn[data-row='0']")
    assert colours(page, PROMPT) == expected(expl.scores[0], 1.0)
    assert page.text_content(".itx-top") == top_line(
        ("not", "-0.80"), ("at", "-0.30"), ("bad", "+0.10"), ("all", "+0.00")
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


# ----------------------------------------------------------------- layout and readability
def boxes(page, selector: str) -> list[tuple[int, int, int, int]]:
    """Where the elements are on the page (not in the viewport, which scrolls to what the pointer moves to)."""
    found = page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })",
    )
    return [tuple(round(v) for v in b) for b in found]


def point_at(page, selector: str) -> None:
    """Move the mouse to the middle of an element, as a person does (no waiting for it to keep still)."""
    element = page.query_selector(selector)
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


@pytest.mark.parametrize("width", [360, 560, 700])
def test_hovering_never_moves_the_layout(page, tmp_path, width):
    """Rows whose label, info and top line differ in length: a line that wrapped on one row and not on
    another moved the output under the pointer, which then hovered another output."""
    rng = np.random.default_rng(0)
    prompt, output = "The capital of France is", " Paris, which is also known internationally as the City of Light."
    n, m = len(words(prompt)[0]), len(words(output)[0])
    expl = hand_made.causal(prompt, output, rng.normal(size=(m, n + m)), probability=0.97)
    # labels that are not the words: empty, an emoji (a taller fallback font), a long one, a line break
    for row, label in zip((3, 5, 7, 9), ("", "\U0001f600", "internationally " * 6, "\n")):
        expl.targets[row].label = label
    page.set_viewport_size({"width": width, "height": 700})
    open_page(page, save_html(expl, tmp_path / "gen.html"))
    watched = ".itx-head, .itx-panels, .itx-out[data-row], .itx-top, .itx-legend, .itx-heat-wrap, .itx-meta"
    still = boxes(page, watched)
    for what, selector in (("output", ".itx-out[data-row='{}']"), ("heat-map row", ".itx-heat tr[data-row='{}'] th")):
        for r in range(m):
            point_at(page, selector.format(r))
            assert page.get_attribute(".itx-root", "data-row") == str(r), f"the pointer on {what} {r} shows another"
            assert boxes(page, watched) == still, f"hovering {what} {r} moved the page"
    # whatever is cut to one line says it all in its tooltip
    assert page.get_attribute(".itx-label", "title") == expl.targets[m - 1].label
    assert page.get_attribute(".itx-top", "title") == page.text_content(".itx-top")


def test_long_labels_stay_inside_the_card(page, tmp_path):
    long_labels = ("x" * 150, "https://example.com/a/very/long/label/without/any/spaces/" + "z" * 80)
    cls = classification("short text here", [[0.1, 0.2, 0.3], [0.3, -0.2, 0.1]], labels=long_labels, predicted=1)
    many = classification(
        "short text", np.arange(24.0), labels=tuple("c" * 100 + str(i) for i in range(12)), predicted=1
    )
    url = " Paris. https://example.org/" + "q" * 120 + " end"
    m = len(words(url)[0])
    gen = hand_made.causal("The capital is", url, np.ones((m, 3 + m)))
    open_page(page, save_html([cls, many, gen], tmp_path / "long.html"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1100
    for root in page.query_selector_all(".itx-root"):
        assert root.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert page.get_attribute(".itx-btn[data-row='0']", "title") == long_labels[0]
    assert page.get_attribute(".itx-label", "title") == long_labels[1]
    heat = page.query_selector(".itx-heat tbody tr[data-row='1'] th")
    assert heat.get_attribute("title") == gen.targets[1].label and heat.bounding_box()["width"] < 200
    shot(page, "long-labels")


@pytest.mark.parametrize("line_break", ["\n", "\r"])
def test_whitespace_only_elements_can_be_seen_and_hovered(line_break, page, tmp_path):
    text = f"Question: capital?{line_break}Answer:  Paris"
    spans = [(0, 9), (10, 18), (18, 19), (19, 26), (26, 28), (28, 33)]  # "\n" and "  " are elements, as tokens can be
    elements = [text[s:e] for s, e in spans]
    scores = np.array([[0.1, 0.2, 1.0, -0.3, 0.5, 0.0], [0.0] * 6])  # (2 rows, 6 elements)
    expl = Explanation(text, elements, spans, scores, [Target("pos", 0), Target("neg", 1)], method="saliency")
    open_page(page, save_html(expl, tmp_path / "ws.html"))
    newline = page.query_selector(f"{PROMPT}[data-col='2']")
    box = newline.bounding_box()
    assert box["width"] >= 6 and box["height"] >= 10
    assert newline.evaluate("e => getComputedStyle(e).backgroundColor") == css(POSITIVE_RGB)
    # the line break is still one: "Answer:" starts a new line
    answer = page.query_selector(f"{PROMPT}[data-col='3']").bounding_box()
    assert answer["y"] > box["y"] + box["height"] / 2
    # (an HTML page holds every line break as \n: the browser reads a lone \r as one)
    assert page.eval_on_selector(".itx-text[data-side=prompt]", "e => e.textContent") == text.replace("\r", "\n")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # what the pointer finds there
    assert page.evaluate(f"document.elementFromPoint({x}, {y}).title") == "\u21b5: +1"
    static = page.eval_on_selector_all(PROMPT, "els => els.map(e => e.title)")
    assert static[4] == "\u2423: +0.5"
    page.click(".itx-btn[data-row='1']")
    page.click(".itx-btn[data-row='0']")
    assert page.eval_on_selector_all(PROMPT, "els => els.map(e => e.title)") == static  # the script names them alike


def test_the_script_writes_scores_as_the_page_does(page, tmp_path):
    # Python writes "%+.6g"; the script, which rewrites the titles when another row is shown, must
    # write the same text: its own number formatting would give "+1e-7", "+1234570", "+0", "+100001" here.
    values = [1e-7, 1234567.0, -0.0, -98765.4321, 0.000123456789, 99999.95, 100000.5, 1234.125]
    text = " ".join(f"w{i}" for i in range(len(values)))
    spans = [(3 * i, 3 * i + 2) for i in range(len(values))]
    elements = [text[a:b] for a, b in spans]
    expl = Explanation(
        text,
        elements,
        spans,
        np.array([values, [1.0] * len(values)]),
        [Target("pos", 0), Target("neg", 1)],
        method="saliency",
    )
    open_page(page, save_html(expl, tmp_path / "numbers.html"))
    static = page.eval_on_selector_all(PROMPT, "els => els.map(e => e.title)")
    assert static == [
        "w0: +1e-07", "w1: +1.23457e+06", "w2: -0", "w3: -98765.4", "w4: +0.000123457", "w5: +99999.9",
        "w6: +100000", "w7: +1234.12",  # exact halves, to even as Python rounds them (JavaScript rounds them up)
    ]  # fmt: skip
    page.click(".itx-btn[data-row='1']")
    page.click(".itx-btn[data-row='0']")
    assert page.eval_on_selector_all(PROMPT, "els => els.map(e => e.title)") == static


def test_right_to_left_text_keeps_its_punctuation_at_the_end(page, tmp_path):
    hebrew = "\u05d4\u05e1\u05e8\u05d8 \u05d4\u05d9\u05d4 \u05e0\u05d4\u05d3\u05e8."
    expl = classification(hebrew, [[0.5, -1.0, 0.2], [0.1, 0.2, 0.3]], labels=("neg", "pos"), predicted=0)
    open_page(page, save_html(expl, tmp_path / "rtl.html"))
    block = ".itx-text[data-side=prompt]"
    assert page.eval_on_selector(block, "e => getComputedStyle(e).direction") == "rtl"
    # the full stop ends the sentence: in a right-to-left line that is its left end, left of every word
    stop, first = page.eval_on_selector(
        block,
        """e => { const last = e.querySelector("[data-col='2']").firstChild, r = document.createRange();
        r.setStart(last, last.data.length - 1); r.setEnd(last, last.data.length);
        return [r.getBoundingClientRect().left, e.querySelector("[data-col='0']").getBoundingClientRect().left]; }""",
    )
    assert stop < first


def test_heatmap_corner_stays_over_scrolled_headers(page, tmp_path):
    prompt = " ".join(f"w{i}" for i in range(40))
    output = " " + " ".join(f"o{i}" for i in range(40))
    expl = hand_made.causal(prompt, output, np.ones((40, 80)))
    open_page(page, save_html(expl, tmp_path / "heat.html"))
    wrap = page.query_selector(".itx-heat-wrap")
    corner = page.query_selector(".itx-heat thead th:first-child").bounding_box()
    wrap.evaluate("e => { e.scrollLeft = 300; e.scrollTop = 200; }")
    moved = page.query_selector(".itx-heat thead th:first-child").bounding_box()
    assert abs(moved["x"] - corner["x"]) <= 1 and abs(moved["y"] - corner["y"]) <= 1  # the table's 1 px spacing
    x, y = corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2
    corner_th = ".itx-heat thead th:first-child"
    assert page.evaluate(f"document.elementFromPoint({x}, {y}) === document.querySelector('{corner_th}')")
    assert page.eval_on_selector(corner_th, "e => getComputedStyle(e).backgroundColor") == WHITE


def test_outputs_are_wide_enough_to_click_and_selection_covers_no_glyph(page, tmp_path):
    expl = hand_made.causal("Say it", " a . b", np.ones((3, 5)))
    open_page(page, save_html(expl, tmp_path / "dot.html"))
    outputs = ".itx-out[data-row]"
    assert page.query_selector(f"{outputs}[data-row='1']").bounding_box()["width"] >= 14  # the "."
    placed = boxes(page, outputs)
    for row in (1, 2, 0):
        page.click(f"{outputs}[data-row='{row}']")
        page.mouse.move(1, 1)
        assert boxes(page, outputs) == placed
        ring = page.eval_on_selector(
            f"{outputs}[data-row='{row}']",
            "e => [getComputedStyle(e).outlineStyle, parseFloat(getComputedStyle(e).outlineOffset), "
            "getComputedStyle(e).boxShadow]",
        )
        assert ring == ["solid", 1.0, "none"]  # drawn outside the element, not over its letters


def test_infinite_scores_read_inf_after_switching_rows(page, tmp_path):
    scores = [[float("-inf"), float("inf"), 1.0], [0.5, 0.5, 0.5]]
    expl = classification("a b c", scores, labels=("neg", "pos"), predicted=0)
    open_page(page, save_html(expl, tmp_path / "inf.html"))
    titles = "els => els.map(e => e.title)"
    static = page.eval_on_selector_all(PROMPT, titles)
    assert static == ["a: -inf", "b: +inf", "c: +1"]
    page.click(".itx-btn[data-row='1']")
    page.click(".itx-btn[data-row='0']")
    assert page.eval_on_selector_all(PROMPT, titles) == static


def test_list_in_a_dark_notebook_keeps_its_own_light_background(page):
    a = classification("good film", [[0.5, 0.2], [-0.5, -0.2]], labels=("pos", "neg"), predicted=0)
    page.set_content(f'<!doctype html><body style="background:#111;color:#eee">{explanations_html([a, a])}</body>')
    bg, fg = page.eval_on_selector(
        ".itx-list",
        "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e.querySelector('.itx-list-idx')).color]",
    )
    assert bg != "rgba(0, 0, 0, 0)"
    assert _contrast(rgb(fg), rgb(bg)) >= 4.5


def rgb(value: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in value[value.index("(") + 1 : value.index(")")].split(",")[:3])


def test_outputs_stay_in_view_beside_a_long_prompt(page, tmp_path):
    prompt = " ".join(f"word{i}" for i in range(1500))  # many screens of prompt beside a short output
    expl = hand_made.causal(prompt, " yes it is", np.ones((3, 1503)))
    open_page(page, save_html(expl, tmp_path / "long.html"))
    out = ".itx-out-panel .itx-out[data-row]"
    first = page.query_selector(out).bounding_box()
    page.evaluate("window.scrollTo(0, 3000)")
    moved = page.query_selector(out).bounding_box()
    assert 0 <= moved["y"] < 100 and moved["x"] == first["x"]  # pinned at the top of the window, same column
    page.click(f"{out} >> nth=1")  # still clickable there: the prompt takes the second output's scores
    assert page.eval_on_selector(".itx-out.itx-sel", "e => e.dataset.row") == "1"
    page.set_viewport_size({"width": 500, "height": 800})  # too narrow for two columns: the output below the prompt
    page.evaluate("window.scrollTo(0, 0)")
    below = page.query_selector(out).bounding_box()
    prompt_box = page.query_selector(".itx-text[data-side=prompt]").bounding_box()
    assert below["y"] >= prompt_box["y"] + prompt_box["height"]
