"""Rendering: HTML fragments and pages, terminal text. Explanations are built by hand, no model."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import hand_made
import numpy as np
import pytest
from hand_made import classification, words

from interp_text.errors import InterpTextError
from interp_text.explanation import Explanation, Target
from interp_text.render import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    WHITE_RGB,
    ExplanationList,
    explanation_html,
    explanation_terminal,
    explanations_html,
    save_html,
    score_rgb,
    text_rgb,
)

ROOT = Path(__file__).resolve().parents[1]
MALICIOUS = "Nice <script>alert(1)</script> & \"quoted\" 'single' </div> <img src=x onerror=alert(2)> end"


# ----------------------------------------------------------------- builders
def causal(prompt: str = "The capital of France is", output: str = " Paris. It is big") -> Explanation:
    n, m = len(words(prompt)[0]), len(words(output)[0])
    scores = np.arange(1, m * (n + m) + 1, dtype=np.float64).reshape(m, n + m) * np.where(
        np.arange(n + m) % 2, -1.0, 1.0
    )  # (outputs, prompt + outputs), alternating signs
    return hand_made.causal(prompt, output, scores, probability=0.5)


def seq2seq() -> Explanation:
    prompt, output = "translate: the cat sleeps", "le chat dort"
    elements, spans = words(prompt)
    out_elements, out_spans = words(output)
    scores = np.array([[0.1, 0.9, -0.2, 0.0], [0.0, -0.1, 0.8, 0.1], [0.05, 0.0, 0.1, 0.7]])  # (3 outputs, 4 inputs)
    targets = [Target(label, k, probability=0.9) for k, label in enumerate(out_elements)]
    return Explanation(
        prompt,
        elements,
        spans,
        scores,
        targets,
        method="occlusion",
        task="seq2seq",
        output_text=output,
        output_elements=out_elements,
        output_spans=out_spans,
    )


# ----------------------------------------------------------------- a tiny DOM, parsed as a browser would
class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, *args, **kwargs) -> Node:
        found = self.find_all(*args, **kwargs)
        assert found, (args, kwargs)
        return found[0]


class Tree(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#root", {}, None)
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node is not self.root and node.tag != tag:
            node = node.parent
        assert node is not self.root, f"stray </{tag}>"
        self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def dom(markup: str) -> Node:
    return Tree(markup).root


def style_rgb(node: Node, prop: str = "background-color") -> tuple[int, int, int] | None:
    m = re.search(rf"(?:^|;){prop}:rgb\((\d+), (\d+), (\d+)\)", node.attrs.get("style") or "")
    return tuple(int(v) for v in m.groups()) if m else None


def cards_of(root: Node) -> list:
    """``[[card id, data], ...]``: the JSON the page's one script works from."""
    code = [s.text() for s in root.find_all("script") if "var CARDS = " in s.text()]
    assert len(code) == 1
    return json.loads(re.search(r"var CARDS = (.*);  //", code[0]).group(1))


def data_of(root: Node) -> dict:
    """The JSON of a page's one card."""
    (card,) = cards_of(root)
    return card[1]


def prompt_cells(root: Node) -> list[Node]:
    block = root.find("div", "itx-text", data_side="prompt")
    return block.find_all("span", "itx-el")


# ----------------------------------------------------------------- escaping
def test_user_text_is_escaped_and_shown_verbatim():
    expl = classification(
        MALICIOUS,
        np.linspace(-1, 1, 2 * len(words(MALICIOUS)[0])),
        labels=("</script><script>alert(3)</script>", 'pos"&<b>'),
    )
    markup = explanation_html(expl)
    assert "<script>alert" not in markup
    assert "<img" not in markup
    assert "</div> <img" not in markup
    root = dom(markup)
    assert len(root.find_all("script")) == 1  # ours, nothing from the text
    assert root.find("div", "itx-text", data_side="prompt").text() == MALICIOUS
    assert next(b.text() for b in root.find_all("button", "itx-btn")).startswith("</script><script>alert(3)")
    assert root.find("b", "itx-label").text() == 'pos"&<b>'


def test_embedded_json_cannot_close_its_script_tag():
    expl = classification("a </script><script>alert(1)</script> b", np.ones(6), labels=("x</script>", "y"))
    root = dom(explanation_html(expl))
    code = root.find("script").text()
    assert "</script" not in code.lower() and "<!--" not in code  # nothing can end the element early
    raw = re.search(r"var CARDS = (.*);  //", code).group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    parsed = data_of(root)
    assert parsed["rows"][0]["label"] == "x</script>"
    assert parsed["columns"] == expl.elements


def test_attribute_quotes_are_escaped():
    expl = classification("say \"hi\" 'there'", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    root = dom(explanation_html(expl))
    assert [c.attrs["title"].rsplit(":", 1)[0] for c in prompt_cells(root)] == expl.elements


# ----------------------------------------------------------------- structure
@pytest.mark.parametrize(
    "text",
    ["good movie", "  leading and\ttabs\n\nnew  lines  ", "caf\u00e9 \u2603 \U0001f600 done", MALICIOUS],
)
def test_one_span_per_element_and_text_verbatim(text):
    elements, _ = words(text)
    expl = classification(text, np.ones((2, len(elements))))
    root = dom(explanation_html(expl))
    cells = prompt_cells(root)
    assert sorted(int(c.attrs["data-col"]) for c in cells) == list(range(len(elements)))
    assert [c.text() for c in cells] == elements
    assert root.find("div", "itx-text", data_side="prompt").text() == text


def test_uncovered_overlapping_and_empty_spans():
    text = "[x] ab-cd"
    # a special token with an empty span, spans out of order, an overlap, uncovered "[x] "
    spans = [(0, 0), (7, 9), (4, 6), (5, 7)]
    elements = ["[CLS]", "cd", "ab", "b-"]
    expl = Explanation(text, elements, spans, np.array([[0.1, 0.2, 0.3, 0.4]]), [Target("pos", 0)], "saliency")
    root = dom(explanation_html(expl))
    cells = prompt_cells(root)
    assert sorted(int(c.attrs["data-col"]) for c in cells) == [0, 1, 2, 3]
    assert root.find("div", "itx-text", data_side="prompt").text() == text
    special = root.find("span", "itx-el", data_col="0")
    assert special.text() == "" and special.attrs["data-label"] == "[CLS]" and "itx-empty" in special.classes


def test_byte_pieces_of_one_character_draw_it_once(monkeypatch):
    """ALL_TOKENS: three byte-level tokens of one emoji share its span; the first draws it, the others a "+"."""
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    text = "I \U0001f600 ok"
    spans, elements = [(0, 1), (2, 3), (2, 3), (2, 3), (4, 6)], ["I", "\U0001f600", "\U0001f600", "\U0001f600", "ok"]
    expl = Explanation(text, elements, spans, np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]), [Target("pos", 0)], "saliency")
    root = dom(explanation_html(expl))
    assert root.find("div", "itx-text", data_side="prompt").text() == text
    pieces = [root.find("span", "itx-el", data_col=str(j)) for j in range(5)]
    assert [p.text() for p in pieces] == ["I", "\U0001f600", "", "", "ok"]
    assert [p.attrs.get("data-label") for p in pieces[2:4]] == ["+", "+"]
    assert pieces[2].attrs["title"].startswith("\U0001f600: ")  # the hover still names the character
    terminal = explanation_terminal(expl, color=False).splitlines()[2]
    assert terminal == "I[+0.10] \U0001f600[+0.20]+[+0.30]+[+0.40] ok[+0.50]"


def test_generation_output_text_verbatim_and_clickable():
    expl = causal(output=" Paris.\n  It is big")
    root = dom(explanation_html(expl))
    out = root.find("div", "itx-text", data_side="output")
    assert out.text() == expl.output_text
    spans = out.find_all("span", "itx-out")
    assert [s.attrs["data-row"] for s in spans] == ["0", "1", "2", "3"]
    n = len(expl.elements)
    assert [int(s.attrs["data-col"]) for s in spans] == [n, n + 1, n + 2, n + 3]  # outputs are columns too
    assert "itx-sel" in spans[0].classes
    assert len(prompt_cells(root)) == n


def test_unique_ids_and_scoped_script():
    expl = classification("good movie", [0.1, 0.2, 0.3, 0.4])
    a, b = explanation_html(expl), explanation_html(expl)
    id_a = dom(a).find("div", "itx-root").attrs["id"]
    id_b = dom(b).find("div", "itx-root").attrs["id"]
    assert id_a != id_b
    assert cards_of(dom(a))[0][0] == id_a and f"#{id_a} " in a
    assert "require(" not in a and "http://" not in a and "https://" not in a


# ----------------------------------------------------------------- colours
def test_colour_white_at_zero_and_hue_from_sign():
    assert score_rgb(0.0, 1.0) == WHITE_RGB
    assert score_rgb(1.0, 1.0) == POSITIVE_RGB
    assert score_rgb(-1.0, 1.0) == NEGATIVE_RGB
    r, g, b = score_rgb(0.4, 1.0)
    assert r > g and r > b  # red
    r, g, b = score_rgb(-0.4, 1.0)
    assert b > r and b > g  # blue
    assert score_rgb(float("nan"), 1.0) is None
    assert score_rgb(5.0, 1.0) == POSITIVE_RGB  # clipped beyond the scale
    assert score_rgb(0.7, 0.0) == WHITE_RGB  # an all-zero row draws white


def test_colour_monotone_in_score():
    values = np.linspace(0, 1, 21)
    for sign in (1, -1):
        colours = [score_rgb(sign * v, 1.0) for v in values]
        distance = [sum(255 - c for c in rgb) for rgb in colours]
        assert all(a < b for a, b in itertools.pairwise(distance))
        for channel in range(3):
            seq = [rgb[channel] for rgb in colours]
            assert all(a >= b for a, b in itertools.pairwise(seq))


def test_text_colour_is_readable():
    for v in np.linspace(-1, 1, 41):
        bg = score_rgb(v, 1.0)
        fg = text_rgb(bg)

        def lum(c):
            c = [x / 255 for x in c]
            c = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
            return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

        hi, lo = max(lum(bg), lum(fg)), min(lum(bg), lum(fg))
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, (v, bg, fg)


def test_html_colours_follow_scores():
    scores = [[0.0, 0.25, 0.5, 1.0, -0.5, -1.0], [0.0] * 6]
    expl = classification("a b c d e f", scores, predicted=0)
    cells = prompt_cells(dom(explanation_html(expl)))
    colours = [style_rgb(c) for c in cells]
    assert colours[0] == WHITE_RGB
    assert colours[3] == POSITIVE_RGB and colours[5] == NEGATIVE_RGB
    assert colours == [score_rgb(v, 1.0) for v in scores[0]]
    assert [c.attrs["title"] for c in cells][:2] == ["a: +0", "b: +0.25"]
    fg = [style_rgb(c, "color") for c in cells]
    assert fg == [text_rgb(score_rgb(v, 1.0)) for v in scores[0]]


def test_nan_cells_marked_not_attributable():
    expl = causal()
    root = dom(explanation_html(expl, target=1))
    out = root.find("div", "itx-text", data_side="output").find_all("span", "itx-out")
    # row 1 may use output 0 only
    assert "itx-nan" not in out[0].classes and style_rgb(out[0]) is not None
    for span in out[1:]:
        assert "itx-nan" in span.classes
        assert span.attrs["title"].endswith("not attributable")
        assert style_rgb(span) is None
    assert "itx-sel" in out[1].classes
    nan_cells = root.find("table", "itx-heat").find_all("td", "itx-nan")
    assert len(nan_cells) == int(np.isnan(expl.scores).sum())
    assert all(c.attrs["title"].endswith("not attributable") for c in nan_cells)
    assert data_of(root)["scores"][0][-1] is None


def test_shared_scale_honoured():
    expl = classification("a b", [[1.0, -0.5], [0.2, 0.1]], predicted=0)
    own = [style_rgb(c) for c in prompt_cells(dom(explanation_html(expl)))]
    assert own == [POSITIVE_RGB, score_rgb(-0.5, 1.0)]
    root = dom(explanation_html(expl, scale=4.0))
    assert [style_rgb(c) for c in prompt_cells(root)] == [score_rgb(1.0, 4.0), score_rgb(-0.5, 4.0)]
    assert root.find("span", "itx-lo").text() == "-4" and root.find("span", "itx-hi").text() == "+4"
    assert data_of(root)["scales"] == [4.0, 4.0]

    other = classification("c d", [[4.0, 1.0], [0.0, 0.0]], predicted=0)
    page = dom(explanations_html([expl, other], scale=4.0))
    blocks = page.find_all("div", "itx-text", data_side="prompt")
    assert len(blocks) == 2
    # the same score has the same colour in both texts
    assert style_rgb(blocks[0].find_all("span", "itx-el")[0]) == style_rgb(blocks[1].find_all("span", "itx-el")[1])


def test_default_scale_is_row_max_abs():
    expl = classification("a b c", [[0.2, -0.8, 0.4], [1.0, 1.0, 1.0]], predicted=0)
    cells = prompt_cells(dom(explanation_html(expl)))
    assert [style_rgb(c) for c in cells] == [score_rgb(0.2, 0.8), NEGATIVE_RGB, score_rgb(0.4, 0.8)]


# ----------------------------------------------------------------- classes and targets
def test_class_switch_defaults_to_predicted():
    labels = ("neg", "neutral", "pos")
    scores = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]]
    root = dom(explanation_html(classification("good movie", scores, labels=labels, predicted=2)))
    buttons = root.find("div", "itx-controls").find_all("button")
    assert [b.attrs["data-row"] for b in buttons] == ["0", "1", "2"]
    assert [b.attrs["aria-pressed"] for b in buttons] == ["false", "false", "true"]
    assert root.find("b", "itx-label").text() == "pos"
    assert "predicted" in root.find("div", "itx-info").text()
    assert [style_rgb(c) for c in prompt_cells(root)] == [NEGATIVE_RGB, score_rgb(0.5, 1.0)]
    assert data_of(root)["row"] == 2


def test_many_classes_use_a_select():
    labels = tuple(f"class{i}" for i in range(12))
    expl = classification("a b", np.arange(24.0), labels=labels, predicted=7)
    select = dom(explanation_html(expl)).find("select", "itx-select")
    options = select.find_all("option")
    assert len(options) == 12
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == ["7"]


def test_default_row_without_predicted_and_explicit_target():
    expl = classification("a b", [[1.0, 0.0], [0.0, 1.0]], predicted=5)  # predicted class not explained
    assert data_of(dom(explanation_html(expl)))["row"] == 0
    for target in (1, "pos", -1):
        root = dom(explanation_html(expl, target=target))
        assert root.find("b", "itx-label").text() == "pos"
    single = dom(explanation_html(classification("a", [[1.0]], labels=("pos",), predicted=0)))
    assert not single.find_all("div", "itx-controls")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scale": 0}, "scale must be a positive"),
        ({"scale": -1.0}, "scale must be a positive"),
        ({"scale": float("inf")}, "scale must be a positive"),
        ({"scale": "big"}, "'big'"),
        ({"target": "nope"}, "'nope'"),
        ({"target": 9}, "out of range"),
        ({"target": 1.5}, "target must be"),
    ],
)
def test_bad_options_raise(options, match):
    expl = classification("a b", [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(InterpTextError, match=match):
        explanation_html(expl, **options)


@pytest.mark.parametrize(
    "call,name,accepted",
    [
        (lambda e, p: e.to_html(colour="red"), "to_html", "['scale', 'target']"),
        (lambda e, p: e.save_html(p, colour="red"), "save_html", "['scale', 'target']"),
        (lambda e, p: save_html(e, p, colour="red"), "save_html", "['scale', 'target']"),
        (lambda e, p: e.to_terminal(colour="red"), "to_terminal", "['color', 'scale', 'target']"),
        (lambda e, p: ExplanationList([e]).to_html(colour="red"), "to_html", "['scale', 'target']"),
        (lambda e, p: ExplanationList([e]).save_html(p, colour="red"), "save_html", "['scale', 'target']"),
        (lambda e, p: save_html([e], p, colour="red"), "save_html", "['scale', 'target']"),
        (lambda e, p: ExplanationList([e]).to_terminal(colour="red"), "to_terminal", "['color', 'scale', 'target']"),
    ],
)
def test_unknown_option_is_an_error(call, name, accepted, tmp_path):
    expl = classification("a b", [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(InterpTextError) as err:
        call(expl, tmp_path / "page.html")
    assert str(err.value) == f"{name} got unknown option(s) ['colour']; the accepted options are {accepted}."
    assert not (tmp_path / "page.html").exists()


# ----------------------------------------------------------------- generation
def test_causal_heatmap_matrix():
    expl = causal()
    root = dom(explanation_html(expl))
    table = root.find("table", "itx-heat")
    rows = table.find("tbody").find_all("tr")
    assert len(rows) == len(expl.targets)
    assert all(len(r.find_all("td")) == len(expl.columns) for r in rows)
    assert [r.find("th").text() for r in rows] == expl.target_labels
    assert "itx-sel-row" in rows[0].classes
    first = rows[2].find_all("td")
    assert [style_rgb(td) for td in first[:3]] == [
        score_rgb(v, np.nanmax(np.abs(expl.scores[2]))) for v in expl.scores[2, :3]
    ]


def test_seq2seq_outputs_are_rows_not_columns():
    expl = seq2seq()
    root = dom(explanation_html(expl, target="chat"))
    out = root.find("div", "itx-text", data_side="output").find_all("span", "itx-out")
    assert [s.attrs["data-row"] for s in out] == ["0", "1", "2"]
    assert all("data-col" not in s.attrs for s in out)
    assert "itx-sel" in out[1].classes
    assert [style_rgb(c) for c in prompt_cells(root)] == [score_rgb(v, 0.8) for v in expl.scores[1]]
    assert len(root.find("table", "itx-heat").find_all("td")) == 12


def test_generation_without_output_spans_rebuilds_them():
    expl = causal()
    expl.output_spans = None
    root = dom(explanation_html(expl))
    assert root.find("div", "itx-text", data_side="output").text() == expl.output_text
    expl.output_text = None
    text = dom(explanation_html(expl)).find("div", "itx-text", data_side="output").text()
    assert text == "Paris. It is big"


# ----------------------------------------------------------------- pages and lists
def test_save_html_is_a_standalone_page(tmp_path):
    expl = classification("caf\u00e9 \u2603 good", np.ones((2, 3)))
    path = save_html(expl, tmp_path / "one.html", scale=2.0)
    assert path == tmp_path / "one.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in page and "Content-Security-Policy" in page
    assert ">caf\u00e9</span> <span" in page and "\u2603" in page
    assert not re.search(r"(src|href)=", page)
    assert expl.save_html(tmp_path / "two.html").read_text(encoding="utf-8").count('class="itx-root"') == 1


def test_list_page_one_row_per_text(tmp_path):
    items = [classification("good movie", np.ones((2, 2))), causal(), seq2seq()]
    root = dom(explanations_html(items))
    rows = root.find_all("div", "itx-list-row")
    assert len(rows) == 3
    assert [r.find("div", "itx-root").attrs["data-task"] for r in rows] == ["classification", "causal_lm", "seq2seq"]
    page = save_html(items, tmp_path / "list.html").read_text(encoding="utf-8")
    assert page.count('class="itx-list-row"') == 3
    assert "no explanations" in explanations_html([]) and "<script" not in explanations_html([])
    # One script for the list, after its cards, with each card's id and data; none in the cards.
    ids = [r.find("div", "itx-root").attrs["id"] for r in rows]
    assert [c[0] for c in cards_of(root)] == ids
    assert [c[1]["scores"] for c in cards_of(root)] == [data_of(dom(explanation_html(e)))["scores"] for e in items]
    assert all(r.find_all("script") == [] for r in rows)
    assert root.find("div", "itx-list").children[-1].tag == "script"


def test_explanation_list_displays_as_one_page(tmp_path):
    items = ExplanationList([classification("good", [[0.5], [-0.5]]), classification("bad", [[-0.5], [0.5]])])
    assert isinstance(items, list)
    markup = items._repr_html_()
    assert markup.count('class="itx-list"') == 1 and markup.count('class="itx-root"') == 2
    assert items.save_html(tmp_path / "l.html").exists()
    assert "good[+0.50]" in items.to_terminal(color=False)
    with pytest.raises(InterpTextError, match="got str"):
        explanations_html("not a list")


def test_explanation_list_slices_and_concatenations_stay_explanation_lists():
    a, b, c = (classification(t, [[0.5], [-0.5]]) for t in ("good", "bad", "fine"))
    items = ExplanationList([a, b, c])
    cases = [
        (items[1:3], [b, c]),
        (items[::-1], [c, b, a]),
        (items + [a], [a, b, c, a]),
        ([c] + items, [c, a, b, c]),
        (items[:1] + items[2:], [a, c]),
        (items[:1] * 2, [a, a]),
        (2 * items[:1], [a, a]),
        (items.copy(), [a, b, c]),
    ]
    for got, want in cases:
        assert type(got) is ExplanationList
        assert len(got) == len(want) and all(x is y for x, y in zip(got, want))
    assert items[1] is b and items[-1] is c
    assert items[1:3].to_html().count('class="itx-root"') == 2
    items += [a]
    assert type(items) is ExplanationList and len(items) == 4


def test_explanation_list_prints_each_explanation_and_has_a_short_repr(monkeypatch, capsys):
    monkeypatch.setenv("NO_COLOR", "1")
    a = classification("good movie", [[0.52, -0.1], [0.1, 0.2]])
    b = classification("bad", [[-0.5], [0.5]])
    items = ExplanationList([a, b])
    assert str(items) == explanation_terminal(a, color=False) + "\n\n" + explanation_terminal(b, color=False)
    print(items)
    assert capsys.readouterr().out == str(items) + "\n"
    assert (
        repr(items)
        == "ExplanationList(2 explanations, method='saliency', task='classification', texts=['good movie', 'bad'])"
    )
    long = ExplanationList([a, causal(), b, a])
    long[0] = classification("x " * 40, np.zeros((2, 40)))
    assert repr(long) == (
        "ExplanationList(4 explanations, method=['integrated_gradients', 'saliency'], "
        "task=['causal_lm', 'classification'], "
        "texts=['x x x x x x x x x x x x x x...', 'The capital of France is', 'bad', ...])"
    )
    assert repr(ExplanationList()) == "ExplanationList([])"
    assert str(ExplanationList()) == "no explanations"


def test_explanation_methods_delegate(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    expl = classification("good movie", [[0.52, -0.1], [0.1, 0.2]])
    assert 'class="itx-root"' in expl._repr_html_()
    assert "good[+0.52]" in str(expl)


# ----------------------------------------------------------------- terminal
def test_terminal_plain_has_every_element_and_score():
    expl = classification('good & "bad" movie\nnext', [[0.52, -0.1, 0.0, 1e-4, 2.0], [0.0] * 5], predicted=0)
    out = explanation_terminal(expl, color=False)
    assert "\x1b" not in out
    for element, score in zip(expl.elements, ["+0.52", "-0.10", "+0.00", "+1.0e-04", "+2.00"]):
        assert f"{element}[{score}]" in out
    assert "'neg'" in out and "p = 0.500" in out and "predicted" in out
    assert out.count("'pos'") == 1
    assert "movie[+1.0e-04]\nnext[+2.00]" in out  # the line break is kept
    only = explanation_terminal(expl, color=False, target="pos")
    assert "'neg'" not in only and "good[+0.00]" in only


def test_terminal_generation_rows_show_their_completeness_gap():
    expl = causal()
    expl.completeness_gap = np.array([3.03, np.nan, -0.0004, 0.0])
    lines = [line for line in explanation_terminal(expl, color=False).splitlines() if "p=0.500" in line]
    assert [line.split("\u2502")[0].split("p=0.500 ")[1].rstrip() for line in lines] == [
        "gap +3.03",
        "",
        "gap -0.0004",
        "gap +0",
    ]
    assert len({line.index("\u2502") for line in lines}) == 1  # every row's rule lines up


def test_terminal_color_and_no_color(monkeypatch):
    expl = classification("good movie", [[0.52, -0.3], [0.1, 0.2]])
    coloured = explanation_terminal(expl, color=True)
    r, g, b = POSITIVE_RGB
    assert f"\x1b[48;2;{r};{g};{b}m" in coloured and "\x1b[0m" in coloured
    assert "[+0.52]" not in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    auto = explanation_terminal(expl)
    assert "\x1b" not in auto and "good[+0.52]" in auto
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[48;2;" in explanation_terminal(expl)
    with pytest.raises(InterpTextError, match="color must be"):
        explanation_terminal(expl, color="yes")


class Stdout(io.StringIO):
    """A standard output that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("stdout", "env", "color", "coloured"),
    [
        ("tty", {}, None, True),
        ("pipe", {}, None, False),
        (None, {}, None, False),  # pythonw: no standard output at all
        ("tty", {"NO_COLOR": "1"}, None, False),
        ("tty", {"NO_COLOR": ""}, None, True),  # https://no-color.org: set and non-empty
        ("pipe", {"FORCE_COLOR": "1"}, None, True),
        ("pipe", {"FORCE_COLOR": ""}, None, False),
        ("tty", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, None, False),  # NO_COLOR wins, as in CPython
        ("pipe", {"NO_COLOR": "1"}, True, True),  # the argument beats the environment and the stream
        ("tty", {"FORCE_COLOR": "1"}, False, False),
        ("notebook", {}, None, True),  # a Jupyter kernel's stream is no terminal, but shows colours
        ("notebook", {"NO_COLOR": "1"}, None, False),
        ("tty", {"TERM": "dumb"}, None, False),  # a terminal that shows escapes as garbage
        ("tty", {"TERM": "xterm-256color"}, None, True),
        ("tty", {"TERM": "dumb", "FORCE_COLOR": "1"}, None, True),
        ("tty", {"TERM": "dumb"}, True, True),
    ],
)
def test_terminal_colour_follows_stdout_and_environment(stdout, env, color, coloured, monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kernel_stream = type("OutStream", (Stdout,), {"__module__": "ipykernel.iostream"})
    streams = {None: lambda: None, "tty": lambda: Stdout(True), "pipe": lambda: Stdout(False)}
    monkeypatch.setattr("sys.stdout", streams.get(stdout, lambda: kernel_stream(False))())
    expl = classification("good movie", [[0.52, -0.3], [0.1, 0.2]])
    items = ExplanationList([expl, classification("bad", [[-0.5], [0.5]])])
    want = explanation_terminal(expl, color=coloured)
    assert ("\x1b[48;2;" in want) is coloured
    assert explanation_terminal(expl, color=color) == want
    assert expl.to_terminal(color=color) == want
    assert items.to_terminal(color=color).startswith(want + "\n\n")
    if color is None:
        assert str(expl) == want
        assert str(items) == items.to_terminal(color=coloured)


def test_print_to_a_pipe_is_plain():
    code = (
        "from hand_made import classification; from interp_text.render import ExplanationList; "
        "e = classification('good movie', [[0.52, -0.3], [0.1, 0.2]]); print(e); print(ExplanationList([e, e]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    expl = classification("good movie", [[0.52, -0.3], [0.1, 0.2]])
    plain = explanation_terminal(expl, color=False)
    assert out == f"{plain}\n{plain}\n\n{plain}\n"
    forced = subprocess.run(
        [sys.executable, "-c", code], env={**env, "FORCE_COLOR": "1"}, capture_output=True, text=True, check=True
    ).stdout
    assert forced.startswith(explanation_terminal(expl, color=True) + "\n")


def encoded_stdout(encoding: str) -> io.TextIOWrapper:
    """A standard output (no terminal) that writes ``encoding``, as a Windows console or LANG=C does."""
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding)


def test_terminal_decorations_are_ascii_where_stdout_cannot_encode_them(monkeypatch):
    expl = classification("caf\u00e9 \u25b6go\x1b[2J", [[0.5, -0.25], [0.0, 0.0]], predicted=1)
    monkeypatch.setattr("sys.stdout", encoded_stdout("cp1252"))
    out = explanation_terminal(expl, color=False)
    # Our decorations are ASCII; the user's text keeps what cp1252 writes (its café), and its own
    # \u25b6, which cp1252 cannot write, shows as its escape, so that printing it cannot fail.
    assert out.splitlines()[:3] == [
        "saliency | classification | word (mean) | f = logits",
        "> class 'neg'  p = 0.500 | predicted: pos",
        "caf\u00e9[+0.50] \\u25b6go^[[2J[-0.25]",
    ]
    monkeypatch.setattr("sys.stdout", encoded_stdout("utf-8"))
    assert explanation_terminal(expl, color=False).splitlines()[:3] == [
        "saliency \u00b7 classification \u00b7 word (mean) \u00b7 f = logits",
        "\u25b6 class 'neg'  p = 0.500 \u00b7 predicted: pos",
        "caf\u00e9[+0.50] \u25b6go\u241b[2J[-0.25]",
    ]


def test_terminal_generation_is_ascii_where_stdout_is(monkeypatch):
    monkeypatch.setattr("sys.stdout", encoded_stdout("ascii"))
    expl = causal()
    expl.elements[3] = "France\tx\ny"  # a column name holding a tab and a line break, shown on one line
    expl.elements[1:3] = ["  ", "\r"]  # columns of whitespace only: they must not read as nothing
    lines = explanation_terminal(expl, color=False).splitlines()
    assert lines[3:5] == [
        "output element -> its 5 columns of largest |score| (earlier outputs included)",
        "  'Paris.' p=0.500 | is[+5.00]  France\\tx\\ny[-4.00]  \\n[+3.00]  \\x20[-2.00]  The[+1.00]",
    ]
    monkeypatch.setattr("sys.stdout", encoded_stdout("utf-8"))
    assert explanation_terminal(expl, color=False).splitlines()[3:5] == [
        "output element \u2192 its 5 columns of largest |score| (earlier outputs included)",
        "  'Paris.' p=0.500 \u2502 is[+5.00]  France\u2192x\u21b5y[-4.00]  \u21b5[+3.00]  \u2423[-2.00]  The[+1.00]",
    ]


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_print_to_a_narrow_console_does_not_fail(encoding):
    code = (
        "from hand_made import classification; "
        "e = classification('good food', [[0.52, -0.3], [0.1, 0.2]], predicted=0); "
        "e.targets[1].label = 'tr\u00e8s \U0001f600'; "  # a label the console cannot write
        "print(e); "
        "print(classification('caf\u00e9 \U0001f600', [[0.5, -0.25], [0.0, 0.0]], predicted=1).to_terminal(color=False))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), PYTHONIOENCODING=encoding)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode(encoding).splitlines()
    assert lines[:2] == [
        "saliency | classification | word (mean) | f = logits",
        "> class 'neg'  p = 0.500 | predicted",
    ]
    accented = "\u00e8" if encoding == "cp1252" else "\\xe8"
    assert f"> class 'tr{accented}s \\U0001f600'  p = 0.500 | predicted: neg" in lines
    cafe = "caf\u00e9" if encoding == "cp1252" else "caf\\xe9"
    assert f"{cafe}[+0.50] \\U0001f600[-0.25]" in lines


def test_a_windows_line_break_is_a_line_break_in_the_terminal_and_a_lone_cr_is_shown():
    expl = classification("good\r\nfood\rhere", [[0.5, -0.25, 0.125], [0.0, 0.0, 0.0]], predicted=0)
    lines = explanation_terminal(expl, color=False).splitlines()
    assert lines[2:4] == ["good[+0.50]", "food[-0.25]\u240dhere[+0.12]"]  # a lone CR cannot move the cursor


def test_terminal_scores_keep_to_a_few_characters_whatever_their_size():
    expl = classification("good food here", [[1e300, 123456.0, 0.001], [0.0, -2.5e6, 0.5]], predicted=0)
    lines = explanation_terminal(expl, color=False).splitlines()
    assert "good[+1.0e+300] food[+123456.00] here[+1.0e-03]" in lines
    assert "good[+0.00] food[-2.5e+06] here[+0.50]" in lines


def test_terminal_generation():
    expl = causal()
    out = explanation_terminal(expl, color=False)
    for label in expl.target_labels:
        assert repr(label) in out
    # row 3 ('big'): largest |score| first, NaN never listed
    # output columns are named out:..., apart from prompt columns of the same text
    top = next(line for line in out.splitlines() if line.strip().startswith("'big'"))
    assert top.split("\u2502")[1].split()[0] == "out:is[-35.00]"
    assert "[n/a]" not in out
    one = explanation_terminal(expl, color=False, target=1)
    assert "Paris.[-15.00]" in one and "The[+10.00]" in one and "It[target]" in one and "is[n/a]" in one
    assert "\x1b[48;2;" in explanation_terminal(expl, color=True)
    s2s = explanation_terminal(seq2seq(), color=False, target=2)
    assert "dort[target]" in s2s and "sleeps[+0.70]" in s2s


def test_terminal_generation_rows_line_up_whatever_the_probability():
    expl = causal()
    for t, p in zip(expl.targets, [0.999, 7.6e-05, float("nan"), 0.5]):
        t.probability = p
    rows = [line for line in explanation_terminal(expl, color=False).splitlines() if "\u2502" in line]
    assert len(rows) == len(expl.targets)
    assert len({row.index("\u2502") for row in rows}) == 1


def test_terminal_generation_rows_line_up_in_terminal_columns_and_cut_long_labels(monkeypatch):
    """A CJK label takes two columns per character, a combining accent none; a label past 24
    columns is cut with an ellipsis ("..." where standard output cannot write one)."""
    import unicodedata

    long = "supercalifragilisticexpialidocious"
    expl = causal(output=f" 東京 and e\u0301 {long} x")

    def column(row):  # the terminal column the rule is drawn at
        before = row[: row.index("\u2502")]
        wide = sum(unicodedata.east_asian_width(c) in "WF" for c in before)
        return len(before) + wide - sum(unicodedata.combining(c) > 0 for c in before)

    rows = [line for line in explanation_terminal(expl, color=False).splitlines() if "\u2502" in line]
    assert len(rows) == 5 and len({column(row) for row in rows}) == 1
    assert rows[3].startswith("  'supercalifragilisticex\u2026 ")
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    rows = [line for line in explanation_terminal(expl, color=False).splitlines() if line.startswith("  '")]
    assert rows[3].startswith("  'supercalifragilistic... ")
    assert len({row.index(" | ") for row in rows}) == 1  # escapes ("\\u6771") are ASCII: one column each


def test_terminal_columns_of_emoji_drawn_wide():
    from interp_text.render import _columns

    # A heart alone is one column; asked for as an emoji (U+FE0F after it) terminals draw it in two.
    assert [_columns(t) for t in ("\u2764\ufe0f", "\u2764", "\U0001f600", "\u6771\u4eac", "e\u0301")] == [2, 1, 2, 4, 1]


def test_terminal_neutralises_control_characters():
    expl = classification("evil\x1b[2Jtext ok", [[1.0, 0.5], [0.0, 0.0]])
    for color in (True, False):
        out = explanation_terminal(expl, color=color)
        assert "\x1b[2J" not in out and "\u241b[2J" in out


def test_nan_and_inf_scores_render():
    expl = classification("a b c", [[float("nan"), float("inf"), -1.0], [0.0, 0.0, 0.0]], predicted=0)
    root = dom(explanation_html(expl))
    cells = prompt_cells(root)
    assert "itx-nan" in cells[0].classes
    assert style_rgb(cells[1]) == POSITIVE_RGB and style_rgb(cells[2]) == NEGATIVE_RGB
    data = data_of(root)
    assert data["scores"][0][0] is None and math.isfinite(data["scores"][0][1])
    assert "a[n/a]" in explanation_terminal(expl, color=False)


def test_magnitude_scores_get_a_one_sided_legend(bert, wp_tokenizer):
    from interp_text import InputXGradient, Sobol, VarGrad

    text = "the food was cold"
    magnitudes = VarGrad(bert, wp_tokenizer, n_perturbations=4).explain(text)
    signed = InputXGradient(bert, wp_tokenizer).explain(text)
    page = magnitudes.to_html()
    assert "have no sign" in page and "lowers it" not in page and 'class="itx-lo"' not in page
    assert "token reduction: sum" in page
    assert "lowers it" in signed.to_html() and "have no sign" not in signed.to_html()
    assert "no sign" in magnitudes.to_terminal(color=False) and "no sign" not in signed.to_terminal(color=False)
    sobol = Sobol(bert, wp_tokenizer, n_samples=8).explain(text)  # total-order indices: shares of variance
    assert (sobol.scores >= 0).all() and "have no sign" in sobol.to_html() and "lowers it" not in sobol.to_html()


def test_all_tokens_page_shows_sep_after_the_words(bert, wp_tokenizer):
    from interp_text import Saliency

    page = Saliency(bert, wp_tokenizer, granularity="all_tokens").explain("the food was cold").to_html()
    assert page.index("[CLS]") < page.index("cold") < page.index("[SEP]")


def test_another_class_still_names_the_predicted_one():
    expl = classification("a b", [[1.0, -0.5], [0.2, 0.1]], labels=["negative", "positive"], predicted=0)
    assert data_of(dom(explanation_html(expl)))["rows"][0]["info"].endswith("predicted")
    assert data_of(dom(explanation_html(expl)))["rows"][1]["info"].endswith("predicted: negative")


def test_a_predicted_class_that_is_not_explained_is_named_by_its_label(bert, wp_tokenizer):
    from interp_text import Saliency

    expl = Saliency(bert, wp_tokenizer).explain("the food was good", targets="all")
    other = [t.label for t in expl.targets if t.index != expl.predicted][0]
    one = Saliency(bert, wp_tokenizer).explain("the food was good", targets=other)
    assert one.predicted_label == expl.predicted_label == expl.targets[expl.predicted].label
    header = explanation_terminal(one, color=False).splitlines()[1]
    assert header.endswith(f"predicted: {expl.predicted_label}")
    assert Explanation.from_dict(one.to_dict()).predicted_label == expl.predicted_label


def test_a_predicted_class_that_is_not_explained_is_named_by_its_index():
    # Saved before predicted_label was kept: the model chose class 0, whose label is not stored.
    explained = [Target("positive", 1, probability=0.25)]
    expl = Explanation("a b", ["a", "b"], [(0, 1), (2, 3)], [[1.0, -0.5]], explained, method="saliency", predicted=0)
    assert data_of(dom(explanation_html(expl)))["rows"][0]["info"] == "p = 0.250 \u00b7 predicted: class 0"
    assert dom(explanation_html(expl)).find("div", "itx-info").text() == "p = 0.250 \u00b7 predicted: class 0"
    header = explanation_terminal(expl, color=False).splitlines()[1]
    assert header == "\u25b6 class 'positive'  p = 0.250 \u00b7 predicted: class 0"


def test_seq2seq_input_is_called_input_and_one_output_needs_no_hint():
    page = explanation_html(seq2seq())
    assert ">Input<" in page and ">Prompt<" not in page and "hover or click" in page
    one = causal(output=" Paris")
    assert len(one.targets) == 1
    page = explanation_html(one)
    assert ">Prompt<" in page and "hover or click" not in page


def test_shared_scale_spans_every_row_and_text():
    a = classification("a b", [[1.0, -0.5], [0.2, 4.0]], predicted=0)  # its largest |score|: 4, in row 1
    b = classification("c d", [[0.5, 0.25], [0.0, 0.0]], predicted=0)
    own = [style_rgb(c) for c in prompt_cells(dom(explanation_html(a)))]
    assert own == [POSITIVE_RGB, score_rgb(-0.5, 1.0)]  # row 0 on its own scale
    shared = [style_rgb(c) for c in prompt_cells(dom(explanation_html(a, scale="shared")))]
    assert shared == [score_rgb(1.0, 4.0), score_rgb(-0.5, 4.0)]
    listed = dom(explanations_html([a, b], scale="shared"))
    cells = [style_rgb(c) for block in listed.find_all("div", "itx-text") for c in block.find_all("span", "itx-el")]
    assert cells == [score_rgb(v, 4.0) for v in (1.0, -0.5, 0.5, 0.25)]  # b's colours on a's scale
    assert ExplanationList([a, b]).to_terminal(color=True, scale="shared").count("|score| 4;") == 2
    with pytest.raises(InterpTextError, match='or "shared"'):
        explanation_html(a, scale="own")


# ----------------------------------------------------------------- readability
def test_whitespace_only_elements_show_a_symbol_and_keep_the_text():
    text = "Hello\n\nWorld\t  end"
    spans = [(0, 5), (5, 7), (7, 12), (12, 15), (15, 18)]  # "\n\n" and "\t  " are elements
    elements = [text[s:e] for s, e in spans]
    expl = Explanation(text, elements, spans, np.array([[0.1, 0.9, 0.2, -0.5, 0.3]]), [Target("pos", 0)], "saliency")
    root = dom(explanation_html(expl))
    assert root.find("div", "itx-text", data_side="prompt").text() == text  # the symbols are CSS content
    marked = [c for c in prompt_cells(root) if "itx-ws" in c.classes]
    assert [c.attrs["data-ws"] for c in marked] == ["\u21b5\u21b5", "\u2192"]
    assert [c.attrs["title"] for c in marked] == ["\u21b5\u21b5: +0.9", "\u2192: -0.5"]
    assert style_rgb(marked[0]) == POSITIVE_RGB  # tinted like any element
    spaces = Explanation("a   b", ["a", "   ", "b"], [(0, 1), (1, 4), (4, 5)], [[0.1, 0.2, 0.3]], [Target("p", 0)], "x")
    assert dom(explanation_html(spaces)).find("span", "itx-ws").attrs["data-ws"] == "\u2423"
    assert re.search(r"\.itx-ws::before\{content:attr\(data-ws\)", explanation_html(spaces))


def _hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    value = "".join(c * 2 for c in value) if len(value) == 3 else value
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def lum(c):
        c = [x / 255 for x in c]
        c = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _rule(style: Node, selector: str) -> str:
    """The declarations of the rule of ``style`` whose selector list is ``selector`` (``#@``: the scope id)."""
    css = re.sub(r"#itx-(list-)?[0-9a-f]{12}", "#@", style.text().replace("\n", ""))
    m = re.search(r"(?:^|\})" + re.escape(selector) + r"\{([^}]*)\}", css)
    assert m, selector
    return m.group(1)


def _colour(declarations: str, prop: str = "color") -> tuple[int, int, int]:
    return _hex_rgb(re.search(rf"(?:^|;){prop}:(#[0-9a-f]{{3,6}})", declarations).group(1))


def test_small_text_colours_reach_wcag_contrast_on_every_background():
    expl = classification("a b", [[float("nan"), 1.0], [0.5, 0.5]])
    root = dom(explanations_html([expl]))
    card, page = dom(explanation_html(expl)).find("style"), root.find("div", "itx-list").find("style")
    # A list's cards share its one stylesheet, scoped to its cards: the same rules.
    assert root.find("div", "itx-root").find_all("style") == []
    assert _rule(page, "#@ .itx-root .itx-nan") == _rule(card, "#@ .itx-nan")
    # not attributable: its text on each stripe of the hatching and on the grey under it
    nan = _rule(card, "#@ .itx-nan")
    stripes = re.findall(r"#[0-9a-f]{6}", "".join(re.findall(r"background[^:]*:[^;]*", nan)))
    assert len(stripes) == 3
    assert min(_contrast(_colour(nan), _hex_rgb(s)) for s in stripes) >= 4.5
    # the method line, on the white card
    assert _contrast(_colour(_rule(card, "#@ .itx-meta")), _colour(_rule(card, "#@"), "background")) >= 4.5
    # a list's row numbers, on the list's own background: never the host page's, which may be dark
    assert "background:" in _rule(page, "#@"), "the list has no background of its own"
    assert _contrast(_colour(_rule(page, "#@ .itx-list-idx")), _colour(_rule(page, "#@"), "background")) >= 4.5


def test_user_text_is_isolated_for_right_to_left_scripts():
    hebrew = "\u05d4\u05e1\u05e8\u05d8 \u05e0\u05d4\u05d3\u05e8."
    expl = classification(hebrew, [[0.5, -1.0], [0.1, 0.2]], labels=("\u05e9\u05dc\u05d9\u05dc\u05d9", "pos"))
    root = dom(explanation_html(expl, target=0))
    assert root.find("div", "itx-text").attrs["dir"] == "auto"
    assert root.find("b", "itx-label").attrs["dir"] == "auto"
    assert [b.find("span").attrs["dir"] for b in root.find_all("button", "itx-btn")] == ["auto", "auto"]
    # each name between isolates, so that its score stays on its right
    top = (
        "largest |score|: \u2068\u05e0\u05d4\u05d3\u05e8.\u2069 -1.00 \u00b7 \u2068\u05d4\u05e1\u05e8\u05d8\u2069 +0.50"
    )
    assert root.find("div", "itx-top").text() == top and data_of(root)["rows"][0]["top"] == top
    gen = dom(explanation_html(causal()))
    assert [b.attrs["dir"] for b in gen.find_all("div", "itx-text")] == ["auto", "auto"]
    heat = gen.find("table", "itx-heat")
    assert all(th.find("span").attrs["dir"] == "auto" for th in heat.find_all("th")[1:])


def test_a_predicted_label_with_control_characters_stays_on_the_header_line():
    explained = [Target("positive", 1, probability=0.25)]
    expl = Explanation(
        "a b", ["a", "b"], [(0, 1), (2, 3)], [[1.0, -0.5]], explained, method="saliency", predicted=0,
        predicted_label="neg\nati\x1bve",
    )  # fmt: skip
    lines = explanation_terminal(expl, color=False).splitlines()
    assert lines[1].endswith("predicted: neg\u21b5ati\u241bve")
    assert "\x1b" not in "".join(lines)


def test_a_class_named_nothing_shows_as_an_empty_string_not_an_empty_button():
    expl = classification("good", [[0.5], [0.0]], labels=("", "pos"), predicted=1)
    buttons = [b.find("span").text() for b in dom(explanation_html(expl)).find_all("button", "itx-btn")]
    assert buttons == ['""', "pos"]


def test_the_model_is_named_in_the_terminal_and_on_the_page(monkeypatch):
    monkeypatch.setattr("sys.stdout", encoded_stdout("utf-8"))
    expl = classification("good", [[0.5], [0.0]], predicted=1)
    assert "model" not in explanation_html(expl) and explanation_terminal(expl, color=False).splitlines()[0] == (
        "saliency \u00b7 classification \u00b7 word (mean) \u00b7 f = logits"
    )
    expl.model = "/home/me/runs/sst2-\x1bbert"  # a folder: its last part, escapes shown, not run
    assert explanation_terminal(expl, color=False).splitlines()[0].endswith("f = logits \u00b7 sst2-\u241bbert")
    expl.model = "org/model-<b>"
    assert "model: org/model-&lt;b&gt;" in explanation_html(expl)
    assert explanation_terminal(expl, color=False).splitlines()[0].endswith("\u00b7 org/model-<b>")


def test_scores_with_no_sign_are_written_without_a_plus():
    signed = classification("good food", [[0.52, 0.00002], [0.1, 0.2]], predicted=0)
    magnitudes = dataclasses.replace(signed, method="VarGrad")  # a variance: no sign
    assert "good[+0.52] food[+2.0e-05]" in explanation_terminal(signed, color=False)
    plain = explanation_terminal(magnitudes, color=False)
    assert "good[0.52] food[2.0e-05]" in plain and "scores have no sign" in plain
    top = "largest |score|: \u2068good\u2069 {}0.52 \u00b7 \u2068food\u2069 {}2.0e-05</div>"
    assert top.format("", "") in explanation_html(magnitudes) and top.format("+", "+") in explanation_html(signed)
    gen = causal()
    gen = dataclasses.replace(gen, method="VarGrad", scores=np.abs(gen.scores))
    rows = explanation_terminal(gen, color=False).splitlines()
    assert any("is[5.00]" in line for line in rows) and not any("[+" in line for line in rows)


def test_generation_rows_print_on_an_ascii_console(monkeypatch):
    monkeypatch.setattr("sys.stdout", encoded_stdout("ascii"))
    expl = causal(output=" Paris caf\u00e9")
    rows = explanation_terminal(expl, color=False).splitlines()
    assert any(line.startswith("  'caf\\xe9' p=0.500 |") for line in rows)
    "\n".join(rows).encode("ascii")


def test_a_writer_refuses_a_file_name_of_the_other_format(tmp_path):
    """save() writes JSON, save_html() a page: a name that says otherwise is refused, naming the other."""
    from interp_text import ExplanationList, InterpTextError

    expl = classification("good movie", [[0.5, -0.1], [0.0, 0.0]])
    cases = [
        (
            lambda p: expl.save(p),
            "e.html",
            f"save() writes JSON, but {str(tmp_path / 'e.html')!r} names another "
            f"format: use save_html({str(tmp_path / 'e.html')!r}).",
        ),
        (lambda p: ExplanationList([expl]).save(p), "all.HTM", None),
        (
            lambda p: expl.save_html(p),
            "e.json",
            f"save_html() writes a page, but {str(tmp_path / 'e.json')!r} names "
            f"another format: use save({str(tmp_path / 'e.json')!r}).",
        ),
        (lambda p: ExplanationList([expl]).save_html(p), "all.jsonl", None),
    ]
    for write, name, message in cases:
        with pytest.raises(InterpTextError) as err:
            write(tmp_path / name)
        assert message is None or str(err.value) == message
        assert not (tmp_path / name).exists()
    assert expl.save(tmp_path / "e.txt").read_text().startswith("{")  # any other name is the user's choice
    assert expl.save_html(tmp_path / "page").read_text().startswith("<!doctype html>")
