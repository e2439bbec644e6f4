"""The ``interp-text`` command: explain a text or a whole file, run the demo, compare methods."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import difflib
import json
import math
import os
import re
import select
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InterpTextError, short
from .options import method_key

DEMO_TEXTS = [
    "The food was not good and the staff were rude.",
    "I loved the pasta, and the service was quick.",
    "The room was not bad at all.",
]
DEMO_PROMPTS = ["The capital of France is", "The official language of Japan is"]


def all_methods() -> dict[str, type]:
    from .methods import GRADIENT_METHODS
    from .perturbation import PERTURBATION_METHODS

    return {**GRADIENT_METHODS, **PERTURBATION_METHODS}


# The keys of methods.GRADIENT_METHODS and perturbation.PERTURBATION_METHODS (a test holds them
# equal): spelt out, so that --help answers without importing torch.
METHOD_NAMES = {
    "gradient": (
        "saliency",
        "inputxgradient",
        "smoothgrad",
        "vargrad",
        "squaregrad",
        "integratedgradients",
        "gradientshap",
    ),
    "perturbation": ("occlusion", "lime", "kernelshap", "sobol"),
}


def method_help() -> str:
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in METHOD_NAMES.items()) + " (default: vargrad)"


def positive_int(value: str) -> int:
    """An argparse type for counts, so that 0 is refused with the option's name rather than deep inside."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...), got {value!r}")
    return n


def load_model(name: str | None, task: str | None = None):
    """A bundled model ("sentiment", "facts"), a folder in Hugging Face format, or a Hub id; ``task``
    (--task) gives a checkpoint saved without a head one."""
    from .loading import load

    return load(name or ("facts" if task == "generation" else "sentiment"), task)  # a bundled one ignores task


def make_explainer(args, model, tokenizer):
    methods = all_methods()
    key = method_key(args.method)
    if key not in methods:
        raise InterpTextError(f"--method {args.method!r} is not known; choose one of {', '.join(sorted(methods))}.")
    cls = methods[key]
    options: dict[str, Any] = {"granularity": args.granularity, "batch_size": args.batch_size, "seed": args.seed}
    if args.truncation:
        options["truncation"] = True
    if args.mask_outputs:
        from .engine import mask_outputs_refused
        from .methods import shared_options
        from .tasks import CAUSAL_LM, detect_task

        task = detect_task(model, None)
        if task != CAUSAL_LM:  # said before the method's kind, which would not be the reason
            said = mask_outputs_refused(model, task)
            raise InterpTextError(
                said.replace("mask_outputs=True", "--mask-outputs").replace("drop it", "drop --mask-outputs")
            )
        if "mask_outputs" not in shared_options(cls):
            raise InterpTextError(
                f"--mask-outputs is for the perturbation methods (occlusion, lime, kernelshap, sobol); {args.method}'s "
                "rows score the earlier output words already."
            )
        options["mask_outputs"] = True
    if args.device:
        options["device"] = args.device
    if args.inference_mode:
        options["inference_mode"] = args.inference_mode
    if args.aggregation:
        options["granularity_aggregation_strategy"] = args.aggregation
    if args.n_perturbations is not None:
        own = cls._option_names(cls)
        name = next((n for n in ("n_perturbations", "n_interpolations") if n in own), None)
        if name is None:
            raise InterpTextError(f"--n-perturbations does not apply to {args.method} (it takes no samples).")
        options[name] = args.n_perturbations
    explainer = cls(model, tokenizer, **options)
    check_task(args, explainer)
    return explainer


def check_task(args, explainer) -> None:
    """--task must say what the model does: a classifier cannot generate, nor a language model classify."""
    generates = explainer.settings.task != "classification"
    if args.task is None or (args.task == "generation") == generates:
        return
    does = "generates text" if generates else "is a classifier"
    fits = "generation" if generates else "classification"
    raise InterpTextError(
        f"--task {args.task} does not fit --model {args.model!r}: it {does} ({type(explainer.model).__name__}); "
        f"pass --task {fits}, or leave --task out to use what the model does."
    )


def parse_target(value: str | None, task: str) -> Any:
    """--target as explain() takes it: for a classifier "1" is a class index, for generation the text to force."""
    if value is None or task != "classification":
        return value
    return int(value) if value.removeprefix("-").isdecimal() else value


def generate_kwargs(args, explainer) -> dict:
    if args.max_new_tokens is None:
        return {}
    if explainer.settings.task == "classification":
        raise InterpTextError("--max-new-tokens is for generation; this model is a classifier.")
    return {"max_new_tokens": args.max_new_tokens}


# --------------------------------------------------------------------------- commands
def check_device(device: str | None) -> None:
    """Refuse a CUDA device torch does not have before any model is loaded."""
    import torch

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise InterpTextError(f"--device {device}: no CUDA device is available to torch here; use --device cpu.")


def cmd_explain(args) -> int:
    check_device(args.device)
    if args.input:
        if args.text is not None:
            raise InterpTextError(
                f"got a text ({args.text!r}) and --input {args.input}; pass one or the other, not both."
            )
        if args.text_pair is not None:
            raise InterpTextError(
                '--text-pair goes with one text; in --input FILE.jsonl, write "text_pair" in the record.'
            )
        for flag, value in (("--html", args.html), ("--json", args.json)):
            if value:
                raise InterpTextError(f"{flag} writes one explanation; with --input, results go to --output.")
        return explain_file(args)
    if args.text is None:
        raise InterpTextError("give a text to explain, or --input FILE.jsonl --output FILE.jsonl.")
    if args.output:
        raise InterpTextError("--output is for --input FILE.jsonl; for one text use --json or --html.")
    if args.texts_per_call is not None:
        raise InterpTextError("--texts-per-call is for --input FILE.jsonl; one text is explained in one call.")
    from .explanation import names_other_format

    for flag, value, writer, other in (
        ("--json", args.json, "save", "--html"),
        ("--html", args.html, "save_html", "--json"),
    ):
        if value and names_other_format(value, writer):  # refused before the explaining, not after it
            raise InterpTextError(f"{flag} {value} names another format than {flag} writes: use {other} {value}.")
    model, tok = load_model(args.model, args.task)
    explainer = make_explainer(args, model, tok)
    target = parse_target(args.target, explainer.settings.task)
    text = args.text if args.text_pair is None else {"text": args.text, "text_pair": args.text_pair}
    if args.target is not None and args.max_new_tokens is not None and explainer.settings.task != "classification":
        raise InterpTextError(
            "--max-new-tokens is for a generated output, and --target forces the output, so nothing is generated: "
            "drop one of them."
        )
    try:
        with renamed_warnings(the_text):
            expl = explainer.explain(text, targets=target, **generate_kwargs(args, explainer))
    except InterpTextError as err:
        raise InterpTextError(the_text(str(err))) from None
    # Files first: a console that cannot print the text must not cost them.
    written = []
    if args.html:
        written.append(f"page written to {expl.save_html(args.html)}")
    if args.json:
        written.append(f"JSON written to {expl.save(args.json)}")
    shown = expl.to_terminal(color=False if args.no_color else None)
    try:
        print(shown)
    except UnicodeEncodeError as err:
        raise InterpTextError(
            f"this console's encoding ({err.encoding}) cannot show {shown[err.start : err.end]!r} of the text; set "
            "PYTHONIOENCODING=utf-8 (or a UTF-8 console)" + (", the files were written" if written else "") + "."
        ) from None
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:  # the user's strings: the text, the output, the labels
        "".join([expl.text, expl.output_text or "", *(t.label for t in expl.targets)]).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        print(
            f"interp-text: this console's encoding ({encoding}) cannot show every character of the text or output: "
            "they are written as escapes (\\U0001f600); set PYTHONIOENCODING=utf-8 (or use a UTF-8 console) to see them.",
            file=sys.stderr,
        )
    for line in written:
        print(line)
    return 0


TEXTS_PER_CALL = 64  # --texts-per-call's default (see the README for why)
# The keys of an input record; any other is the user's own (a label, a source), carried along unread.
RECORD_KEYS = frozenset({"text", "text_pair", "target", "id"})


def read_jsonl_inputs(path: Path) -> list[tuple[int, dict]]:
    """``(line number, record)`` for each text of the file; a record without an "id" gets its line's
    index, counted from 0 (line 1: id 0). A ``.txt`` file holds one plain text per line."""
    rows, line_of = [], {}
    plain = path.suffix.lower() == ".txt"
    for n, raw in enumerate(path.read_bytes().split(b"\n")):  # "\n"-ended lines only (a U+2028 may sit in a string)
        where = f"{path}:{n + 1}"
        bom = len(codecs.BOM_UTF8) if n == 0 and raw.startswith(codecs.BOM_UTF8) else 0  # a BOM is skipped
        try:
            line = raw[bom:].decode("utf-8")
        except UnicodeDecodeError as err:
            at = bom + err.start
            raise InterpTextError(
                f"{where} is not UTF-8 (byte {raw[at]:#04x} at column {at + 1}); save the file as UTF-8."
            ) from None
        if not line.strip():
            continue
        try:
            value = line.removesuffix("\r") if plain else json.loads(line)
        except json.JSONDecodeError as err:
            raise InterpTextError(
                f"{where} is not valid JSON ({err.msg}); write one JSON object per line, or one plain text per line "
                "in a file named .txt."
            ) from None
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or "text" not in value:
            raise InterpTextError(
                f'{where} has no "text"; write lines like {{"text": "...", "target": 1}} (with "text_pair": "..." '
                "for a classifier that reads two texts)."
            )
        unknown = sorted(set(value) - RECORD_KEYS)
        # Near-misses of the keys that change what is explained ("targets"); "idx", "uid" are common ids.
        near = [(k, difflib.get_close_matches(k, ("text", "text_pair", "target"), 1, 0.8)) for k in unknown]
        near = [(k, m[0]) for k, m in near if m]
        if near:  # other keys are the user's own (a label, a source): carried along unread
            raise InterpTextError(f'{where} has the key "{near[0][0]}"; did you mean "{near[0][1]}"?')
        key = value.setdefault("id", n)
        if isinstance(key, (list, dict)):
            raise InterpTextError(f'{where} has an "id" that is a {type(key).__name__}; use a string or a number.')
        if isinstance(key, str) and any("\ud800" <= c <= "\udfff" for c in key):  # "\udc80": no UTF-8 for it
            raise InterpTextError(
                f'{where} has an "id" holding a lone surrogate ({key!r}), which is not valid Unicode and cannot be '
                "written; use another id."
            )
        if isinstance(key, float) and not math.isfinite(key):  # Python's json reads NaN; strict JSON has none
            raise InterpTextError(
                f'{where} has the "id" {id_key(key)}, which JSON has no number for; use a string or a number.'
            )
        if id_key(key) in line_of:
            raise InterpTextError(
                f"{where} repeats the id {key!r} of line {line_of[id_key(key)]}; give each text its own id "
                "(a rerun skips the ids already in --output)."
            )
        line_of[id_key(key)] = n + 1
        rows.append((n + 1, value))
    return rows


def id_key(value: Any) -> str:
    """An id as JSON writes it: 1, 1.0, true and "1" are four ids (as dict keys, Python takes the first
    three for one)."""
    return json.dumps(value)


RESULT_START = b'{"id": '  # how every line explain_file writes begins: json.dumps keeps "id" first
RESULT_KEYS = ("id", "elements", "scores")


def not_a_result(record: Any) -> str | None:
    """Why ``record`` (a parsed line, None if not JSON) is not a line explain_file wrote; None if it is."""
    if record is None:
        return "not JSON"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [k for k in RESULT_KEYS if k not in record]
    if missing:
        return f'no "{missing[0]}"'
    if isinstance(record["id"], (list, dict)):
        return f'its "id" is a {type(record["id"]).__name__}'
    return None


def half_written(line: bytes) -> bool:
    """Whether ``line`` can be a result line cut off anywhere: ``{"id": <id>, "text": ...``."""
    text = line.decode("utf-8", errors="ignore")  # the cut may fall inside a character
    start = RESULT_START.decode()
    if not text.startswith(start):
        return start.startswith(text)  # cut inside '{"id": '
    try:
        _, end = json.JSONDecoder().raw_decode(text, len(start))
    except ValueError:
        return True  # cut inside the id
    rest, follows = text[end:], ', "text": '
    # A number cut after its point or exponent ("2." of 2.5) reads as the number before the cut.
    return follows.startswith(rest) or rest.startswith(follows) or re.fullmatch(r"[.eE][-+]?\d*", rest) is not None


def done_results(path: Path) -> dict:
    """The results already in the output, by id, which must hold only lines this command wrote.

    The one line ever removed is a last line cut off by an interruption (it has no newline after it);
    any other line that is not a result stops the run, so a file the tool did not write is never lost.
    Each result keeps what ``check_resumable`` compares, not its scores.
    """
    if not path.is_file():  # nothing written yet, or a pipe or terminal (reading one would wait forever)
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")  # the last piece is b"" when the file ends with a newline
    done = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            record = None
        last = n == len(lines)
        if record is None and last and half_written(line):
            with path.open("r+b") as f:  # the half-written last line of an interrupted run
                f.truncate(len(data) - len(line))
            break
        why = not_a_result(record)
        if why is not None:
            raise InterpTextError(
                f"{path}:{n} is not a result written by interp-text ({why}); the file is left as it is: "
                f"choose another --output, or delete {path} to start over."
            )
        key = id_key(record["id"])
        if key in done:  # two runs wrote the same id: not a file this command keeps
            raise InterpTextError(
                f"{path}:{n} repeats the id {record['id']!r} of line {done[key]['line']} (two runs wrote to it?); the "
                f"file is left as it is: delete one of the two lines, choose another --output, or delete {path} to "
                "start over."
            )
        done[key] = {k: v for k, v in record.items() if k not in ("elements", "spans", "scores")} | {"line": n}
        if last:  # cut off just before its newline: add it, or the next result would join this line
            with path.open("ab") as f:
                f.write(b"\n")
    return done


# What decides a result's numbers besides its text and target: a resumed run must ask for the same.
SETTINGS = ("method", "task", "granularity", "aggregation", "inference_mode", "token_reduction")
# Options an explanation records about its own text, not about the run (see engine.text_kind, and
# KernelShap.text_options).
PER_TEXT_OPTIONS = (
    "chat",
    "text_pair_start",
    "decoder_start_token_id",
    "generation",
    "forced",
    "coalitions",
    "truncated",
)


def written_input(result: dict) -> Any:
    """What a result explains, as an input record gives it: a text, or a pair as {"text", "text_pair"}."""
    text, start = result.get("text"), (result.get("options") or {}).get("text_pair_start")
    if isinstance(text, str) and isinstance(start, int):
        return {"text": text[: start - 1], "text_pair": text[start:]}
    return text


def asked_input(record: dict, tokenizer) -> Any:
    """What an input record asks to explain, as ``written_input`` shows a result; None if it is not
    understood (explaining it will say why)."""
    from .inputs import apply_chat_template

    text = record["text"]
    if "text_pair" in record:
        return {"text": text, "text_pair": record["text_pair"]}
    if isinstance(text, list):  # chat messages: the result holds the chat template's output
        try:
            return apply_chat_template(tokenizer, text)
        except (InterpTextError, TypeError, ValueError):
            return None
    return text


def run_settings(explainer) -> dict:
    """The settings this run writes in each result (JSON-normalised, as they are read back)."""
    s = explainer.settings
    values = [s.name, s.task, s.granularity.value, s.aggregation.value, s.inference_mode.value, s.token_reduction]
    return {**dict(zip(SETTINGS, values)), "options": json.loads(json.dumps(s.options or {}))}


def settings_difference(result: dict, ours: dict) -> str | None:
    """How ``result`` was made otherwise than this run would make it ("granularity 'word', this run
    'sentence'"), or None."""
    for name in SETTINGS:
        if result.get(name) != ours[name]:
            return f"{name} {short(result.get(name))}, this run {short(ours[name])}"
    theirs = {k: v for k, v in (result.get("options") or {}).items() if k not in PER_TEXT_OPTIONS}
    for name in sorted(set(theirs) | set(ours["options"])):
        if name == "mask_outputs" and bool(theirs.get(name)) != bool(ours["options"].get(name)):
            return "--mask-outputs, this run without it" if theirs.get(name) else "no --mask-outputs, this run with it"
        if theirs.get(name) != ours["options"].get(name):
            return f"{name} {short(theirs.get(name))}, this run {short(ours['options'].get(name))}"
    return None


def target_difference(result: dict, target: Any, explainer) -> str | None:
    """How the target ``result`` explains differs from ``target``, as this run would resolve it, or None.

    A generated output is not generated again to compare: only a forced one (a target) is checked.
    """
    from . import inputs as inp

    model, tok = explainer.model, explainer.tokenizer
    if explainer.settings.task == "classification":
        (classes,) = inp.model_class_targets(model, target, 1, True)
        if classes is None:  # the predicted class, which the result recorded
            classes = [result.get("predicted")]
        written = [(t.get("index"), t.get("label")) for t in result.get("targets") or []]
        asked = [(c, str((model.config.id2label or {}).get(c, c))) for c in classes]
        if written != asked:
            return f"class(es) {[label for _, label in written]} there, this run {[label for _, label in asked]}"
        return None
    (forced,) = inp.generation_targets(target, 1, True)
    if forced is None:
        if (result.get("options") or {}).get("forced"):
            return f"the forced output {short(result.get('output_text'))} there (a target), this run generates one"
        return None
    (ids,) = inp.target_token_ids(tok, [forced])
    if isinstance(forced, str):  # as explain() forces a text: after a forced first token
        ids = inp.forced_first_token(model, explainer.settings.task, ids)
    if result.get("output_ids") != ids:
        return f"the output {short(result.get('output_text'))} there, this run forces {short(tok.decode(ids))}"
    return None


def generation_difference(result: dict, forced: Any, kwargs: dict) -> str | None:
    """How the generation options of ``result``'s output differ from this run's (``kwargs``), or None.
    A forced output (``forced``, the line's target) was not generated: nothing to compare."""
    from .engine import GENERATION_DEFAULTS, json_options

    # Results written before the generation options were recorded (no "model" either): nothing to compare.
    if result.get("task") == "classification" or forced is not None or "model" not in result:
        return None

    def said(options: dict) -> dict:  # an option not given is its default: --max-new-tokens 20 is no change
        if "generation_config" in options or "max_length" in options:
            return options
        return {**GENERATION_DEFAULTS, **options}

    given = [(result.get("options") or {}).get("generation") or {}, json_options(kwargs)]
    theirs, ours = (said(options) for options in given)

    def value(options: dict, given: dict, name: str) -> str:
        if name not in options:
            return "not given"
        return short(options[name]) + ("" if name in given else " (not given: the default)")

    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            flag = "--" + name.replace("_", "-")
            return f"{flag} {value(theirs, given[0], name)}, this run {value(ours, given[1], name)}"
    return None


def check_resumable(
    done: dict, rows: list[tuple[int, dict]], explainer, target: Any, kwargs: dict, path: Path, out: Path
) -> None:
    """Refuse to append to ``out`` unless every result in it is what this run would write for the
    input with the same id: same text, same target, same settings, same model, same generation
    options. Ids alone would pair a result with another text once lines are added above it, and mix
    settings in one file."""
    from .engine import model_name

    ours = run_settings(explainer)
    model = model_name(explainer.model)
    fix = f"use another --output, or delete {out} to start over"
    line_of = {key: n for n, record in rows for key in [id_key(record["id"])]}
    # Every result, its id in the input or not: one file holds one run's settings and model.
    for key, result in done.items():
        where = (
            f"id {result['id']!r} ({path}:{line_of[key]})"
            if key in line_of
            else f"id {result['id']!r} ({out}:{result['line']})"
        )
        why = settings_difference(result, ours)
        if why is not None:
            raise InterpTextError(
                f"{out} holds results made with other settings: {where} was explained with {why}. "
                f"Rerun with the same settings to resume, or {fix}."
            )
        # Results written before the model was recorded have no "model": nothing to compare.
        if "model" in result and result["model"] != model:
            raise InterpTextError(
                f"{out} holds results of another model: {where} was explained with the model {short(result['model'])}, "
                f"this run loads {short(model)}. Rerun with --model {result['model']} to resume, or {fix}."
            )
    for n, record in rows:
        key = id_key(record["id"])
        if key not in done:
            continue
        result, where = done[key], f"id {record['id']!r} ({path}:{n})"
        asked, written = asked_input(record, explainer.tokenizer), written_input(result)
        cut = (result.get("options") or {}).get("truncated")
        if cut and not explainer.settings.truncation:
            raise InterpTextError(
                f"{out} holds results made with --truncation: {where} was cut to fit the model. Rerun with "
                f"--truncation to resume, or {fix}."
            )
        if asked is not None and asked != written and not _cut_from(written, asked, cut):
            a, w = asked, written
            if isinstance(a, str) and isinstance(w, str):  # quote where they part, not two equal beginnings
                at = next((k for k, (x, y) in enumerate(zip(a, w)) if x != y), min(len(a), len(w)))
                cut = max(0, at - 30)
                a, w = (("..." if cut else "") + t[cut:] for t in (a, w))
            raise InterpTextError(
                f"{out} does not hold the results of {path}: for {where} it explains the text {short(w)}, "
                f"but the input is {short(a)}. Results are matched to inputs by id (a line's number when it "
                f'has no "id"), so adding or removing lines shifts them; {fix} (give each line an "id" to keep '
                "its result when lines move)."
            )
        try:  # the target first: a forced output that this run would generate has no generation options
            why = target_difference(result, record.get("target", target), explainer)
        except InterpTextError as err:
            raise InterpTextError(f"{path}:{n} (id {record['id']!r}): {err}") from None
        if why is not None:
            raise InterpTextError(
                f"{out} holds results for other targets: {where} explains {why}. "
                f"Rerun with the same --target (and input targets) to resume, or {fix}."
            )
        why = generation_difference(result, record.get("target", target), kwargs)
        if why is not None:
            raise InterpTextError(
                f"{out} holds results made with other settings: {where} was explained with {why}. "
                f"Rerun with the same settings to resume, or {fix}."
            )


def _cut_from(written: Any, asked: Any, cut: Any) -> bool:
    """Whether ``written`` is the part of ``asked`` that ``truncation=True`` kept, as the result's
    ``options["truncated"]`` records it (the characters kept, of how many)."""
    if not (isinstance(cut, dict) and isinstance(asked, str) and cut.get("of") == len(asked)):
        return False
    start, end = cut.get("start"), cut.get("end")
    return isinstance(start, int) and isinstance(end, int) and asked[start:end] == written


def record_input(record: dict) -> Any:
    """What ``explain()`` takes for a record: its text, or its text and "text_pair" (a pair a classifier
    reads together: premise and hypothesis)."""
    return {"text": record["text"], "text_pair": record["text_pair"]} if "text_pair" in record else record["text"]


def check_records(explainer, rows: list[tuple[int, dict]], target: Any, path: Path) -> None:
    """Each line's text and target as ``explain()`` checks them, before any line runs: a bad line near
    the end of a long file is named at once, not after the work before it."""
    from . import inputs as inp

    for n, record in rows:
        t = record.get("target", target)
        try:  # as one entry of a list, the way explain_records passes it
            inp.normalise_texts([record_input(record)])
            if explainer.settings.task == "classification":
                inp.model_class_targets(explainer.model, [t], 1, False)
            else:
                inp.generation_targets([t], 1, False)
        except InterpTextError as err:
            message = the_text(str(err))
            if "target" in record:  # the line's own "target", not --target
                message = message.replace("leave targets=None", 'leave out "target"').replace("targets=", '"target": ')
            raise InterpTextError(f"{path}:{n} (id {record['id']!r}): {message}") from None


def explain_records(
    explainer, records: list[tuple[int, dict]], target: Any, kwargs: dict, path: Path
) -> Iterator[tuple[dict, Any]]:
    """``(record, explanation)`` for ``records``, explained in one call; if that fails, one record at a
    time, so that the error names its line and the records before it still come out."""
    texts = [record_input(r) for _, r in records]
    targets = [r.get("target", target) for _, r in records]
    if all(t is not None for t in targets):  # nothing to generate in this call: no generation options
        kwargs = {}
    lines = {i: f"{path}:{n} (id {r['id']!r})" for i, (n, r) in enumerate(records)}

    def by_line(message: str) -> str:
        # The first "text N" of a message is the library's index (a later one is in the user's quoted text).
        return re.sub(r"\b(?:text|prompt) (\d+)\b", lambda k: lines.get(int(k[1]), k[0]), message, count=1)

    try:
        with renamed_warnings(by_line):
            results = list(explainer.explain(texts, targets=targets, **kwargs))
    except InterpTextError as err:
        if len(records) > 1:
            for one in records:
                yield from explain_records(explainer, [one], target, kwargs, path)
            return
        # Explained alone, the record is "text 0" / "prompt 0" of its call: the line says which it is.
        raise InterpTextError(f"{lines[0]}: {the_text(str(err))}") from None
    yield from zip((r for _, r in records), results)


def the_text(message: str) -> str:
    """A message about the one text of a call ("text 0", "prompt 0") as the command line says it. Only
    the first mention is the library's: a later one is in the user's text, quoted."""
    return re.sub(r"\b(text|prompt) 0\b", r"the \1", message, count=1)


@contextlib.contextmanager
def renamed_warnings(rename: Callable[[str], str]) -> Iterator[None]:
    """The warnings of the block, shown when it ends with ``rename`` applied to their text (which
    names texts by their index in the library's call). A block that raises shows none: its error
    says what matters, and a file run retries its lines one by one, warning again. Python's
    warning filters still choose which are caught (-W ignore, PYTHONWARNINGS, DeprecationWarning
    hidden by default; -W error raises)."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for w in caught:
        warnings.showwarning(rename(str(w.message)), w.category, w.filename, w.lineno)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as this command's own line on standard error, not Python's two (file, line, source)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"interp-text: warning{kind}: {as_flags(str(message))}", file=sys.stderr)


def explain_file(args) -> int:
    if not args.output:
        raise InterpTextError("--input needs --output FILE.jsonl to write the results to.")
    path, out = file_paths(args.input, args.output)
    from .explanation import names_other_format

    if names_other_format(out, "save"):
        raise InterpTextError(
            f"--output {args.output} names a page, but --output writes JSON lines: name it .jsonl, then make a page "
            "of it in Python (ExplanationList.load(path).save_html('page.html'))."
        )
    rows = read_jsonl_inputs(path)
    done = done_results(out)
    size = out.stat().st_size if out.is_file() else 0  # what it held, to see if another run wrote since
    # The model is loaded even when every id is done: only this run's settings can say whether
    # the results there are the ones asked for.
    model, tok = load_model(args.model, args.task)
    explainer = make_explainer(args, model, tok)
    target = parse_target(args.target, explainer.settings.task)
    kwargs = generate_kwargs(args, explainer)
    if kwargs and rows and all(r.get("target", target) is not None for _, r in rows):
        raise InterpTextError(
            f"--max-new-tokens is for generated outputs, but every line of {path} forces its output (a target), "
            "so nothing is generated; drop --max-new-tokens."
        )
    check_resumable(done, rows, explainer, target, kwargs, path, out)
    check_records(explainer, rows, target, path)
    todo = [(n, r) for n, r in rows if id_key(r["id"]) not in done]
    if not rows:
        print(f"nothing to do: {path} holds no text", file=sys.stderr)
        return 0
    if not todo:
        print(f"nothing to do: all {len(rows)} texts are already in {out}", file=sys.stderr)
        return 0
    n_done = len(rows) - len(todo)
    bar = ProgressBar(len(rows))
    regular = not out.exists() or out.is_file()  # a pipe or terminal takes no fsync
    out.parent.mkdir(parents=True, exist_ok=True)
    written, per_call = n_done, args.texts_per_call or TEXTS_PER_CALL
    with out.open("a", encoding="utf-8") as f:
        if regular and not locked(f):
            raise InterpTextError(
                f"{out} is being written by another interp-text run; wait for it to end (then rerun this command for "
                "what is left), or choose another --output."
            )
        now = done_results(out) if regular and out.stat().st_size != size else done
        if now.keys() != done.keys():  # a run that ended since this one read the file
            check_resumable(now, rows, explainer, target, kwargs, path, out)
            todo = [(n, r) for n, r in rows if id_key(r["id"]) not in now]
            written = n_done = len(rows) - len(todo)
        for i in range(0, len(todo), per_call):
            # A chunk is written as its results come: a line that fails keeps the lines before it.
            for r, expl in explain_records(explainer, todo[i : i + per_call], target, kwargs, path):
                f.write(json.dumps({"id": r["id"], **expl.to_dict()}, ensure_ascii=False) + "\n")
                f.flush()  # an interrupted run keeps every finished result
                written += 1
            if regular:
                os.fsync(f.fileno())
            bar.update(written)
    bar.close()
    print(f"{len(todo)} explanations written to {out} ({n_done} were already there)", file=sys.stderr)
    return 0


def file_paths(input_: str, output: str) -> tuple[Path, Path]:
    """--input and --output as paths, refused where they cannot be what a file run needs."""
    if input_ == "-" or output == "-":
        flag, std = ("--input", "/dev/stdin") if input_ == "-" else ("--output", "/dev/stdout")
        raise InterpTextError(
            f"{flag} -: give a file path ({flag} {std} reads or writes the terminal or a pipe, where there is one)."
        )
    path, out = Path(input_), Path(output)
    if path.is_dir():
        raise InterpTextError(f"--input {input_} is a folder; give the JSON-lines file to read.")
    if out.is_dir() or output.endswith(("/", os.sep)):
        raise InterpTextError(
            f"--output {output} is a folder; give the file to write, such as {out / 'results.jsonl'}."
        )
    if path.exists() and out.exists() and path.samefile(out):
        raise InterpTextError(f"--output {output} is the --input file; give another file to write the results to.")
    folder = next(p for p in out.absolute().parents if p.exists())  # the one it will be made in, if missing
    if not folder.is_dir():
        raise InterpTextError(f"--output {output}: {folder} is a file, not a folder; give another path.")
    if not os.access(out if out.exists() else folder, os.W_OK):
        raise InterpTextError(
            f"--output {output}: {'it' if out.exists() else folder} is not writable; give another file."
        )
    return path, out


def locked(f) -> bool:
    """Take an exclusive lock on the open output ``f`` for as long as it is open; False if another
    run holds it. Where there are no such locks (Windows, some network file systems): True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a stand-in without isatty, or a closed stream
        return False


class ProgressBar:
    """Texts done out of ``total``, on standard error.

    On a terminal, a bar redrawn in place with ``\\r``. Anywhere else (a log file, a CI job) a
    ``\\r`` does not go back, so every redraw would stay: a plain line each tenth of the way instead.
    """

    WIDTH = 30

    def __init__(self, total: int):
        self.total, self.start, self.tenths_shown, self.drawn = total, time.perf_counter(), 0, False
        self.tty = _stderr_is_tty()

    def update(self, n: int) -> None:
        elapsed = time.perf_counter() - self.start
        if self.tty:
            filled = int(self.WIDTH * n / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {n}/{self.total} texts, {elapsed:.1f}s")
            self.drawn = True
        else:
            tenths = 10 * n // self.total
            if tenths <= self.tenths_shown:
                return
            self.tenths_shown = tenths
            sys.stderr.write(f"{n}/{self.total} texts, {elapsed:.1f}s\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.drawn:  # end the bar's line, so the summary starts on its own
            sys.stderr.write("\n")


def cmd_demo(args) -> int:
    from .bundled import load_default
    from .methods import Saliency, VarGrad

    model, tok = load_default("sentiment")
    classified = VarGrad(model, tok, n_perturbations=20, seed=0).explain(DEMO_TEXTS)
    lm, lm_tok = load_default("facts")
    generated = Saliency(lm, lm_tok, granularity="word").explain(DEMO_PROMPTS, max_new_tokens=4)
    color = False if args.no_color else None
    print("Sentiment classifier (bundled), VarGrad, word scores:\n")
    for expl in classified:
        print(expl.to_terminal(color=color) + "\n")
    print("Facts language model (bundled), Saliency, output words over the prompt:\n")
    for expl in generated:
        print(expl.to_terminal(color=color) + "\n")
    from .render import save_html

    path = save_html(list(classified) + list(generated), args.html)
    print(f"page written to {path.resolve()}")
    return 0


def cmd_compare(args) -> int:
    from .comparison import compare_default, format_table

    methods = None  # every method
    if args.methods is not None:
        methods, known = [name.strip() for name in args.methods.split(",") if name.strip()], all_methods()
        unknown = [name for name in methods if method_key(name) not in known]
        if not methods or unknown:
            said = f"names the unknown method {unknown[0]!r}" if unknown else "names no method"
            raise InterpTextError(
                f"--methods {args.methods!r} {said}; pass comma-separated names from {sorted(known)}, "
                "such as 'occlusion,lime'."
            )
    # On a terminal, each method's bar and the metrics' (a log would keep every redraw).
    if args.model is None and args.input is None:
        if args.truncation:
            raise InterpTextError("--truncation is for your texts (--model and --input); bundled data fits its model.")
        data = args.data or "sentiment"
        rows = compare_default(n_texts=args.n_texts, methods=methods, data=data, progress=_stderr_is_tty())
    else:
        rows = _compare_own(args, methods)
    print(format_table(rows))
    print(
        "\nseconds: one call per method, after an untimed one, as this machine's load allowed: a ranking by "
        "time needs a quiet machine (bench/bench_perturbation.py times methods over several rounds)."
    )
    return 0


def _compare_own(args, methods: list[str] | None) -> list[dict]:
    """``compare --model M --input FILE``: the user's model on the user's texts (the first --n-texts
    of them), each record's "target" if it has one; no rationales, so no rationale AP."""
    from .comparison import ALL_METHODS, compare

    if args.model is None or args.input is None:
        given, missing = ("--model", "--input FILE") if args.input is None else ("--input", "--model NAME_OR_FOLDER")
        raise InterpTextError(f"compare {given} needs {missing} too (without either, it runs on bundled data).")
    if args.data is not None:
        raise InterpTextError("--data picks bundled data; with --model and --input, drop it.")
    rows = read_jsonl_inputs(Path(args.input))[: args.n_texts]
    if not rows:
        raise InterpTextError(f"{args.input} holds no text to compare on.")
    model, tok = load_model(args.model, args.task)
    texts = [asked_input(record, tok) if "text_pair" in record else record["text"] for _, record in rows]
    targets = [record.get("target") for _, record in rows]
    return compare(
        model,
        tok,
        texts,
        list(ALL_METHODS) if methods is None else methods,  # every method, as on bundled data
        targets=None if all(t is None for t in targets) else targets,
        progress=_stderr_is_tty(),
        **({"truncation": True} if args.truncation else {}),
    )


# --------------------------------------------------------------------------- parser


class _Once(argparse.Action):
    """An option given at most once: a second ``--target`` would silently replace the first."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest, None)
        if given is not None:
            parser.error(
                f"{option_string} was given twice ({given!r}, {values!r}); one per run (a classifier's every "
                f"class: {option_string} all)"
            )
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp-text",
        description="Explain what drives a Hugging Face text model's output, word by word.",
        epilog="Examples:\n"
        '  interp-text explain "The food was not good."\n'
        '  interp-text explain "The capital of France is" --task generation --method saliency\n'
        "  interp-text explain --input texts.jsonl --output results.jsonl\n"
        "  interp-text demo\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser(
        "explain",
        help="explain a text (or a JSONL file of texts)",
        description="Explain one text, printed with colours in the terminal, or a whole JSONL file.",
    )
    ex.add_argument("text", nargs="?", help="the text (a prompt, for generation)")
    ex.add_argument(
        "--text-pair",
        metavar="TEXT",
        help="a second text the classifier reads with the first (an NLI hypothesis, a cross-encoder's passage)",
    )
    ex.add_argument(
        "--model",
        help="bundled model ('sentiment', 'facts'), a local model folder or a Hugging Face Hub name; default: the "
        "bundled model for --task",
    )
    ex.add_argument(
        "--task",
        type=str.lower,
        choices=["classification", "generation"],
        help="what the model does; without --model, picks the bundled one (default: what --model does, "
        "else classification)",
    )
    ex.add_argument("--method", default="vargrad", help=method_help())
    ex.add_argument(
        "--granularity",
        type=str.lower,
        default="word",
        choices=["all_tokens", "token", "word", "sentence"],
        help="what one score is for (default: word)",
    )
    ex.add_argument(
        "--aggregation",
        type=str.lower,
        choices=["mean", "max", "min", "sum", "signed_max"],
        help="how token scores pool into a word / sentence (default: mean for gradient methods, sum for "
        "perturbation methods)",
    )
    ex.add_argument(
        "--target",
        action=_Once,
        help="classification: a class index (0, 1, ...) or name, or 'all'; "
        "generation: the output text to explain, as is: ' Paris' after 'The capital of France is' (GPT-2's "
        "tokenizer writes the space into the word)",
    )
    ex.add_argument("--inference-mode", type=str.lower, choices=["logits", "softmax", "log_softmax"])
    ex.add_argument("--n-perturbations", type=positive_int, help="samples (or interpolation steps for IG)")
    ex.add_argument("--batch-size", type=positive_int, default=64, help="rows per forward pass (default 64)")
    ex.add_argument("--max-new-tokens", type=positive_int, help="generation: tokens to generate (default 20)")
    ex.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the model's)")
    ex.add_argument("--seed", type=int, default=0, help="seeds noise and masks (default 0)")
    ex.add_argument("--html", help="also write a standalone HTML page here (missing folders are made)")
    ex.add_argument("--json", help="also write the explanation as JSON here (missing folders are made)")
    ex.add_argument(
        "--input", help='a JSONL file, one {"text": ..., "target": ...} per line; or a .txt file, one text per line'
    )
    ex.add_argument(
        "--output", help="JSONL results; a rerun with the same inputs and settings skips the texts already there"
    )
    ex.add_argument(
        "--texts-per-call",
        type=positive_int,
        help="texts explained (and written) together in file mode: more packs rows of one length into fewer "
        "forwards, fewer lose less to an interruption (default 64)",
    )
    ex.add_argument("--truncation", action="store_true", help=TRUNCATION_HELP)
    ex.add_argument(
        "--mask-outputs",
        action="store_true",
        help="generation with a perturbation method: mask the earlier output words too, so each output row scores "
        "them as well as the prompt's",
    )
    ex.add_argument("--no-color", action="store_true", help="plain text, scores in brackets")
    ex.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="explain a few sentences with the bundled models and write a page")
    demo.add_argument(
        "--html", default="interp_text_demo.html", help="where to write the page (default: interp_text_demo.html)"
    )
    demo.add_argument("--no-color", action="store_true")
    demo.set_defaults(func=cmd_demo)

    cmp_ = sub.add_parser(
        "compare", help="compare methods on bundled data, or on your model and texts (faithfulness, rationales, time)"
    )
    cmp_.add_argument("--methods", help="comma-separated method names (default: all)")
    cmp_.add_argument(
        "--data",
        choices=["sentiment", "facts"],
        help="the bundled model and the test split it is compared on: sentiment reviews (their gold labels), or "
        "facts prompts (their answers forced) (default sentiment)",
    )
    cmp_.add_argument(
        "--model", help="your model instead (with --input): a folder in Hugging Face format, a Hub id or a bundled name"
    )
    cmp_.add_argument(
        "--input",
        help='your texts: FILE.txt (one per line) or FILE.jsonl ({"text": ..., "target": ...} per line)',
    )
    cmp_.add_argument(
        "--task", type=str.lower, choices=["classification", "generation"], help="with --model: what the model does"
    )
    cmp_.add_argument("--n-texts", type=positive_int, default=20, help="texts to explain, from the start (default 20)")
    cmp_.add_argument("--truncation", action="store_true", help="with --input: " + TRUNCATION_HELP)
    cmp_.set_defaults(func=cmd_compare)
    parser.commands = {"explain": ex, "demo": demo, "compare": cmp_}  # see parse_command_line
    return parser


TRUNCATION_HELP = "a text longer than the model takes is cut to what fits (a prompt keeps its end) instead of refused"

# Options the library's messages name as Python arguments, and their flags here.
_FLAGS = {
    "n_perturbations": "--n-perturbations",
    "n_samples": "--n-perturbations",
    "batch_size": "--batch-size",
    "max_new_tokens": "--max-new-tokens",
    "inference_mode": "--inference-mode",
    "targets": "--target",
    "granularity": "--granularity",
    "device": "--device",
    "seed": "--seed",
    "n_texts": "--n-texts",
}
_END = r"(?=[\s,;)]|[.:](?:\s|$)|$)"  # an option ends where a word would: not inside a path or a value
_NAMES = "|".join(_FLAGS)
_UNDERSCORED = "|".join(name for name in _FLAGS if "_" in name)  # bare, still Python's spelling
_PYTHON_OPTION = re.compile(
    r"(?<![^\s(])"  # it starts a word (not "runs/seed=1", not a quoted "'seed=3'")
    rf"(?:({_NAMES})=('[^']*'|\"[^\"]*\"|[\w.:-]+?){_END}"  # name=value
    rf"|({_NAMES})(?=\s*>=?\s*\d)"  # name >= 10
    rf"|({_UNDERSCORED}){_END})"
)


def as_flags(message: str) -> str:
    """A library message in the words of this command line: ``n_perturbations=3`` is
    ``--n-perturbations 3``, ``targets=None`` no ``--target``. Paths and quoted values are left as
    they are."""
    if "targets=" in message:  # --target: a string, never token ids (a line's "target" can be)
        message = message.replace(" (with the space before it) or its token ids.", " (with the space before it).")
    message = (
        message.replace("leave targets=None", "leave out --target")
        .replace("leave device unset", "leave out --device")
        .replace("task='classification', 'causal_lm' or 'seq2seq'", "--task classification or --task generation")
        .replace("build the explainer with truncation=True", "pass --truncation")
    )

    def flag(m: re.Match) -> str:
        name, value = m.group(1) or m.group(3) or m.group(4), m.group(2)
        return _FLAGS[name] + ("" if value is None else " " + value.strip("'\""))

    return _PYTHON_OPTION.sub(flag, message)


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone (poll reports an error on it). Where
    poll is missing (Windows), any broken pipe is taken to be it."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def parse_command_line(argv: list[str] | None) -> argparse.Namespace:
    """The parsed arguments. An argument the command does not take is refused by the command's own
    parser (its usage, not the top level's), with the option it most likely meant."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands[args.command]
        known = [o for action in command._actions for o in action.option_strings]
        meant = [m for x in extra if x.startswith("-") for m in difflib.get_close_matches(x.split("=")[0], known, 1)]
        hint = f" (did you mean {meant[0]}?)" if meant else ""
        command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = parse_command_line(argv)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a command prints its own progress, not the weight loader's
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return run_command(args)
    except BaseException as err:
        # A Ctrl-C while torch or transformers load (the first seconds): some of their imports turn
        # it into another error (a RuntimeError from a class being built, a ModuleNotFoundError).
        if not interrupted(err):
            raise
        if argv is None:  # the command itself (not a caller's main([...])): it exits next
            ignore_interrupts()
        return stopped(args)


def interrupted(err: BaseException) -> bool:
    """Whether ``err`` is a KeyboardInterrupt, or an error raised while handling one."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def ignore_interrupts() -> None:
    """A second Ctrl-C while Python shuts down (torch's exit hooks) would print a traceback."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def stopped(args) -> int:
    """The one line a Ctrl-C prints."""
    # Only a file run (--input ... --output ...) keeps its finished results and resumes.
    resumable = getattr(args, "input", None) and getattr(args, "output", None)
    kept = "; finished results are kept, rerun to resume" if resumable else ""
    print(f"\ninterp-text: interrupted{kept}.", file=sys.stderr)
    return 130


def run_command(args) -> int:
    """``args``' command; its errors as one line each, with the exit status a shell expects (a Ctrl-C:
    ``main``)."""
    try:
        return args.func(args)
    except BrokenPipeError as err:
        if not _stdout_closed():  # another pipe (an --output FIFO): an error like any other
            print(f"interp-text: error: {err}", file=sys.stderr)
            return 2
        # `interp-text ... | head`: the reader has what it wanted. Python would write to the closed
        # pipe once more as it exits, and complain: point stdout elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command stopped by SIGPIPE
    except (OSError, ValueError) as err:  # InterpTextError is a ValueError
        print(f"interp-text: error: {as_flags(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
