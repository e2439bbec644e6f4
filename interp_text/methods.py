"""The public explainers: each is a perturbation plus a statistic, handed to the shared engine.

Notation (see the README): e are the input embeddings (positions × hidden), f the target score
under the inference mode, δ_p ~ N(0, σ²) with σ = ``noise_std``, b a baseline.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from typing import Any

import torch

from .engine import Engine, Settings, checked_baseline
from .errors import InterpTextError, user_stacklevel
from .explanation import Explanation
from .inputs import special_token_ids, tokenize
from .loading import resolve
from .model_guard import explaining
from .options import (
    TOKEN_REDUCTIONS,
    Granularity,
    GranularityAggregationStrategy,
    InferenceModes,
    Remade,
    as_int,
    non_negative_float,
    plain,
    positive_int,
    seed_int,
)
from .tasks import (
    CLASSIFICATION,
    INPUT_SCALES,
    SEQ2SEQ,
    check_accepts_embeddings,
    decoder_start_id,
    detect_task,
    input_scale_candidates,
    resolve_input_scale,
    send,
)

# Other libraries' names (captum's, inseq's, interpreto's) for options here: an unknown option's hint,
# the first of ours the explainer has.
PEER_NAMES = {
    "n_steps": ("n_interpolations",),
    "steps": ("n_interpolations",),
    "stdevs": ("noise_std",),
    "nt_samples": ("n_perturbations",),
    "n_samples": ("n_perturbations",),
    "n_perturbations": ("n_samples", "n_interpolations", "steps"),  # interpreto's IG and metrics too
    "internal_batch_size": ("batch_size",),
    "aggregation": ("granularity_aggregation_strategy",),
    "abs": ("token_reduction",),
    "baselines": ("baseline",),
    "multiply_by_inputs": ("input_x_gradient",),
    "sobol_indices_order": ("order",),
    "distance_function": ("distance",),
}

# What an interpreto option with no counterpart of the same kind here is, said in the error.
PEER_NOTES = {
    ("Saliency", "input_x_gradient"): (
        "interpreto's Saliency(input_x_gradient=True), its default, is InputXGradient(model, tokenizer, "
        "token_reduction='abs_mean') here, and input_x_gradient=False is Saliency(token_reduction='abs_mean'); "
        "this Saliency is the gradient's L2 norm"
    ),
    ("IntegratedGradients", "input_x_gradient"): (
        "This IntegratedGradients is (e - b) times the path's mean gradient, whose scores sum to f(x) - f(b); "
        "interpreto's input_x_gradient has no counterpart"
    ),
    ("Lime", "perturb_probability"): (
        "Lime here draws how many elements to mask uniformly from 1 to n, then which; there is no per-element "
        "probability to set"
    ),
}


def peer_name(unknown: str, names) -> str | None:
    """Our name for another library's option ``unknown``, among ``names`` (the explainer's), if any."""
    return next((n for n in PEER_NAMES.get(unknown, ()) if n in names), None)


# IntegratedGradients warns when a target's completeness gap is more than this share of f(x) − f(baseline).
LARGE_GAP = 0.1

# A tokenizer with fewer tokens than this share of the model's embedding rows is taken for another model's.
SMALLER_TOKENIZER = 0.8


def check_model(model, tokenizer) -> None:
    """The checks every explainer makes of what it is given, before touching anything."""
    if not isinstance(model, torch.nn.Module):
        raise InterpTextError(f"model must be a torch / Hugging Face model, got {type(model).__name__}.")
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
        owner = getattr(tokenizer, "__self__", None)  # a bound method: tokenizer.encode
        hint = (
            f" (the tokenizer's {getattr(tokenizer, '__name__', 'method')}: pass the tokenizer itself)"
            if owner is not None and hasattr(owner, "convert_ids_to_tokens")
            else ""
        )
        raise InterpTextError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}{hint}.")
    check_accepts_embeddings(model)
    rows = getattr(getattr(model.get_input_embeddings(), "weight", None), "shape", (None,))[0]
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    if isinstance(rows, int) and isinstance(size, int) and size > rows and _text_ids_past(tokenizer, rows, size):
        # Another model's tokenizer: its ids that happen to be below `rows` read the wrong embeddings, silently.
        # (Special tokens added without resizing, a pad token for fine-tuning, never come from text.)
        warnings.warn(
            f"the tokenizer has {size} tokens but {type(model).__name__}'s input embeddings have {rows} rows: is it "
            "this model's tokenizer? Texts with a token id of "
            f"{rows} or more are refused, and the others read whatever rows those ids name. A tokenizer with added "
            "tokens needs model.resize_token_embeddings(len(tokenizer)).",
            stacklevel=user_stacklevel(),
        )
    elif isinstance(rows, int) and isinstance(size, int) and size < SMALLER_TOKENIZER * rows and rows - size >= 128:
        # Models round their vocabulary up (to a multiple of 64 or 128: Qwen 2, GPT-J, Phi) by a few
        # percent at most, and a small one (characters, amino acids) by fewer than 128 rows; a
        # tokenizer that names a fraction of the rows beyond that is another model's.
        warnings.warn(
            f"the tokenizer has {size} tokens but {type(model).__name__}'s input embeddings have {rows} rows: is it "
            "this model's tokenizer? Another model's tokenizer reads its ids as the wrong words, and every score "
            "with them. Load the tokenizer the model was trained with (AutoTokenizer.from_pretrained on the "
            "model's own name or folder).",
            stacklevel=user_stacklevel(),
        )


def _text_ids_past(tokenizer, rows: int, size: int) -> bool:
    """Whether an id from ``rows`` to ``size`` can come from text (is not a special token)."""
    try:
        special = special_token_ids(tokenizer)
    except (AttributeError, TypeError):
        return True
    return any(i not in special for i in range(rows, size))


def check_options(
    name: str, given: dict, allowed: tuple[str, ...], shared: tuple[str, ...] = (), note: str = ""
) -> None:
    """Refuse options ``name`` does not take, naming its own (``allowed``), those it shares with its
    kind (``shared``), and the one a misspelt option most likely meant."""
    unknown = sorted(set(given) - set(allowed) - set(shared))
    if unknown:
        own = f"its own options are {sorted(allowed)}" if allowed else "it has no options of its own"
        besides = f" (besides {', '.join(shared)})" if shared else ""
        names = {n.lower(): n for n in (*allowed, *shared)}  # `Seed=` means seed=
        close = [
            peer_name(u, names.values())
            or next(iter(names[m] for m in difflib.get_close_matches(u.lower(), names, n=1, cutoff=0.8)), None)
            for u in unknown
        ]
        close = [c for c in close if c]
        meant = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        peers = "".join(f". {PEER_NOTES[name, u]}" for u in unknown if (name, u) in PEER_NOTES)
        raise InterpTextError(f"{name} got unknown option(s) {unknown}{meant}; {own}{besides}{note}{peers}.")


def explain_arguments(names: Any) -> list[str]:
    """Those of ``names`` that ``explain()`` takes, not a constructor: targets and ``generate()``'s options."""
    from transformers import GenerationConfig

    call = {"targets", "target", "generation_config", "stop_strings", "streamer", "logits_processor"}
    return sorted(n for n in names if n in call or n in vars(GenerationConfig()))


def check_explainer_options(
    name: str, given: dict, allowed: tuple[str, ...], shared: tuple[str, ...], model: Any, task: str | None
) -> None:
    """``check_options`` for an explainer's constructor, whose message sends ``explain()``'s arguments
    there (``generate()``'s only for a model that generates)."""
    misplaced = explain_arguments(set(given) - set(allowed) - set(shared))
    targets = [n for n in misplaced if n in ("targets", "target")]
    generation = [n for n in misplaced if n not in targets]
    notes = []
    if targets:
        notes.append("The call takes targets: explainer.explain(text, targets=...)")
    if generation:
        try:
            classifier = detect_task(model, task) == CLASSIFICATION
        except InterpTextError:  # the settings' own check names what is wrong with the task
            classifier = False
        notes.append(
            f"This model is a classifier, which generates nothing: drop {', '.join(generation)}"
            if classifier
            else f"The call takes generate()'s options: explainer.explain(prompt, {generation[0]}=...)"
        )
    check_options(name, given, allowed, shared, "".join(f". {n}" for n in notes))


def shared_options(cls: type) -> tuple[str, ...]:
    """The options every explainer of ``cls``'s kind takes: its constructor's keyword-only ones."""
    params = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def check_explain_options(explainer: Any, generate_kwargs: dict) -> None:
    """Refuse an explainer's own option given to ``explain()`` (where it would reach ``generate()``)."""
    built = set(inspect.signature(type(explainer).__init__).parameters) | set(explainer._option_names())
    misplaced = sorted(set(generate_kwargs) & (built - {"self", "model", "tokenizer", "method_options"}))
    if misplaced:
        name, key = type(explainer).__name__, misplaced[0]
        raise InterpTextError(
            f"{key}= is an option of {name} itself, not of explain(): pass it when you build the explainer, "
            f"{name}(model, tokenizer, {key}=...)."
        )


class GradientMethod(Remade):
    """Shared constructor and ``explain`` of the gradient explainers.

    Args:
        model: a Hugging Face model (classifier, causal LM or encoder-decoder) that accepts
            ``inputs_embeds``. It leaves every call exactly as it came.
        tokenizer: its fast tokenizer (character offsets are needed for granularity). ``model``
            may instead be a bundled model's name, a folder or Hub name (model and tokenizer are
            loaded, on ``device``), or a transformers pipeline; ``tokenizer`` is then optional.
        batch_size: perturbed rows per forward pass.
        granularity: ``Granularity.ALL_TOKENS``, ``TOKEN``, ``WORD`` (default) or ``SENTENCE``.
        granularity_aggregation_strategy: how token scores pool into an element: ``MEAN``
            (default), ``MAX``, ``MIN``, ``SUM`` or ``SIGNED_MAX``.
        device: where to compute (default: the model's device; the model is moved back after).
        inference_mode: ``InferenceModes.LOGITS`` (default), ``SOFTMAX`` or ``LOG_SOFTMAX`` of the
            target class / token.
        token_reduction: how the hidden dimension becomes one score per token: ``"sum"`` (signed),
            ``"l2"`` or ``"abs_mean"``; default per method.
        task: ``"classification"``, ``"causal_lm"`` or ``"seq2seq"``; detected from the model if None.
        seed: seeds the noise (same seed, same numbers, whatever the batch size or other texts).
        targets_per_backward: targets (classes, output tokens) whose gradients one backward pass
            computes. 1 loops one backward per target over the retained graph; more uses a vmapped
            backward (``is_grads_batched``), with gradient memory proportional to it. None
            (default): 1 on a CPU, where the loop measured faster, and 8 on a CUDA device, where
            the vmapped backward measured about twice as fast (H100, 40 output tokens of a
            6-layer GPT-2). A vmapped backward that runs out of GPU memory falls back to the loop.
        progress: a bar on stderr while the rows run (``VarGrad: [####....] 120/204 rows, 3.2s``).
        truncation: a text longer than the model takes is cut to what fits, between words, rather
            than refused (default False): a classifier's or encoder-decoder's text keeps its start
            (its end where the tokenizer's ``truncation_side`` is "left"), a causal LM's prompt
            its end, with room for the output. ``explanation.text`` is the part explained. Plain
            strings only: a pair or a conversation over the limit is still refused.
    """

    seeded = False  # whether ``seed`` changes the result (it is then kept in Explanation.options)
    name = "gradient"
    statistic = "mean"
    default_reduction = "sum"
    uses_baseline = False
    # Whether the one sample is the unperturbed input itself (Saliency, InputXGradient): a classifier's
    # prediction and f(x) are then read from it, not from a second row of the same input.
    sample_is_input = False

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        batch_size: int = 64,
        granularity: Granularity | str = Granularity.WORD,
        granularity_aggregation_strategy: GranularityAggregationStrategy | str = GranularityAggregationStrategy.MEAN,
        device: str | torch.device | None = None,
        inference_mode: InferenceModes | str = InferenceModes.LOGITS,
        token_reduction: str | None = None,
        task: str | None = None,
        seed: int = 0,
        targets_per_backward: int | None = None,
        progress: bool = False,
        truncation: bool = False,
        **method_options: Any,
    ):
        self._made_with(locals(), GradientMethod)
        model, tokenizer = resolve(model, tokenizer, task, device)
        check_model(model, tokenizer)
        if getattr(getattr(model, "config", None), "model_type", None) == "reformer":
            raise InterpTextError(
                f"{type(model).__name__}'s reversible layers compute their backward in train mode only, which would "
                "make every gradient random (dropout): explain it with a perturbation method (Occlusion, Lime, "
                "KernelShap, Sobol), which needs no gradient."
            )
        # A torch.compile'd model's graph may free what its backward needs after one backward, and a
        # gradient method takes one per target: the module it compiled runs instead (same weights).
        inner = getattr(model, "_orig_mod", None)
        self.model, self.tokenizer = (inner if isinstance(inner, torch.nn.Module) else model), tokenizer
        check_explainer_options(
            type(self).__name__, method_options, self._option_names(), shared_options(GradientMethod), model, task
        )
        self._set_options(**method_options)
        reduction = self.default_reduction if token_reduction is None else token_reduction
        if isinstance(reduction, str):
            reduction = reduction.strip().lower()  # as the enum options: any case
        if reduction not in TOKEN_REDUCTIONS:
            raise InterpTextError(f"token_reduction={reduction!r} is not valid; use one of {TOKEN_REDUCTIONS}.")
        self.settings = Settings.checked(
            type(self).__name__,
            model,
            batch_size=batch_size,
            granularity=granularity,
            aggregation=granularity_aggregation_strategy,
            inference_mode=inference_mode,
            device=device,
            seed=seed,
            task=task,
            progress=progress,
            truncation=truncation,
            statistic=self.statistic,
            n_samples=self.n_samples,
            sample=self.sample,
            token_reduction=reduction,
            uses_baseline=self.uses_baseline,
            sample_is_input=self.sample_is_input,
            targets_per_backward=(
                None if targets_per_backward is None else positive_int(targets_per_backward, "targets_per_backward")
            ),
            baseline=checked_baseline(self.baseline, model, tokenizer) if self.uses_baseline else None,
            options={**self._options(), **({"seed": seed_int(seed)} if self.seeded else {})},
        )
        self._remember()

    # Subclasses override these three.
    def _option_names(self) -> tuple[str, ...]:
        return ()

    def _set_options(self) -> None:
        self.n_samples = 1

    def sample(self, e: torch.Tensor, b: torch.Tensor | None, gen: torch.Generator, p: int):
        """The p-th perturbed input and the factor its gradient is multiplied by (or None)."""
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        # A tensor (a baseline) is kept as its shape: JSON holds it, and it still tells runs apart.
        return {
            k: f"tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else plain(v)
            for k, v in ((k, getattr(self, k)) for k in self._option_names())
        }

    def explain(
        self, model_inputs: Any, targets: Any = None, **generate_kwargs: Any
    ) -> Explanation | list[Explanation]:
        """Explain one text (returns an ``Explanation``) or a list of texts (returns a list).

        Args:
            model_inputs: a string, a list of strings, chat messages ``[{"role", "content"}]``, a text
                pair for a classifier (``{"text": ..., "text_pair": ...}``; a tuple is two texts), or a list of these.
            targets: classification: None (predicted class), a class index or name, ``"all"``, a
                list of classes, or one of these per text. Generation: None (the model generates
                greedily; ``generate_kwargs`` such as ``max_new_tokens`` pass through), a string to
                force, or token ids; or one of these per prompt.
        """
        check_explain_options(self, generate_kwargs)
        engine = Engine(self.model, self.tokenizer, self.settings, memo=self)
        # The LM-head split is checked once per (base model, head) pair: swapping either rechecks, as does
        # a change to what the model does to its logits (a config number, a hook added on the way).
        engine.recall_head(self)
        result = engine.explain(model_inputs, targets, **generate_kwargs)
        engine.remember_head(self)
        self._check_result(engine, result)
        return result

    __call__ = explain

    def _check_result(self, engine: Engine, result: Any) -> None:
        """A look at a call's numbers once it is done (IntegratedGradients: its completeness gap)."""


def default_noise_std(model, tokenizer=None) -> float:
    """Half the standard deviation of the embedding matrix: noise on the embeddings' own scale.

    A fixed σ = 0.1 is three times the spread of a typical BERT embedding and drowns the signal;
    measured on the bundled models, 0.25–0.5 × this spread found the deciding words best. For a
    model that scales embeddings read from ids only (``tasks.input_scale_candidates``), the spread
    of the scaled ones, which are what it reads and what the noise is added to.
    """
    emb = model.get_input_embeddings()
    with torch.no_grad():
        spread = _std(emb.weight)
        # The spread of what the embedding module gives, which is what the noise is added to: some
        # scale their rows (BART or Marian with scale_embedding, Gemma 3: weight × √d).
        ids = torch.linspace(0, emb.weight.shape[0] - 1, min(emb.weight.shape[0], 1024)).long()
        ids = ids.to(emb.weight.device)
        raw = float(emb.weight[ids].float().norm())
        if raw > 0:
            spread *= float(emb(ids).float().norm()) / raw
    return 0.5 * spread * _input_scale(model, tokenizer)


def _input_scale(model, tokenizer) -> float:
    """``tasks.resolve_input_scale`` before any text is given, from a short one of the tokenizer's."""
    if model in INPUT_SCALES or tokenizer is None or not input_scale_candidates(model):
        return INPUT_SCALES.get(model, 1.0)
    device = model.get_input_embeddings().weight.device
    # Tokenized as every text is: calling the tokenizer would switch off a truncation it was set to.
    ids = torch.tensor([tokenize(tokenizer, "The food was good.")[0]], device=device)
    decoder = None
    if detect_task(model) == SEQ2SEQ:  # not a classifier's (BART's, MVP's): it makes its own decoder input
        start = decoder_start_id(model)
        decoder = torch.tensor([[start if isinstance(start, int) else 0]], device=device)
    with explaining(model):  # eval mode (no dropout), every module's mode back after
        return resolve_input_scale(model, ids, decoder)


# Rows of the embedding matrix read at a time: a 256k-row bfloat16 vocabulary copied whole to
# float would take gigabytes of device memory for one number.
STD_CHUNK_ELEMENTS = 1 << 24


def _std(weight: torch.Tensor) -> float:
    """The standard deviation of every entry (unbiased, as ``Tensor.std``), in float64, a chunk of rows at a time."""
    rows = max(1, STD_CHUNK_ELEMENTS // max(1, weight[0].numel()))
    chunks = weight.split(rows)
    total = sum(c.double().sum() for c in chunks)
    n = weight.numel()
    mean = total / n
    squares = sum((c.double() - mean).square().sum() for c in chunks)
    return float((squares / max(1, n - 1)).sqrt())


def _noise(e: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    # Drawn on the CPU, one sample at a time, so the numbers do not depend on device or batching;
    # sent without waiting, so the host goes on drawing while the device runs the previous batch.
    return send(torch.randn(e.shape, generator=gen, dtype=torch.float32) * std, e.device, e.dtype)


class Saliency(GradientMethod):
    """Saliency: a = ∇f(e). Default token reduction: L2 norm of the gradient.

    Example:
        >>> Saliency(model, tokenizer).explain("The food was cold.")  # doctest: +SKIP
    """

    default_reduction = "l2"
    sample_is_input = True

    def sample(self, e, b, gen, p):
        return e, None


class InputXGradient(GradientMethod):
    """Input × gradient: a = ∇f(e) ⊙ e, signed sum over the hidden dimension by default."""

    sample_is_input = True

    def sample(self, e, b, gen, p):
        return e, e


class SmoothGrad(GradientMethod):
    """SmoothGrad: mean_p a_p with a_p = ∇f(e + δ_p), times (e + δ_p) if ``input_x_gradient``.

    Args (besides the shared ones):
        n_perturbations: number of noisy samples (default 10).
        noise_std: σ of the Gaussian noise added to the embeddings, in embedding units (as in
            interpreto). Default None: half the standard deviation of the model's embedding
            matrix, so the noise is on the embeddings' own scale whatever the model.
        input_x_gradient: multiply each gradient by its noisy input (default True).
    """

    seeded = True

    def _option_names(self):
        return ("n_perturbations", "noise_std", "input_x_gradient")

    def _set_options(self, n_perturbations: int = 10, noise_std: float | None = None, input_x_gradient: bool = True):
        self.n_perturbations = positive_int(n_perturbations, "n_perturbations", self._min_samples())
        self.noise_std = (
            default_noise_std(self.model, self.tokenizer)
            if noise_std is None
            else non_negative_float(noise_std, "noise_std")
        )
        if not isinstance(input_x_gradient, bool):
            raise InterpTextError(f"input_x_gradient={input_x_gradient!r} must be True or False.")
        self.input_x_gradient = input_x_gradient
        self.n_samples = self.n_perturbations
        if not input_x_gradient and type(self) is SmoothGrad:
            self.default_reduction = "l2"

    def _min_samples(self) -> int:
        return 1

    def sample(self, e, b, gen, p):
        x = e + _noise(e, self.noise_std, gen)
        return x, (x if self.input_x_gradient else None)


class SquareGrad(SmoothGrad):
    """SquareGrad: mean_p a_p², element-wise, then summed over the hidden dimension."""

    statistic = "mean_of_squares"


class VarGrad(SmoothGrad):
    """VarGrad: the unbiased variance var_p a_p, element-wise (needs n_perturbations >= 2).

    Example:
        >>> VarGrad(model, tokenizer, n_perturbations=50).explain("The food was cold.")  # doctest: +SKIP
    """

    statistic = "variance"

    def _min_samples(self) -> int:
        return 2

    def _set_options(self, n_perturbations: int = 10, **kw):
        if as_int(n_perturbations) is not None and n_perturbations < 2:
            raise InterpTextError(f"VarGrad needs n_perturbations >= 2 to take a variance; got {n_perturbations}.")
        super()._set_options(n_perturbations=n_perturbations, **kw)


class IntegratedGradients(GradientMethod):
    """Integrated gradients: (e − b) ⊙ mean_k ∇f(b + α_k (e − b)), α_k = (k + ½) / n.

    The midpoint rule over ``n_interpolations`` steps. Completeness, Σ scores ≈ f(e) − f(b), is
    checked: ``Explanation.completeness_gap`` holds Σ(signed scores) − (f(e) − f(b)) per target.

    Args (besides the shared ones):
        n_interpolations: steps on the path (default 10). A call warns when a target's gap is over
            10% of f(e) − f(b).
        baseline: ``"zeros"`` (default); a special token, by name (``"pad"``, ``"mask"``, ``"unk"``)
            or as the tokenizer writes it (``"[MASK]"``), whose embedding fills every position; a
            token id (an int: ``0`` warns when token 0's row is not zeros); a number that fills every
            entry (``0.0`` is zeros, as captum's ``baselines=0``); or a tensor (hidden,) or (seq, hidden).
    """

    uses_baseline = True

    def _option_names(self):
        return ("n_interpolations", "baseline")

    def _set_options(self, n_interpolations: int = 10, baseline: Any = "zeros"):
        self.n_interpolations = positive_int(n_interpolations, "n_interpolations")
        self.baseline = "zeros" if baseline is None else baseline
        self.n_samples = self.n_interpolations

    def sample(self, e, b, gen, p):
        alpha = (p + 0.5) / self.n_interpolations
        return b + alpha * (e - b), e - b

    def _check_result(self, engine, result):
        # A gap this large says the steps are too few for this model's path, whatever the scores look like.
        if engine.worst_gap is None or engine.worst_gap[0] <= LARGE_GAP:
            return
        share, index, row, gap, delta = engine.worst_gap
        expl = result if isinstance(result, Explanation) else result[index]
        warnings.warn(
            f"IntegratedGradients: the completeness gap of text {index}'s target {expl.target_labels[row]!r} is "
            f"{gap:+.3g}, {share:.0%} of f(x) - f(baseline) = {delta:.3g}: {self.n_interpolations} steps are too few "
            f"for this model's path; raise n_interpolations (e.g. {5 * self.n_interpolations}) and read "
            "explanation.completeness_gap.",
            stacklevel=user_stacklevel(),
        )


class GradientShap(GradientMethod):
    """GradientSHAP: E_{α,δ}[(e − b) ⊙ ∇f(b + α (e + δ − b))], α ~ U(0, 1), δ ~ N(0, σ²).

    Args (besides the shared ones):
        n_perturbations: samples of (α, δ) (default 10).
        noise_std: σ (default: half the standard deviation of the embedding matrix).
        baseline: as for ``IntegratedGradients`` (default zeros).
    """

    seeded = True

    uses_baseline = True

    def _option_names(self):
        return ("n_perturbations", "noise_std", "baseline")

    def _set_options(self, n_perturbations: int = 10, noise_std: float | None = None, baseline: Any = "zeros"):
        self.n_perturbations = positive_int(n_perturbations, "n_perturbations")
        self.noise_std = (
            default_noise_std(self.model, self.tokenizer)
            if noise_std is None
            else non_negative_float(noise_std, "noise_std")
        )
        self.baseline = "zeros" if baseline is None else baseline
        self.n_samples = self.n_perturbations

    def sample(self, e, b, gen, p):
        alpha = float(torch.rand((), generator=gen))
        x = e + _noise(e, self.noise_std, gen)
        return b + alpha * (x - b), e - b


GRADIENT_METHODS = {
    "saliency": Saliency,
    "inputxgradient": InputXGradient,
    "smoothgrad": SmoothGrad,
    "vargrad": VarGrad,
    "squaregrad": SquareGrad,
    "integratedgradients": IntegratedGradients,
    "gradientshap": GradientShap,
}
