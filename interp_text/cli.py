"""The ``interp-text`` command: explain a text or a whole file, run the demo, compare methods."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import InterpTextError

DEMO_TEXTS = [
    "The food was not good and the staff were rude.",
    "I loved the pasta, and the service was quick.",
    "The room was not bad at all.",
]
DEMO_PROMPTS = ["The capital of France is", "The official language of Japan is"]


def all_methods() -> dict[str, type]:
    from .methods import GRADIENT_METHODS

    methods = dict(GRADIENT_METHODS)
    try:
        from .perturbation import PERTURBATION_METHODS

        methods.update(PERTURBATION_METHODS)
    except ImportError:
        pass
    return methods


def load_model(name: str | None, generation: bool = False):
    """A bundled model ("sentiment", "facts"), or a local folder in Hugging Face format."""
    from .bundled import NAMES, load_default

    name = name or ("facts" if generation else "sentiment")
    if name in NAMES:
        return load_default(name)
    path = Path(name)
    if not path.exists():
        raise InterpTextError(
            f"--model {name!r} is neither a bundled model ({', '.join(NAMES)}) nor a local folder; "
            "pass a folder saved with save_pretrained (models cannot be downloaded here)."
        )
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    arch = " ".join(config.architectures or [])
    if "ForSequenceClassification" in arch:
        auto = transformers.AutoModelForSequenceClassification
    elif getattr(config, "is_encoder_decoder", False):
        auto = transformers.AutoModelForSeq2SeqLM
    else:
        auto = transformers.AutoModelForCausalLM
    return auto.from_pretrained(path).eval(), transformers.AutoTokenizer.from_pretrained(path)


def make_explainer(args, model, tokenizer):
    methods = all_methods()
    key = args.method.lower().replace("_", "").replace("-", "")
    if key not in methods:
        raise InterpTextError(f"--method {args.method!r} is not known; choose one of {', '.join(sorted(methods))}.")
    cls = methods[key]
    options: dict[str, Any] = {"granularity": args.granularity, "batch_size": args.batch_size, "seed": args.seed}
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
    return cls(model, tokenizer, **options)


def parse_target(value: str | None) -> Any:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def generate_kwargs(args, explainer) -> dict:
    if explainer.settings.task == "classification" or args.max_new_tokens is None:
        return {}
    return {"max_new_tokens": args.max_new_tokens}


# --------------------------------------------------------------------------- commands
def cmd_explain(args) -> int:
    if args.input:
        return explain_file(args)
    if args.text is None:
        raise InterpTextError("give a text to explain, or --input FILE.jsonl --output FILE.jsonl.")
    model, tok = load_model(args.model, generation=args.task == "generation")
    explainer = make_explainer(args, model, tok)
    expl = explainer.explain(args.text, targets=parse_target(args.target), **generate_kwargs(args, explainer))
    print(expl.to_terminal(color=False if args.no_color else None))
    if args.html:
        print(f"page written to {expl.save_html(args.html)}")
    if args.json:
        print(f"JSON written to {expl.save(args.json)}")
    return 0


def read_jsonl_inputs(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise InterpTextError(
                f"{path}:{n + 1} is not valid JSON ({err.msg}); write one JSON object per line."
            ) from None
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or "text" not in value:
            raise InterpTextError(f'{path}:{n + 1} has no "text"; write lines like {{"text": "...", "target": 1}}.')
        value.setdefault("id", n)
        rows.append(value)
    return rows


def done_ids(path: Path) -> set:
    """Ids already in the output; a line cut off by an interruption is dropped from the file."""
    if not path.exists():
        return set()
    good, done = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the half-written last line of an interrupted run
        good.append(line)
        done.add(record["id"])
    path.write_text("".join(g + "\n" for g in good), encoding="utf-8")
    return done


def explain_file(args) -> int:
    if not args.output:
        raise InterpTextError("--input needs --output FILE.jsonl to write the results to.")
    rows = read_jsonl_inputs(Path(args.input))
    out = Path(args.output)
    done = done_ids(out)
    todo = [r for r in rows if r["id"] not in done]
    if not todo:
        print(f"nothing to do: all {len(rows)} texts are already in {out}", file=sys.stderr)
        return 0
    model, tok = load_model(args.model, generation=args.task == "generation")
    explainer = make_explainer(args, model, tok)
    kwargs = generate_kwargs(args, explainer)
    start = time.perf_counter()
    with out.open("a", encoding="utf-8") as f:
        for i in range(0, len(todo), args.texts_per_call):
            chunk = todo[i : i + args.texts_per_call]
            targets = [r.get("target", parse_target(args.target)) for r in chunk]
            results = explainer.explain([r["text"] for r in chunk], targets=targets, **kwargs)
            for r, expl in zip(chunk, results):
                f.write(json.dumps({"id": r["id"], **expl.to_dict()}, ensure_ascii=False) + "\n")
            f.flush()  # an interrupted run keeps every finished chunk
            os.fsync(f.fileno())
            progress(len(done) + i + len(chunk), len(rows), time.perf_counter() - start)
    print(file=sys.stderr)
    print(f"{len(todo)} explanations written to {out} ({len(done)} were already there)", file=sys.stderr)
    return 0


def progress(n: int, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * n / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {n}/{total} texts, {elapsed:.1f}s")
    sys.stderr.flush()


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
    from .compare import compare_default, format_table

    methods = args.methods.split(",") if args.methods else None
    rows = compare_default(n_texts=args.n_texts, methods=methods)
    print(format_table(rows))
    return 0


# --------------------------------------------------------------------------- parser
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
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser(
        "explain",
        help="explain a text (or a JSONL file of texts)",
        description="Explain one text, printed with colours in the terminal, or a whole JSONL file.",
    )
    ex.add_argument("text", nargs="?", help="the text (a prompt, for generation)")
    ex.add_argument(
        "--model",
        help="bundled model ('sentiment', 'facts') or a local model folder; default: the bundled model for --task",
    )
    ex.add_argument(
        "--task",
        choices=["classification", "generation"],
        default="classification",
        help="which bundled model to use when --model is not given (default: classification)",
    )
    ex.add_argument(
        "--method",
        default="vargrad",
        help="vargrad (default), smoothgrad, saliency, "
        "inputxgradient, integratedgradients, squaregrad, gradientshap, occlusion, ...",
    )
    ex.add_argument("--granularity", default="word", choices=["all_tokens", "token", "word", "sentence"])
    ex.add_argument(
        "--aggregation",
        choices=["mean", "max", "min", "sum", "signed_max"],
        help="how token scores pool into a word / sentence (default mean)",
    )
    ex.add_argument("--target", help="class index or name; for generation, the output text to explain")
    ex.add_argument("--inference-mode", choices=["logits", "softmax", "log_softmax"])
    ex.add_argument("--n-perturbations", type=int, help="samples (or interpolation steps for IG)")
    ex.add_argument("--batch-size", type=int, default=64)
    ex.add_argument("--max-new-tokens", type=int, help="generation: tokens to generate (default 20)")
    ex.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the model's)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--html", help="also write a standalone HTML page here")
    ex.add_argument("--json", help="also write the explanation as JSON here")
    ex.add_argument("--input", help='JSONL file, one {"text": ..., "target": ...} per line')
    ex.add_argument("--output", help="JSONL results; a rerun skips the texts already there")
    ex.add_argument("--texts-per-call", type=int, default=16, help="texts batched together (file mode)")
    ex.add_argument("--no-color", action="store_true", help="plain text, scores in brackets")
    ex.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="explain a few sentences with the bundled models and write a page")
    demo.add_argument("--html", default="interp_text_demo.html", help="where to write the page")
    demo.add_argument("--no-color", action="store_true")
    demo.set_defaults(func=cmd_demo)

    cmp_ = sub.add_parser("compare", help="compare methods on the bundled sentiment data (faithfulness, time)")
    cmp_.add_argument("--methods", help="comma-separated method names (default: all)")
    cmp_.add_argument("--n-texts", type=int, default=20)
    cmp_.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a command prints its own progress, not the weight loader's
    try:
        return args.func(args)
    except InterpTextError as err:
        print(f"interp-text: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"interp-text: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterp-text: interrupted; finished results are kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
