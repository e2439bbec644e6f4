"""Run several explainers on the same texts and score them side by side.

Each method is scored by Deletion (lower is better), Insertion (higher is better), the average
precision of its ranking against gold rationale spans when they are given (higher is better),
and the wall time of its ``explain`` call.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch

from .engine import Engine, forward_only
from .errors import InterpTextError, short
from .inputs import as_plain, normalise_texts
from .loading import resolve
from .methods import GRADIENT_METHODS, GradientMethod, check_model, explain_arguments
from .metrics import Deletion, Insertion, checked_spans, evaluate_together, rationale_average_precision
from .options import Granularity, GranularityAggregationStrategy, InferenceModes, method_key, positive_int
from .perturbation import PERTURBATION_METHODS, PerturbationMethod
from .tasks import CLASSIFICATION, SEQ2SEQ, detect_task, unwrapped

ALL_METHODS = {**GRADIENT_METHODS, **PERTURBATION_METHODS}
DEFAULT_METHODS = ("occlusion", "lime", "kernelshap", "sobol")


def method_class(method: str | type) -> type:
    """A method's class from its name (case, ``_`` and ``-`` ignored) or the class itself."""
    if isinstance(method, type) and issubclass(method, (GradientMethod, PerturbationMethod)):
        return method
    if isinstance(method, str) and method_key(method) in ALL_METHODS:
        return ALL_METHODS[method_key(method)]
    if isinstance(method, str):
        raise InterpTextError(f"method {method!r} is not known; use a class or one of {sorted(ALL_METHODS)}.")
    what = f"the class {method.__name__}" if isinstance(method, type) else repr(method)
    raise InterpTextError(
        f"method {what} is not an explanation method; use a method class, an explainer, or one of {sorted(ALL_METHODS)}."
    )


def compare(
    model,
    tokenizer: Any = None,
    texts: Any = None,
    methods: list[Any] | tuple[Any, ...] = DEFAULT_METHODS,
    targets: Any = None,
    rationales: list[list[tuple[int, int]]] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    task: str | None = None,
    replacement: str | int | None = None,
    method_options: dict[str, dict] | None = None,
    generate_kwargs: dict | None = None,
    **options: Any,
) -> list[dict]:
    """Explain the same texts with each method and score the explanations.

    Args:
        model, tokenizer: the model to explain and its tokenizer; or, as for every explainer, a
            model name or folder, or a pipeline, and no tokenizer (``compare("sentiment", texts)``).
        texts: a text (or text pair) or a list of them (prompts, for generation).
        methods: a list of names (``"occlusion"``, ``"vargrad"``, ...), classes, or explainers
            already built on this model (used as they are); or one of them. None: the four
            perturbation methods.
        targets: as for ``explain`` (the same for every method).
        rationales: per text, the ``(start, end)`` spans of its gold rationale; scored on each
            explanation's first target.
        batch_size, device, task: given to every method and to the metrics.
        replacement: how the metrics mask an element; given to the perturbation methods too, so
            they mask as they are scored (see ``perturbation.resolve_replacement``).
        method_options: per method name, options for that method only
            (``{"kernelshap": {"n_samples": 500}}``).
        generate_kwargs: generation with ``targets=None``: options for ``generate``
            (``{"max_new_tokens": 5}``). Each output is generated once, before any method is timed,
            and every method explains those same outputs.
        **options: given to every method's constructor (``granularity``, ``seed``, ...).

    Returns:
        One dict per method: ``method``, ``deletion`` (mean area, lower is better), ``insertion``
        (mean area, higher is better), ``rationale_ap`` (mean average precision, or None without
        rationales), ``seconds`` (wall time of ``explain``, after an untimed call of the same explainer on
        the first text, so that no method pays a first call's set-up) and ``n_texts``. Two explainers of one class are
        told apart as "Occlusion (1)", "Occlusion (2)".

    Example:
        >>> from interp_text.comparison import format_table
        >>> print(format_table(compare(model, tokenizer, texts, ["occlusion", "vargrad"])))  # doctest: +SKIP
    """
    if texts is None and isinstance(tokenizer, (str, dict, list, tuple)):
        texts, tokenizer = tokenizer, None  # compare("sentiment", texts): the model by name brings its tokenizer
    if texts is None:
        raise InterpTextError("compare() needs texts: compare(model, tokenizer, texts) or compare('name', texts).")
    if "target" in options:
        raise InterpTextError("compare() takes targets= (with an s), not target=, as explain() does.")
    model, tokenizer = resolve(model, tokenizer, task, device)
    check_model(model, tokenizer)  # a wrapper (DataParallel) is named before anything reads its config
    if not isinstance(texts, (str, dict, list, tuple)):
        try:
            texts = list(texts)  # a generator of texts, as before
        except TypeError:
            pass  # not iterable: refused below, as explain() refuses it
    if isinstance(texts, (list, tuple)) and not texts:
        raise InterpTextError("compare() got an empty list of texts; pass at least one.")
    # One text (a string, a pair, a conversation) is explained as one, as explain() reads it: its
    # targets may then be several classes of it, or token ids.
    single = normalise_texts(texts)[1]
    texts = [texts] if single else list(texts)
    if rationales is not None and len(rationales) != len(texts):
        raise InterpTextError(
            f"got {len(rationales)} rationales for {len(texts)} texts; pass one list of spans per text."
        )
    # Names and spans are checked before the first method runs, not after it.
    if methods is None:
        methods = DEFAULT_METHODS
    if isinstance(methods, (str, type)) or hasattr(methods, "explain"):
        methods = [methods]
    try:
        methods = list(methods)  # a list, a tuple, any iterable
    except TypeError:
        raise InterpTextError(
            f"methods={methods!r}: pass a list of method names, classes or explainers, or one of them."
        ) from None
    if not methods:
        raise InterpTextError(
            f"compare() got an empty list of methods; name at least one (from {sorted(ALL_METHODS)}), or leave "
            f"methods unset for {list(DEFAULT_METHODS)}."
        )
    classes = [method_class(m) if isinstance(m, (str, type)) else None for m in methods]
    for k, m in enumerate(methods):
        if classes[k] is not None:
            continue
        if not isinstance(m, (GradientMethod, PerturbationMethod)):
            raise InterpTextError(
                f"methods[{k}] is {short(m)} ({type(m).__name__}), not an explanation method; pass a name, a "
                "method class, or an explainer built on this model."
            )
        if unwrapped(m.model) is not unwrapped(model):  # a compiled model's explainer may keep the module it compiled
            raise InterpTextError(
                f"methods[{k}] ({type(m).__name__}) was built on another model than the one compared; build it "
                "on this model, or pass its name and let compare() build it."
            )
    if rationales is not None:
        nested = (
            "rationales takes one list of spans per text: rationales=[[{pair}], ...] "
            f"({len(texts)} text{'s' if len(texts) > 1 else ''} here)"
        )
        rationales = [checked_spans(r, f"rationales[{i}]", nested) for i, r in enumerate(rationales)]
        for i, (text, spans) in enumerate(zip(texts, rationales)):
            size = len(text) if isinstance(text, str) else None  # a pair's or chat's text is built later
            outside = [span for span in spans if size is not None and span[1] > size]
            if outside:
                raise InterpTextError(
                    f"rationales[{i}] has {outside[0]}, which ends past the end of text {i} ({size} characters: "
                    f"{short(text)}); pass (start, end) character spans into that text."
                )
    per_method = {method_key(_key_name(k)): dict(v) for k, v in (method_options or {}).items()}
    named = {cls.__name__.lower() for cls in classes if cls is not None}
    unknown = sorted(set(per_method) - set(ALL_METHODS) - named)
    if unknown:
        raise InterpTextError(f"method_options names unknown methods {unknown}; use names from {sorted(ALL_METHODS)}.")
    unused = sorted(set(per_method) - named)
    if unused:
        raise InterpTextError(
            f"method_options for {unused}, which `methods` does not name (an explainer passed already built "
            "takes its options in its own constructor); name the method, or drop its options."
        )
    kind = detect_task(model, task)
    generator = kind != CLASSIFICATION
    if generate_kwargs and (targets is not None or not generator):
        raise InterpTextError("generate_kwargs are for generating outputs: with targets= or a classifier, drop them.")
    if kind == SEQ2SEQ and "decoder_start_token_id" in (generate_kwargs or {}):
        raise InterpTextError(
            "compare() explains the generated outputs as forced targets, read from the model's own decoder start: "
            "a decoder_start_token_id in generate_kwargs would not reach them; set it in model.generation_config."
        )
    # Every explainer is built (its options checked) before anything runs, generation included.
    explainers = []
    for method, cls in zip(methods, classes):
        if cls is not None:
            kwargs = {"batch_size": batch_size, "device": device, "task": task, **options}
            if issubclass(cls, PerturbationMethod):
                kwargs["replacement"] = replacement
            kwargs.update(per_method.get(cls.__name__.lower(), {}))
            try:
                explainers.append(cls(model, tokenizer, **kwargs))
            except InterpTextError as err:
                shared = sorted(k for k in options if f"'{k}'" in str(err))  # the refused ones compare() gave all
                if f"{cls.__name__} got unknown option(s)" not in str(err) or not shared:
                    raise
                generation = explain_arguments(shared)
                if generation and not generator:
                    raise InterpTextError(
                        f"compare() got {generation}, generate() options, but this model is a classifier, which "
                        "generates nothing: drop them."
                    ) from None
                if generation:  # max_new_tokens=, do_sample=: generate()'s, as explain() takes them
                    raise InterpTextError(
                        f"compare() got {generation} as options of the methods; generate()'s options go in "
                        f"generate_kwargs={{{', '.join(repr(k) + ': ...' for k in generation)}}}."
                    ) from None
                raise InterpTextError(
                    f"{err} compare() gives its keyword options ({shared}) to every method: give a method's "
                    "own options to it alone, method_options={'<method name>': {...}}."
                ) from None
        else:
            explainers.append(method)
    targets = as_plain(targets)  # a tensor or array of targets: a list, as explain() reads it
    given_cuts: list = [None] * len(texts)  # the cuts of prompts generated from (truncation=True)
    if targets is None and generator:
        items = _generated(
            model,
            tokenizer,
            texts,
            device,
            task,
            options.get("seed", 0),
            generate_kwargs or {},
            batch_size,
            truncation=options.get("truncation", False),
        )
        targets = [it.output_ids for it in items]
        # A prompt cut to generate from is the prompt explained: cut again with the output forced, it
        # could keep more words, which the output was not generated from.
        texts = [it.text if it.cut else text for it, text in zip(items, texts)]
        given_cuts = [it.cut for it in items]
        if single:  # one text's output: its token ids
            targets = targets[0]
    metric_options = {"batch_size": batch_size, "device": device, "task": task, "replacement": replacement}
    if "progress" in options:  # the scoring of every method's explanations takes a bar too
        metric_options["progress"] = options["progress"]
    deletion = Deletion(model, tokenizer, **metric_options)
    insertion = Insertion(model, tokenizer, **metric_options)
    names = [type(e).__name__ for e in explainers]
    names = [n if names.count(n) == 1 else f"{n} ({names[: k + 1].count(n)})" for k, n in enumerate(names)]
    rows, explained = [], []
    for name, explainer in zip(names, explainers):
        try:
            _warm_up(explainer, texts, targets, single)
            start = time.perf_counter()
            explanations = explainer.explain(texts[0] if single else texts, targets)
        except InterpTextError as err:
            raise InterpTextError(f"{name}, in the comparison: {err}") from err
        seconds = time.perf_counter() - start
        explanations = [explanations] if single else list(explanations)
        explained.extend(explanations)
        ap = None
        if rationales is not None:
            aps = []
            for i, (e, r) in enumerate(zip(explanations, rationales)):
                cut = given_cuts[i] or (e.options or {}).get("truncated")
                r = r if not cut else _spans_kept(r, cut)
                if not r:  # truncation=True dropped every deciding word of this text: nothing to rank
                    continue
                try:
                    aps.append(rationale_average_precision(e, r, absolute=True))
                except InterpTextError as err:
                    raise InterpTextError(f"rationales[{i}], for text {i} ({short(e.text)}): {err}") from err
            ap = float(np.mean(aps)) if aps else None
        rows.append(
            {
                "method": name,
                "deletion": math.nan,  # below: every method's explanations are scored together
                "insertion": math.nan,
                "rationale_ap": ap,
                "seconds": seconds,
                "n_texts": len(texts),
            }
        )
    # One scoring of every method's curves: two methods' explanations of a text share the rows that
    # rank its elements alike (nothing masked, everything masked, and more), as Deletion and Insertion do.
    try:
        deleted, inserted = evaluate_together([deletion, insertion], explained)
    except InterpTextError:
        for k, name in enumerate(names):  # again method by method, for an error that names its method and text
            try:
                evaluate_together([deletion, insertion], explained[k * len(texts) : (k + 1) * len(texts)])
            except InterpTextError as err:
                raise InterpTextError(f"{name}'s explanations, scored in the comparison: {err}") from err
        raise
    for k, row in enumerate(rows):
        part = slice(k * len(texts), (k + 1) * len(texts))
        row["deletion"], row["insertion"] = float(np.nanmean(deleted[part])), float(np.nanmean(inserted[part]))
    return rows


def _spans_kept(spans: list, cut: dict) -> list:
    """``spans`` of a text given as they fall in the part ``truncation=True`` kept (``cut``: its
    ``{"start", "end"}``), clipped to it and counted from its start; those outside it are dropped."""
    start, end = cut["start"], cut["end"]
    return [(max(a, start) - start, min(b, end) - start) for a, b in spans if a < end and b > start]


def _warm_up(explainer, texts: list, targets: Any, single: bool = False) -> None:
    """The explainer's call on the first text alone, untimed: a first call pays set-up (kernels picked,
    the causal prefix checked, a device copy) that the timed call then does not."""
    if isinstance(targets, (list, tuple)) and not single:
        if len(targets) != len(texts):
            return  # the timed call names the mistake
        targets = [targets[0]]
    settings = explainer.settings
    explainer.settings = dataclasses.replace(settings, progress=False)  # one bar per method: the timed call's
    try:
        explainer.explain(texts[0] if single else texts[:1], targets)
    finally:
        explainer.settings = settings


def _generated(
    model,
    tokenizer,
    texts: list,
    device,
    task,
    seed: int,
    generate_kwargs: dict,
    batch_size: int = 64,
    truncation: bool = False,
) -> list:
    """Each text's output as the explainers generate it (greedy unless told otherwise), on the items
    the engine prepares: prompts of one length together, ``batch_size`` at a time (a sampled one
    alone, seeded); with ``truncation``, each prompt cut as an explainer cuts it to generate (the
    item's text and cut)."""
    settings = forward_only(
        "generate",
        model,
        batch_size=batch_size,
        granularity=Granularity.ALL_TOKENS,
        aggregation=GranularityAggregationStrategy.SUM,
        inference_mode=InferenceModes.LOGITS,
        device=device,
        seed=seed,
        task=task,
        truncation=truncation,
    )
    engine = Engine(model, tokenizer, settings)
    engine.needs_embeds = False  # only the outputs are wanted
    with engine.guarded() as device:
        return engine._prepare(texts, None, False, device, generate_kwargs)


# IntegratedGradients' steps on the bundled models: at the default 10 a facts call warned of a 16% completeness
# gap on some answers; at 50 the gap is about 0.03% of f(x) - f(b).
BUNDLED_IG_STEPS = 50


def compare_default(
    n_texts: int = 20, methods: list[Any] | None = None, seed: int = 0, data: str = "sentiment", **options: Any
) -> list[dict]:
    """``compare`` on a bundled model and its test split, with the rationales the data keeps.

    ``data="sentiment"`` (default): the sentiment classifier on generated reviews; the target of each
    review is its gold label, its rationale the sentiment word and its negation. ``data="facts"``:
    the facts GPT-2 on its prompts ("The capital of France is"), each with its answer forced as the
    target (" Paris"); the rationale is the prompt's deciding words ("capital", "France"), ranked by
    the row of the answer's first word. ``methods`` defaults to every method, gradient and
    perturbation. IntegratedGradients takes ``BUNDLED_IG_STEPS`` (50) steps here unless
    ``method_options`` says otherwise: at its default 10 these models' paths leave a gap it warns of.

    Example:
        >>> from interp_text.comparison import compare_default, format_table
        >>> print(format_table(compare_default(n_texts=10, data="facts")))  # doctest: +SKIP
    """
    from .bundled import load_default
    from .data import facts_examples, sentiment_examples

    if data not in ("sentiment", "facts"):
        raise InterpTextError(f"data={data!r} is not a bundled data set; pass 'sentiment' or 'facts'.")
    positive_int(n_texts, "n_texts")
    model, tokenizer = load_default(data)
    if data == "sentiment":
        examples = sentiment_examples(n_texts, seed=seed, split="test")
        texts, targets = [ex["text"] for ex in examples], [ex["label"] for ex in examples]
    else:
        examples = facts_examples(n_texts, seed=seed, split="test")
        texts, targets = [ex["prompt"] for ex in examples], [ex["answer"] for ex in examples]
    distinct = len(set(texts))
    if distinct < len(texts):  # the split cycles: the table would weigh some texts twice, and time them twice
        raise InterpTextError(
            f"n_texts={n_texts}: the {data} test split has {distinct} distinct texts; pass n_texts={distinct} or fewer."
        )
    chosen = list(ALL_METHODS) if methods is None else _named(methods)
    if not isinstance(chosen, (str, type, list, tuple)):
        try:
            chosen = list(chosen)  # a set or a generator of names, read once
        except TypeError:
            pass  # an explainer already built: compare names what it cannot take
    per_method = {method_key(_key_name(k)): dict(v) for k, v in (options.pop("method_options", None) or {}).items()}
    listed = chosen if isinstance(chosen, list) else [chosen]
    if any(_is_integrated_gradients(m) for m in listed) and "n_interpolations" not in options:
        # The default 10 steps leave the facts model's paths 16% incomplete; a count the call gives stands.
        per_method.setdefault("integratedgradients", {}).setdefault("n_interpolations", BUNDLED_IG_STEPS)
    return compare(
        model,
        tokenizer,
        texts,
        methods=chosen,
        targets=targets,
        rationales=[ex["rationale"] for ex in examples],
        method_options=per_method or None,
        **{"seed": seed, **options},
    )


def _key_name(key: Any) -> Any:
    """A ``method_options`` key: a method's name, or its class (named as the class is)."""
    return key.__name__ if isinstance(key, type) else key


def _is_integrated_gradients(method: Any) -> bool:
    from .methods import IntegratedGradients

    if isinstance(method, str):
        return method_key(method) == "integratedgradients"
    return isinstance(method, type) and issubclass(method, IntegratedGradients)


def _named(methods: Any) -> Any:
    """``compare_default``'s methods: an empty list is refused here, where unset means every method."""
    if isinstance(methods, (list, tuple)) and not methods:
        raise InterpTextError(
            f"compare_default() got an empty list of methods; name at least one (from {sorted(ALL_METHODS)}), or "
            "leave methods unset for every one."
        )
    return methods


def format_table(rows: list[dict]) -> str:
    """The rows of ``compare`` as an aligned text table."""
    from .render import UNICODE_GLYPHS, _glyphs

    with_ap = any(r.get("rationale_ap") is not None for r in rows)
    # Arrows where standard output can write them (as the terminal rendering's decorations).
    lower, higher = ("↓", "↑") if _glyphs() is UNICODE_GLYPHS else ("(lower better)", "(higher better)")
    header = ["method", f"deletion {lower}", f"insertion {higher}"]
    header += ([f"rationale AP {higher}"] if with_ap else []) + ["seconds"]

    def num(x: Any, digits: int) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    lines = [header]
    for r in rows:
        cells = [r["method"], num(r["deletion"], 3), num(r["insertion"], 3)]
        if with_ap:
            cells.append(num(r.get("rationale_ap"), 3))
        lines.append(cells + [num(r["seconds"], 2)])
    widths = [max(len(line[j]) for line in lines) for j in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
