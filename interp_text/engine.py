"""The one engine every gradient method runs on.

A method only says how it perturbs the embeddings (``sample``) and which statistic it takes;
the engine tokenizes, batches rows of one length, runs forward + backward, streams the
statistic, reduces the hidden dimension and hands token scores to the granularity layer.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import inputs as inp
from .errors import InterpTextError, user_stacklevel
from .explanation import Explanation, Target
from .granularity import group_tokens, pool
from .model_guard import call_lock, checked_device, explaining, model_device
from .options import (
    Granularity,
    GranularityAggregationStrategy,
    InferenceModes,
    as_enum,
    as_int,
    plain,
    positive_int,
    seed_int,
)
from .readout import Readout, last_layer
from .readout import key as readout_key
from .statistics import Streaming
from .tasks import (
    CAUSAL_LM,
    CLASSIFICATION,
    INPUT_SCALES,
    SEQ2SEQ,
    Item,
    apply_mode,
    check_causal_decoder,
    class_log_norm,
    classification_columns,
    classification_logits,
    decoder_start_id,
    detect_task,
    embed,
    head_input,
    head_key,
    logit_map,
    no_cache,
    reads_ids_only,
    regression,
    resolve_input_scale,
    score_columns,
    send,
    split_head,
    target_logits,
    target_scores,
    target_table,
    unwrapped,
)

# What generation does with no generation_config= where the call does not say (max_new_tokens: fewer
# where the prompt leaves fewer positions, see Engine._generate).
GENERATION_DEFAULTS = {"do_sample": False, "max_new_tokens": 20}

# A forced text whose first token is less likely than this, where the same text after a space starts
# with another token, is probably missing that space (see Engine._warn_unspaced_targets).
UNLIKELY_FIRST_TOKEN = 1e-4
MORE_LIKELY = 100  # ... and the spaced text's first token this many times likelier

# Targets per vmapped backward on a CUDA device when the user sets none. Measured on an H100
# (SmoothGrad, 40 output tokens of a 6-layer GPT-2): loop 204 ms; 2: 171; 4: 116; 8: 97; 40: 94.
CUDA_TARGETS_PER_BACKWARD = 8
# Token positions per forward + backward on a CPU, whatever batch_size allows: a row's activations
# for the backward cost memory in proportion to its length (a 506-token BERT-base row: 0.24 GiB),
# so 64 such rows took 15 GiB, and ran slower than a few (51 rows: 69.6 s; 8 rows: 41.5 s).
CPU_TOKENS_PER_BACKWARD = 8192
CLEAN, BASELINE = -1, -2  # gradient-pass rows that are not samples: the unperturbed input, the baseline

# sample(e, b, generator, p) -> (x_p, multiplier_p or None); e, b, x_p: (seq, hidden)
Sampler = Callable[[torch.Tensor, torch.Tensor | None, torch.Generator, int], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class Settings:
    """Everything the engine needs to know about one explainer (validated by the method)."""

    name: str
    statistic: str  # "mean" | "mean_of_squares" | "variance"
    n_samples: int
    sample: Sampler
    token_reduction: str
    batch_size: int
    granularity: Granularity
    aggregation: GranularityAggregationStrategy
    inference_mode: InferenceModes
    device: torch.device | None
    seed: int
    task: str
    uses_baseline: bool = False
    sample_is_input: bool = False  # the one sample is the unperturbed input (Saliency, InputXGradient)
    targets_per_backward: int | None = None  # > 1: one vmapped backward for that many; None: per device
    baseline: Any = None  # "zeros" (None), a special token name ("pad", "mask"), a token id or a tensor
    options: dict | None = None
    progress: bool = False  # a bar on stderr, rows done / rows to run
    truncation: bool = False  # a text over the model's limit is cut to what fits (else refused)
    mask_outputs: bool = False  # perturbation methods on a causal LM: earlier output elements are masked too

    @classmethod
    def checked(
        cls,
        name: str,
        model,
        *,
        batch_size: Any,
        granularity: Any,
        aggregation: Any,
        inference_mode: Any,
        device: Any,
        seed: Any,
        task: str | None,
        progress: Any = False,
        truncation: Any = False,
        mask_outputs: Any = False,
        **rest: Any,
    ) -> Settings:
        """Settings from the options every explainer takes, each validated with an error naming the fix."""
        seed = seed_int(seed)
        for option, value in (("progress", progress), ("truncation", truncation), ("mask_outputs", mask_outputs)):
            if not isinstance(value, bool):
                raise InterpTextError(f"{option}={value!r} must be True or False.")
        task = detect_task(model, task)
        mode = as_enum(InferenceModes, inference_mode, "inference_mode")
        if task == CLASSIFICATION and mode != InferenceModes.LOGITS and regression(model):
            raise InterpTextError(
                f"inference_mode={mode.value!r}: {type(model).__name__} is a regression model (problem_type "
                "'regression', or one output and no multi-label problem_type), whose output has no probability; "
                "use inference_mode='logits'."
            )
        if mask_outputs and task != CAUSAL_LM:
            raise InterpTextError(mask_outputs_refused(model, task))
        return cls(
            name=name,
            batch_size=positive_int(batch_size, "batch_size"),
            granularity=as_enum(Granularity, granularity, "granularity"),
            aggregation=as_enum(GranularityAggregationStrategy, aggregation, "granularity_aggregation_strategy"),
            inference_mode=mode,
            device=checked_device(device),
            seed=seed,
            task=task,
            progress=progress,
            truncation=truncation,
            mask_outputs=mask_outputs,
            **rest,
        )


def mask_outputs_refused(model, task: str) -> str:
    """Why ``mask_outputs=True`` does not apply to ``model`` (a classifier's or encoder-decoder's)."""
    kind = (
        "a classifier, which has no output words"
        if task == CLASSIFICATION
        else "an encoder-decoder, whose outputs are not masked"
    )
    return f"mask_outputs=True masks a causal LM's earlier output words; {type(model).__name__} is {kind}: drop it."


def forward_only(name: str, model, **options: Any) -> Settings:
    """Settings of a pass without gradients (perturbation methods, metrics, generating outputs):
    no statistic, no samples, no hidden dimension to reduce; ``options`` as for ``Settings.checked``."""
    return Settings.checked(name, model, statistic="none", n_samples=0, sample=None, token_reduction="none", **options)


def reduce_hidden(stat: torch.Tensor, how: str) -> torch.Tensor:
    """``(..., seq, hidden)`` -> ``(..., seq)``: signed sum, L2 norm or mean of absolute values."""
    if how == "sum":
        return stat.sum(-1)
    if how == "l2":
        return stat.norm(dim=-1)
    return stat.abs().mean(-1)


def _batches(groups: dict, batch_size: int) -> Iterator[list[Item]]:
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def _group(items: list[Item], task: str) -> dict[tuple, list[Item]]:
    groups: dict[tuple, list[Item]] = {}
    for it in items:
        groups.setdefault(it.group_key(task), []).append(it)
    return groups


def checked_baseline(baseline: Any, model, tokenizer) -> Any:
    """An IG / GradientShap baseline as ``baseline_embeds`` reads it: None (zeros), a token id, or a
    tensor of shape (hidden,) or (seq, hidden); refused here, when the explainer is built."""
    if baseline is None or (isinstance(baseline, str) and baseline == "zeros"):
        return None
    weight = model.get_input_embeddings().weight
    rows, hidden = weight.shape
    named = isinstance(baseline, str)
    if named:
        if baseline in getattr(tokenizer, "all_special_tokens", ()):  # as the tokenizer writes it: "[MASK]"
            token_id = tokenizer.convert_tokens_to_ids(baseline)
        else:
            token_id = getattr(tokenizer, f"{baseline}_token_id", None) if baseline.isidentifier() else None
        if not isinstance(token_id, int):
            raise InterpTextError(
                f"baseline={baseline!r}: the tokenizer has no {baseline} token; use 'zeros', a special token's name "
                "('pad', 'mask', 'unk') or as the tokenizer writes it ('[MASK]', '<pad>'), a token id, a number or a "
                "tensor."
            )
        baseline = token_id
    number = isinstance(baseline, numbers.Real) and not isinstance(baseline, (numbers.Integral, bool))
    if number or (isinstance(baseline, torch.Tensor) and baseline.dim() == 0 and baseline.is_floating_point()):
        # A number, as captum reads one: every entry of the baseline embeddings (0.0: zeros).
        value = float(baseline)
        if not math.isfinite(value):
            raise InterpTextError(f"baseline={value} is not a finite number; every score would be NaN.")
        return None if value == 0 else torch.full((hidden,), value)
    if as_int(baseline) is not None and not isinstance(baseline, torch.Tensor):
        baseline = as_int(baseline)
        if not 0 <= baseline < rows:
            raise InterpTextError(
                f"baseline token id {baseline} has no embedding in this model (0..{rows - 1}; a token added to "
                "the tokenizer without model.resize_token_embeddings?); use 'zeros', another token or a tensor."
            )
        if baseline == 0 and not named and bool(weight[0].detach().ne(0).any()):
            # captum's baselines=0 means zeros: here an int is a token id, whose row is not zeros.
            token = tokenizer.convert_ids_to_tokens(0) if hasattr(tokenizer, "convert_ids_to_tokens") else None
            warnings.warn(
                f"baseline=0 is token id 0 ({token!r}), whose embedding is not zeros: for the zero baseline pass "
                "baseline='zeros' (or 0.0); to mean that token, pass it as written "
                f"(baseline={token!r}) or by its name ('pad', 'eos'...).",
                stacklevel=user_stacklevel(),
            )
        return baseline
    if isinstance(baseline, torch.Tensor):
        if baseline.dim() in (1, 2) and baseline.shape[-1] == hidden:
            return baseline
        raise InterpTextError(
            f"baseline tensor has shape {tuple(baseline.shape)}; pass (hidden,) = ({hidden},) or (seq, hidden)."
        )
    raise InterpTextError(
        f"baseline={baseline!r} is not understood; pass 'zeros', 'pad', 'mask', a token id, a number (every entry) "
        "or a tensor."
    )


def baseline_embeds(baseline: Any, model, item: Item) -> torch.Tensor:
    """The IG / GradientShap baseline of one item, ``(seq, hidden)``; ``baseline`` as ``checked_baseline`` gives it.

    Read only (batches stack it, samples interpolate from it): one row repeated is an expanded
    view, so a call over many long texts holds no second copy of their embeddings.
    """
    e = item.embeds
    if baseline is None:
        return e.new_zeros(()).expand_as(e)
    if isinstance(baseline, int):
        with torch.no_grad():
            row = embed(model, torch.tensor([baseline], device=e.device))[0]
        return row.expand_as(e)
    b = baseline.to(device=e.device, dtype=e.dtype)
    check_baseline_shape(b, item.index, tuple(e.shape))
    return b.expand_as(e) if b.shape == e.shape[-1:] else b.clone()


def check_baseline_shape(baseline: torch.Tensor, index: int, shape: tuple[int, int]) -> None:
    """A baseline tensor fits text ``index`` of ``(seq, hidden)`` ``shape``: (hidden,) or (seq, hidden)."""
    if tuple(baseline.shape) in (shape[-1:], shape):
        return
    raise InterpTextError(
        f"baseline tensor has shape {tuple(baseline.shape)} but text {index} is {shape} (seq, hidden); "
        f"pass (hidden,) = {shape[-1:]} to use it for every text."
    )


class Progress:
    """``label: [####......] done/total rows, 3.2s`` on stderr, redrawn at most ten times a second
    and once at the end; nothing when not ``enabled``. Rows are what the model runs: perturbed inputs
    of a gradient method, distinct masked inputs of a perturbation method."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total, self.done = enabled and total > 0, label, total, 0
        self.start = time.perf_counter()
        self.drawn = None  # when the line was last drawn
        self.step(0)  # drawn at once: the first batch of a long text may take minutes

    def step(self, rows: int) -> None:
        if not self.enabled:
            return
        self.done += rows
        now = time.perf_counter()
        if self.drawn is None or now - self.drawn >= 0.1 or self.done >= self.total:
            self.drawn = now
            filled = round(30 * self.done / self.total)
            end = "\n" if self.done >= self.total else ""
            sys.stderr.write(
                f"\r{self.label}: [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} rows, "
                f"{now - self.start:.1f}s{end}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        """End a line left unfinished (an error stopped the rows; a retry at half the batch size draws
        its own line)."""
        if self.drawn is not None and self.done < self.total:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Engine:
    needs_embeds = True  # items get their input embeddings (and baselines) in _prepare

    def __init__(self, model, tokenizer, settings: Settings, memo: Any = None):
        self.model, self.tokenizer, self.s = model, tokenizer, settings
        # The explainer or metric that keeps, from call to call, what its calls checked of the model.
        self.memo = memo
        self.head = None  # causal LMs: the checked (base, LM head) split, or False
        # Classifiers: the checked last-layer readout (``readout``), False: the full forward, None: unchecked.
        self.readout: Readout | bool | None = None
        self.loop_only = False  # set when a vmapped backward ran out of memory
        self.grad_scale = FLOAT16_GRAD_SCALE  # float16 models: the backward's seed scale (see _grad)
        self.id2label: dict | None = None
        self.regression: bool | None = None  # a regression model: no probability (read once)
        self._trailing_pads: str | None = None  # _check_pad_tokens' verdict on texts whose pad tokens trail
        self._own_pad: int | None = None  # see guarded
        self._model_name: str | None = None  # see guarded
        self._device: Any = None  # the call's device, set by _prepare
        # The call's largest completeness gap relative to f(x) − f(baseline): (share, text, target row,
        # gap, f(x) − f(baseline)); see _assemble.
        self.worst_gap: tuple | None = None

    @contextmanager
    def guarded(self) -> Iterator[torch.device]:
        """The model guard of one call (``model_guard.explaining``); gives the call's device.

        The model's lock is taken first: what is read of the model here (its pad id, its device) is
        read as the user left it, not as another thread's call has lent it for its own.
        """
        with call_lock(unwrapped(self.model)):
            pad = None
            # The model's own pad id, read before the guard lends it one: it says which position the ids
            # forward reads (None: the last), which _check_pad_tokens compares embeddings against.
            self._own_pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
            self._model_name = model_name(self.model)  # once per call: it reads the file system
            device = self.s.device or model_device(self.model)
            if self.s.task == CLASSIFICATION:  # any id: rows are never padded (see explaining)
                tok = self.tokenizer
                ids = (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None))
                pad = next((v for v in ids if isinstance(v, int)), 0)
            with explaining(self.model, self.s.device, pad_id=pad, backward=self.needs_embeds):
                yield device

    # ------------------------------------------------------------------ public
    def explain(self, model_inputs: Any, targets: Any = None, **generate_kwargs: Any) -> Explanation | list:
        s = self.s
        if "target" in generate_kwargs:  # captum's name: never an option of generate() either
            raise InterpTextError("explain() takes targets= (with an s), not target=: explain(text, targets=...).")
        if generate_kwargs and s.task == CLASSIFICATION:
            raise InterpTextError(f"unknown explain() options {sorted(generate_kwargs)} for a classifier.")
        texts, single = inp.normalise_texts(model_inputs)

        def run() -> list[Explanation]:
            # Inside a caller's torch.inference_mode() no tensor could take a gradient: lifted here.
            with self.guarded() as device, torch.inference_mode(False):
                self.grad_scale = FLOAT16_GRAD_SCALE  # each call starts from the same scale
                items = self._prepare(texts, targets, single, device, generate_kwargs)
                self._group_outputs(items)
                self._clean_pass(items)
                self._attribute(items, device)
                if s.task == CAUSAL_LM:
                    self._warn_unspaced_targets(items)
                    self._warn_trailing_space(items)
                return [self._assemble(it) for it in items]

        results = self.halving(run)
        if single:
            return results[0]
        from .render import ExplanationList

        return ExplanationList(results)

    def _warn_trailing_space(self, items: list[Item]) -> None:
        """One warning for a prompt that ends with a space its tokenizer makes a token of its own (GPT-2's,
        Llama's write the space before a word into the word's token): the model then reads a lone space
        token, which it all but never saw before a word, and what it generates (or how likely a forced
        output is) says more about that token than about the prompt."""
        joins = None  # whether the tokenizer writes spaces into words: asked once, if a prompt needs it
        for it in items:
            text = it.text
            if not isinstance(text, str) or isinstance(text, inp.Templated) or not text.endswith(" "):
                continue
            last = max((k for k in range(it.n_prompt) if not it.special[k]), default=None)
            if last is None:
                continue
            start, end = it.offsets[last]
            if text[start:end].strip():  # the space joined a word's token, or was dropped
                continue
            joins = self._spaces_join_words() if joins is None else joins
            if not joins:  # every space is a token of its own (characters): nothing unusual
                return
            warnings.warn(
                f"prompt {it.index} ends with a space, which this tokenizer makes a token of its own: the model "
                "reads a lone space token, which it rarely sees before a word, after the prompt. Drop the trailing "
                "space (pass text.rstrip()): the next word's token brings its own.",
                stacklevel=user_stacklevel(),
            )
            return

    def _spaces_join_words(self) -> bool:
        """Whether the tokenizer writes a space into the next word's token ("a b": "a", "Ġb"), rather
        than making every space a token (character-level ones)."""
        count = [len(inp.tokenize(self.tokenizer, t, False)[0]) for t in ("a b", "a", "b")]
        return count[0] == count[1] + count[2]

    def _warn_unspaced_targets(self, items: list[Item]) -> None:
        """One warning for a forced text that starts a word with no space before it ("Paris" after "...
        is") where the tokenizer writes that space into the word's token (" Paris" is one token,
        "Paris" two), when the model gives that spaced token far more probability: the explanation is
        of a first token the model all but never gives there. The suggested text is checked to force
        the spaced token, and its probability read with one forward of the prompt.

        A capitalised target glued onto the prompt's last word ("is" + "Paris": an ASCII capital
        after an ASCII lower-case letter) is warned of whatever the model's probabilities, where the
        tokenizer writes spaces into words: a model that is not sure of its answer (a fine-tuned or
        an untrained one) gives the spaced token no more probability, and interpreto adds the space
        to every target itself. A lower-case or digit continuation ("Fra" + "nce") is taken as meant."""
        joins = None  # whether the tokenizer writes spaces into words: asked once, if a target needs it
        for it in items:
            text, prompt = it.forced_text, it.text
            if not text or not text[0].isalnum() or not isinstance(prompt, str) or not prompt or prompt[-1].isspace():
                continue  # punctuation follows a word with no space ("," "."); a spaced prompt needs none
            # A capital after a lower-case letter starts a new word ("isParis"); a continuation of the last
            # word ("Fra" + "nce", "20" + "24", "num" + "bers") is lower case or digits, and meant.
            glued = prompt[-1].isascii() and prompt[-1].islower() and text[0].isascii() and text[0].isupper()
            if glued:
                joins = self._spaces_join_words() if joins is None else joins
                glued = joins
            forced = float(it.target_logprobs[0])
            if forced >= math.log(UNLIKELY_FIRST_TOKEN) and not glued:
                continue
            prompt_ids = it.input_ids[: it.n_prompt].tolist()
            joined = inp.tokenize(self.tokenizer, prompt + " " + text, not isinstance(prompt, inp.Templated))[0]
            suggestion = " " + text
            alone = inp.target_token_ids(self.tokenizer, [suggestion])[0]
            if (
                len(joined) <= len(prompt_ids)
                or joined[: len(prompt_ids)] != prompt_ids  # the space changes the prompt's own tokens
                or joined[len(prompt_ids)] == it.output_ids[0]
                or alone[0] != joined[len(prompt_ids)]  # the suggestion would not force the spaced token
            ):
                continue
            with torch.inference_mode():
                ids = send(torch.tensor([prompt_ids]), self._device)
                spaced = torch.log_softmax(self.model(input_ids=ids).logits[0, -1].double(), -1)[alone[0]]
            likelier = forced < math.log(UNLIKELY_FIRST_TOKEN) and float(spaced) >= forced + math.log(MORE_LIKELY)
            if not (likelier or glued):
                continue
            said = (
                f"starts with a token of probability {math.exp(forced):.1e}, and the same word after a space "
                f"with one of {math.exp(float(spaced)):.1e}"
                if likelier
                else f"joins the prompt's last word into {prompt.split()[-1] + text.split()[0]!r}"
            )
            warnings.warn(
                f"the forced target of prompt {it.index} ({text!r}) {said}: a forced text is tokenized as written, "
                "and this tokenizer writes the space before a word into the word's token. To force the word after "
                f"the prompt, pass {suggestion!r}.",
                stacklevel=user_stacklevel(),
            )
            return

    def halving(self, run: Callable[[], Any]) -> Any:
        """``run()``, started over at half the batch size each time it runs out of GPU memory.

        Rows are independent, so fewer per forward give the same scores. A warning, pointing at the
        user's call, names the batch size that fitted.
        """
        asked = self.s.batch_size
        while True:
            try:
                out = run()
                break
            except torch.cuda.OutOfMemoryError:
                if self.s.batch_size == 1:
                    raise
            # Outside the except block, whose frame held the failed buffers.
            torch.cuda.empty_cache()
            self.s = replace(self.s, batch_size=self.s.batch_size // 2)
        if self.s.batch_size != asked:
            warnings.warn(
                f"batch_size={asked} ran out of device memory; this call used batch_size={self.s.batch_size}. "
                f"Pass batch_size={self.s.batch_size} to start there.",
                stacklevel=user_stacklevel(),
            )
        return out

    # ------------------------------------------------------------------ stages
    def _prepare(self, texts, targets, single, device, generate_kwargs) -> list[Item]:
        s, model, tok = self.s, self.model, self.tokenizer
        max_len = inp.max_input_length(model, tok)
        if s.task == CLASSIFICATION:
            per_text = inp.model_class_targets(model, targets, len(texts), single)
        else:
            per_text = inp.generation_targets(targets, len(texts), single)
        # Each forced output's token ids (None: generated), read once for the checks, the cut and the items.
        forced = [None] * len(texts)
        if s.task != CLASSIFICATION:
            forced = [
                ids if ids is None or not isinstance(target, str) else inp.forced_first_token(model, s.task, ids)
                for target, ids in zip(per_text, inp.target_token_ids(tok, per_text))
            ]
        if s.task == CAUSAL_LM and max_len is not None:
            self._check_output_room(forced, generate_kwargs, max_len)
        cuts, notes = {}, {}
        if s.truncation and max_len is not None:
            texts, cuts, notes = self._truncated(texts, forced, max_len, generate_kwargs)
        items = inp.build_items(model, tok, s.task, texts, per_text, max_len)
        hints = {it.index: self._length_hint(it, notes) for it in items}
        for it in items:
            it.cut = cuts.get(it.index)
            inp.check_length(it, s.task, max_len, hints[it.index])
            if all(it.special):
                raise InterpTextError(
                    f"text {it.index} ({str(it.text)!r}) has no token to explain: the tokenizer drops every one of its "
                    "characters (as BERT's drops zero-width and control characters); pass a text with words in it."
                )
        if s.task == CLASSIFICATION:
            self._check_input_scale(items[0], device)
            for it in items:
                self._check_pad_tokens(it, device)
        if s.task != CLASSIFICATION:
            to_generate = [it for it, t in zip(items, per_text) if t is None]
            if generate_kwargs and not to_generate:
                raise InterpTextError(
                    f"explain() options {sorted(generate_kwargs)} are for generation, but every target is given, "
                    "so nothing is generated; drop them."
                )
            rows = inp.embedding_rows(model)
            for it, target, ids in zip(items, per_text, forced):
                if ids is not None:  # text: as generate() would write it (forced_first_token); token ids: as given
                    it.forced = True  # before set_outputs, whose length check names the fix by it
                    it.forced_text = target if isinstance(target, str) else None
                    inp.set_outputs(
                        model,
                        tok,
                        s.task,
                        it,
                        ids,
                        max_len,
                        rows,
                        hints[it.index],
                    )
            sampled = self._generate(to_generate, device, generate_kwargs, max_len)
            if generate_kwargs:
                # A sampled output is the seed's draw: recorded with it, whether or not the method uses one.
                recorded = {**json_options(generate_kwargs), **({"seed": s.seed} if sampled else {})}
                for it in to_generate:
                    it.generation = copy.deepcopy(recorded)  # each explanation its own
        if s.task != CLASSIFICATION:  # with its output: an encoder-decoder's check reads the decoder too
            self._check_input_scale(items[0], device)
        self._device = device
        if self.needs_embeds and s.uses_baseline and isinstance(s.baseline, torch.Tensor):
            hidden = model.get_input_embeddings().weight.shape[1]
            for it in items:  # refused before any forward, though baselines are made batch by batch
                check_baseline_shape(s.baseline, it.index, (it.input_ids.shape[0], hidden))
        return items

    def _check_output_room(self, forced: list, generate_kwargs: dict, max_len: inp.Limit) -> None:
        """A causal LM's output that fills the model's length alone is refused before its prompt is
        looked at: no prompt, however short (or cut), leaves it room."""
        given = as_int(generate_kwargs.get("max_new_tokens"))
        hold = f"the {int(max_len)} tokens {max_len.who()}{max_len.note()} hold prompt and output together"
        if given is not None and given >= max_len and any(t is None for t in forced):  # else unused: named later
            raise InterpTextError(f"max_new_tokens={given} leaves no room for a prompt: {hold}; lower max_new_tokens.")
        for i, ids in enumerate(forced):
            if ids is not None and len(ids) >= max_len:
                raise InterpTextError(
                    f"the target of prompt {i} has {len(ids)} tokens: {hold}; shorten the target (the forced output)."
                )

    def _keeps_end(self) -> bool:
        """Whether ``truncation=True`` keeps a text's end: a causal LM's prompt, or a tokenizer set to
        truncate on the left."""
        return self.s.task == CAUSAL_LM or getattr(self.tokenizer, "truncation_side", "right") == "left"

    def _length_hint(self, it: Item, notes: dict) -> str:
        """How a length error about ``it`` ends: what ``truncation=True`` would do, or why it did not."""
        if not self.s.truncation:
            if not inp.is_plain(it.text):
                return ""
            part = "the end of the prompt" if self.s.task == CAUSAL_LM else "the end of the text"
            part = part if self._keeps_end() else "the start of the text"
            return f", or build the explainer with truncation=True to explain {part} that fits"
        if not inp.is_plain(it.text):
            return " (truncation=True cuts plain strings only, not a text pair or a conversation)"
        return notes.get(it.index, "")

    def _truncated(self, texts: list, forced: list, max_len: int, generate_kwargs: dict) -> tuple:
        """``texts`` with each plain text that would be refused as too long cut to what fits
        (``truncation=True``): a classifier's or encoder-decoder's input keeps its start (its end where
        the tokenizer's ``truncation_side`` is "left"); a causal LM's prompt keeps its end and leaves
        room for the output: a forced one's tokens, or ``max_new_tokens``. Without ``max_new_tokens``
        the default (20) shrinks to fit a prompt, as without truncation, so only a prompt that leaves
        no token is cut, to leave the default's 20.

        Returns the texts, each cut text's ``{"start", "end", "of"}`` (characters of the text given)
        by index, and where the output leaves no room to cut to, why (a length error's end).
        """
        s, tok = self.s, self.tokenizer
        n = len(texts)
        limit, over = [max_len] * n, [max_len] * n  # tokens to cut to; cut when longer than `over`
        notes = {}
        if s.task == CAUSAL_LM:
            config = generate_kwargs.get("generation_config")
            config = config if isinstance(config, dict) else vars(config) if config is not None else {}
            given = as_int(generate_kwargs.get("max_new_tokens", config.get("max_new_tokens")))
            for i, ids in enumerate(forced):  # each forced output's token ids, None where one is generated
                if ids is None and given is None:
                    over[i], limit[i] = max_len - 1, max(1, max_len - GENERATION_DEFAULTS["max_new_tokens"])
                    continue
                room = len(ids) if ids is not None else given
                over[i] = limit[i] = max_len - room
                what = "the forced output (the target)" if ids is not None else f"max_new_tokens={given}"
                notes[i] = f"; truncation=True leaves the prompt no room: {what} takes {room} of the {max_len} tokens"
        out, cuts = list(texts), {}
        plain = [i for i, text in enumerate(texts) if inp.is_plain(text)]
        lengths = [len(encoded[0]) for encoded in inp.tokenize_all(tok, [texts[i] for i in plain])] if plain else []
        for i, length in zip(plain, lengths):  # one batched call finds the long ones, which are cut one by one
            if length <= over[i] or limit[i] < 1:
                continue
            cut = inp.truncated(tok, texts[i], limit[i], self._keeps_end())
            if cut is not None:
                start = len(texts[i]) - len(cut) if self._keeps_end() else 0
                out[i], cuts[i] = cut, {"start": start, "end": start + len(cut), "of": len(texts[i])}
                notes.pop(i, None)
        return out, cuts, notes

    def _embed(self, items: list[Item]) -> None:
        """Input embeddings (and baselines) of those of ``items`` that lack them, in one lookup.

        Made batch by batch and dropped once a text is done, so a call over many long texts holds
        the embeddings of the texts in flight only, not of every text.
        """
        todo = list({id(it): it for it in items if it.embeds is None}.values())
        if not todo:
            return
        with torch.no_grad():
            all_ids = torch.cat([it.input_ids for it in todo]).to(self._device)
            embeds = embed(self.model, all_ids).detach().split([len(it.input_ids) for it in todo])
            for it, e in zip(todo, embeds):
                it.embeds = e  # (seq, hidden)
                if self.s.uses_baseline:
                    it.baseline = baseline_embeds(self.s.baseline, self.model, it)  # (seq, hidden)

    def _check_input_scale(self, it: Item, device) -> None:
        """Find, once per model, the factor its forward applies to embeddings on the ids path only
        (``tasks.INPUT_SCALES``): Pegasus' and Marian's encoders multiply by √d, FalconH1 by its
        embedding_multiplier, only when given ids, so embeddings fed as inputs_embeds must carry it.
        Only models holding such a factor (``input_scale_candidates``) are checked, with the forwards
        of one text on ids and on embeddings; one that matches no candidate is refused. An
        encoder-decoder's decoder is then checked to be causal in that forward (once per model)."""
        model = self.model
        if reads_ids_only(model) or (model in INPUT_SCALES and self.s.task != SEQ2SEQ):
            return
        ids, decoder = it.input_ids[None].to(device), None
        if self.s.task == SEQ2SEQ:  # any decoder input tells the two paths apart: its start if known, else id 0
            start = it.decoder_start if it.decoder_start is not None else decoder_start_id(model)
            decoder = torch.tensor([[start if isinstance(start, int) else 0]], device=device)
        if model not in INPUT_SCALES:
            resolve_input_scale(model, ids, decoder, it.token_types)
        if decoder is not None:
            check_causal_decoder(model, ids, int(decoder[0, 0]))

    def _check_pad_tokens(self, it: Item, device) -> None:
        """A classifier that finds the position it reads from the pad tokens in its ids (GPT-2's,
        Llama's: the last token that is not the pad token) reads another one from embeddings (the
        last). A text holding the pad token (often also the end-of-text token) is checked against
        the ids forward: trailing pad tokens, which such a causal model never reads, are dropped
        from the input; anything else that still differs is refused. Texts without the pad token
        cost nothing; texts whose pad tokens all trail follow the first such text's check.
        """
        pad = self._own_pad  # None: the model reads the last position, from ids as from embeddings
        if not isinstance(pad, int) or pad not in it.input_ids.tolist() or reads_ids_only(self.model):
            return
        ids = it.input_ids
        n = len(ids)
        while n > 1 and int(ids[n - 1]) == pad:
            n -= 1
        trailing_only = pad not in ids[:n].tolist()
        verdict = self._trailing_pads if trailing_only else None
        if verdict is None:
            verdict = self._pad_verdict(it, n, device)
            if trailing_only:
                self._trailing_pads = verdict
        if verdict == "trim":
            it.hidden_spans = [(a, b) for a, b in it.offsets[n:] if b > a]  # their text is no word
            it.input_ids = ids[:n]
            it.offsets, it.special, it.token_strings = it.offsets[:n], it.special[:n], it.token_strings[:n]
            if it.token_types is not None:
                it.token_types = it.token_types[:n]
        elif verdict == "refuse":
            raise InterpTextError(
                f"text {it.index} holds the pad token ({self.tokenizer.convert_ids_to_tokens(pad)!r}, id {pad}), and "
                f"{type(self.model).__name__} reads token ids differently from embeddings around it (it picks the "
                "position it reads by looking for pad tokens); drop that token from the text."
            )

    def _pad_verdict(self, it: Item, n: int, device) -> str:
        """ "keep" (embeddings read as ids do), "trim" (once the pad tokens after position n are
        dropped) or "refuse", from the forwards of one text."""
        ids = it.input_ids[None].to(device)
        types = {} if it.token_types is None else {"token_type_ids": torch.tensor([it.token_types], device=device)}
        with torch.no_grad():
            # An all-ones mask: the same reading, without transformers' warning about padding.
            own = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **types).logits
            # Another position read differs by O(1); rounding alone, by about 1e-3 in half precision.
            tol = 5e-2 if own.dtype in (torch.float16, torch.bfloat16) else 1e-4
            own = own.float()

            def reads_as_ids(length: int) -> bool:
                # Read as every explanation reads the model (token types, Longformer's global mask; a
                # classifier that takes ids only is given them, and reads them as they are read here).
                cut_types = None if it.token_types is None else it.token_types[:length]
                x = embed(self.model, ids[:, :length])
                read = classification_logits(self.model, x, cut_types, lambda: ids[:, :length]).float()
                return torch.allclose(read, own, rtol=tol, atol=tol * (1 + float(own.abs().max())))

            if reads_as_ids(ids.shape[1]):
                return "keep"
            return "trim" if n < ids.shape[1] and reads_as_ids(n) else "refuse"

    def _group_outputs(self, items: list[Item]) -> None:
        """Each output's elements at the explainer's granularity, once, before any forward: an output
        with none (only special or whitespace tokens) is refused before the work, not after it."""
        s = self.s
        if s.task == CLASSIFICATION:
            return
        for it in items:
            strings = self.tokenizer.convert_ids_to_tokens(it.output_ids)
            it.output_groups = group_tokens(
                it.output_text, it.output_offsets, it.output_special, s.granularity, strings
            )
            if not it.output_groups[0]:
                raise InterpTextError(
                    f"the output of prompt {it.index} ({it.output_text!r}) has no {s.granularity.value} to explain "
                    "(only special or whitespace tokens); pass granularity='all_tokens' to explain those tokens, "
                    "or another target."
                )

    def _generate(self, items: list[Item], device, kwargs: dict, max_len) -> bool:
        """The outputs of ``items``, generated; returns whether they were sampled (do_sample)."""
        if not items:
            return False
        model, tok = self.model, self.tokenizer
        stop, rows = inp.eos_ids(model, tok), inp.embedding_rows(model)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (min(stop) if stop else None)
        options = dict(kwargs)
        given = kwargs.get("generation_config")
        if isinstance(given, dict):  # {"max_new_tokens": 3}: the config it spells
            from transformers import GenerationConfig

            options["generation_config"] = given = GenerationConfig(**given)
        if given is None:  # greedy, 20 new tokens; a generation_config= the user passes says for itself
            defaults = dict(GENERATION_DEFAULTS)
            if "max_length" in kwargs:
                del defaults["max_new_tokens"]
            options = {**defaults, **options}
            options.setdefault("pad_token_id", pad)
        elif getattr(given, "pad_token_id", None) is None:  # on a copy: a pad_token_id= beside it is deprecated
            options["generation_config"] = given = copy.deepcopy(given)
            given.pad_token_id = pad
        # What generate() will do: these options, then the generation config given, then the model's.
        configs = [options, *(c for c in (given, getattr(model, "generation_config", None)) if c is not None)]

        def setting(name: str, default: Any = None) -> Any:
            for c in configs:
                value = c.get(name) if isinstance(c, dict) else getattr(c, name, None)
                if value is not None:
                    return value
            return default

        filler = setting("pad_token_id", pad)  # what generate() fills a finished row with
        if setting("num_return_sequences", 1) != 1:
            raise InterpTextError(
                f"num_return_sequences must be 1 (the options or a generation config set {setting('num_return_sequences')}"
                "): each prompt is explained with one output. To explain several, generate them first and pass each "
                "as targets=."
            )
        for name in ("return_dict_in_generate", "output_scores", "output_logits"):
            if options.get(name):
                raise InterpTextError(f"{name}=True: the explanation reads the generated ids only; drop it.")
        if isinstance(options.get("decoder_start_token_id"), (list, tuple)):
            raise InterpTextError(
                "decoder_start_token_id must be one id here: prompts are regrouped by length, so a list of one per "
                "prompt cannot follow them; explain the prompts that need another start in separate calls."
            )
        new_tokens = options.get("max_new_tokens")
        if new_tokens is not None:
            if as_int(new_tokens) is None:
                raise InterpTextError(f"max_new_tokens={new_tokens!r} must be an int.")
            new_tokens = options["max_new_tokens"] = as_int(new_tokens)
        if setting("stop_strings") is not None:  # given here or in a generation config
            options.setdefault("tokenizer", tok)  # generate() needs it to find the strings
        by_len: dict[int, list[Item]] = {}
        for it in items:
            by_len.setdefault(it.n_prompt, []).append(it)
        defaulted = given is None and "max_new_tokens" not in kwargs and "max_length" not in kwargs
        room = {}  # prompt length -> max_new_tokens, where the default 20 would pass the model's limit
        for n_prompt, same_length in by_len.items():
            if self.s.task == CAUSAL_LM and max_len and new_tokens and n_prompt + new_tokens > max_len:
                if defaulted and n_prompt < max_len:  # the default is ours: it shrinks to what fits
                    room[n_prompt] = max_len - n_prompt
                    continue
                if defaulted:  # no room for even one new token
                    raise InterpTextError(
                        f"text {same_length[0].index} has {n_prompt} tokens, as many as {max_len.who()}{max_len.note()}: "
                        "there is no room for an output; shorten the prompt."
                    )
                raise InterpTextError(
                    f"text {same_length[0].index} has {n_prompt} tokens and max_new_tokens={new_tokens} would pass "
                    f"the {max_len} tokens {max_len.who()}{max_len.note()}; lower max_new_tokens or shorten the prompt."
                )
        # Prompts of one length generate together (no padding), batch_size at a time (bounded memory).
        # Sampling draws for a whole batch at each step, so a sampled prompt generates alone, seeded:
        # its output is the same whatever batch_size and whatever the other prompts.
        sampling = bool(setting("do_sample", False))
        device = torch.device(device)
        try:
            # do_sample=True draws from the global generator: seeded here, and left as it was after.
            with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                for group in _batches(by_len, 1 if sampling else self.s.batch_size):
                    ids = torch.stack([it.input_ids[: it.n_prompt] for it in group]).to(device)  # (k, prompt)
                    torch.manual_seed(self.s.seed)
                    fit = {"max_new_tokens": room[group[0].n_prompt]} if group[0].n_prompt in room else {}
                    try:
                        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{**options, **fit})
                    except torch.cuda.OutOfMemoryError:
                        if not sampling:
                            raise  # Engine.halving starts over at half the batch size
                        raise InterpTextError(  # one prompt already: halving cannot help
                            f"sampling a prompt of {ids.shape[1]} tokens ran out of GPU memory; lower max_new_tokens, "
                            "or pass the output as a forced target."
                        ) from None
                    except IndexError as err:  # a position past the model's table, or the model's own failure
                        longest = fit.get("max_new_tokens", setting("max_new_tokens"))
                        if self.s.task == CAUSAL_LM and longest is not None:
                            longest += ids.shape[1]
                        if longest is None or (max_len and longest > max_len):
                            raise InterpTextError(
                                f"generation failed ({err}): the output likely ran past the {max_len} positions the "
                                "model takes; lower max_new_tokens (or max_length) in the options or generation config."
                            ) from err
                        raise InterpTextError(
                            f"generation failed inside {type(model).__name__}.generate() ({err}), within the "
                            f"{max_len} positions the model takes; pass the output as a forced target (targets=) to "
                            "explain it without generating."
                        ) from err
                    out = getattr(out, "sequences", out)  # return_dict_in_generate set in a generation config
                    if out.shape[0] != len(group):
                        raise InterpTextError(
                            f"generate() returned {out.shape[0]} outputs for {len(group)} prompts; each prompt is "
                            "explained with one output (num_return_sequences=1, no beam outputs returned)."
                        )
                    for it, row in zip(group, out.tolist()):
                        new = row[it.n_prompt :] if self.s.task == CAUSAL_LM else row[1:]
                        if self.s.task == SEQ2SEQ:  # the start it was given (decoder_start_token_id=...)
                            it.decoder_start = row[0]
                        ids_out = inp.strip_generated(new, stop, filler)
                        if not ids_out and new and new[0] not in stop:  # pad tokens only, which are dropped
                            raise InterpTextError(
                                f"the output for prompt {it.index} is only pad tokens (id {filler}), which are "
                                f"dropped: the model generated nothing else. Pass the output to explain as targets=, "
                                f"or suppress_tokens=[{filler}] in the generation options."
                            )
                        inp.set_outputs(model, tok, self.s.task, it, ids_out, max_len, rows)
        except InterpTextError:
            raise
        except (TypeError, ValueError) as err:
            raise InterpTextError(f"generation failed with options {kwargs}: {err}") from err
        return sampling

    def _clean_pass(self, items: list[Item]) -> None:
        """Generation: f(x) and log p on the unperturbed input (and f(baseline) when the method has one).

        Classifiers skip it: their unperturbed (and baseline) rows join the gradient forwards.
        """
        s = self.s
        if s.task == CLASSIFICATION:
            return
        with torch.no_grad():
            for batch in _batches(_group(items, s.task), s.batch_size):
                self._embed(batch)
                x = torch.stack([it.embeds for it in batch])  # (rows, seq, hidden)
                check = s.task in (CAUSAL_LM, SEQ2SEQ) and self.head is None
                # A model may scale its inputs_embeds in place (CTRL): the check reads them as they came.
                pristine = x.clone() if check else None
                chosen, log_norm, valid = target_logits(self.model, s.task, x, batch)
                if check:
                    self.head = self._checked_head(pristine, batch, chosen, log_norm, valid)
                f = apply_mode(chosen, log_norm, s.inference_mode)
                log_p = chosen - log_norm  # (rows, width)
                for r, it in enumerate(batch):
                    it.target_logprobs = log_p[r, : it.n_targets].double().cpu()
                    it.target_scores = f[r, : it.n_targets].double().cpu()
                    check_finite(self.model, it)
                if s.uses_baseline:
                    b = torch.stack([it.baseline for it in batch])
                    fb, _ = target_scores(self.model, s.task, b, batch, s.inference_mode, self.head or None)
                    for r, it in enumerate(batch):
                        it.baseline_scores = fb[r, : it.n_targets].double().cpu()
                for it in batch:  # made again when its samples run: only a batch is held at a time
                    it.embeds = it.baseline = None

    def _classifier_logits(self, x: torch.Tensor, token_types, read=None) -> torch.Tensor:
        """A classifier's logits of rows ``x``: with its last layer run at the read position only
        (``readout``) once that was checked to give the model's own logits (``_checked_readout``, on
        the first rows the explainer or metric scores; kept on the memo for the model as it is)."""
        if self.readout is None:  # the call's first forward: the model's readout, as last checked
            found = last_layer(self.model)
            if found is None:
                self.readout = False
            else:
                key = readout_key(self.model, found)
                cached = getattr(self.memo, "_readout_check", None)
                if cached is None or cached[0] != key:  # unchecked: these rows check it
                    return self._checked_readout(x, token_types, read, found, key)
                self.readout = Readout(found) if cached[1] else False
        return classification_logits(self.model, x, token_types, read, self.readout or None)

    def _checked_readout(self, x: torch.Tensor, token_types, read, found: tuple, key: tuple) -> torch.Tensor:
        """The logits of rows ``x``, with the readout of ``found`` (``last_layer``) if it gives the
        model's own logits on the first ``READOUT_CHECK_ROWS`` of them (to a few rounding steps of the
        model's precision), which is kept as ``readout`` and on the memo under ``key`` for the later
        calls. The logits are made as the later calls will make them (with their graph where gradients
        are on), so that a call's numbers do not depend on whether it checked."""
        readout, k = Readout(found), READOUT_CHECK_ROWS
        try:
            pruned = classification_logits(self.model, x, token_types, read, readout)
        except torch.cuda.OutOfMemoryError:
            raise  # not a verdict on the readout: halving() starts the call over with smaller batches
        except (TypeError, ValueError, AttributeError, RuntimeError, IndexError):
            pruned = None
        few = None if read is None else (lambda: read()[:k])
        with torch.no_grad():
            full = classification_logits(self.model, x[:k], token_types, few)  # (≤ k, classes)
        tol = max(1e-4, 4 * torch.finfo(full.dtype).eps)
        scale = float(full.abs().max()) + 1.0
        ok = pruned is not None and pruned.shape[1:] == full.shape[1:]
        ok = ok and torch.allclose(pruned[:k].detach(), full, rtol=tol, atol=tol * scale)
        if self.memo is not None and pruned is not None:  # an error may pass: the next call checks again
            self.memo._readout_check = (key, ok)
        self.readout = readout if ok else False
        return pruned if ok else classification_logits(self.model, x, token_types, read)

    def recall_head(self, memo: Any) -> None:
        """Take the LM-head check ``memo`` (an explainer or metric) kept from an earlier call, if the
        model is as it was then (``head_key``: the same modules, numbers and hooks)."""
        cached = getattr(memo, "_head_check", None)
        if cached is not None and cached[0] == head_key(self.model):
            self.head = cached[1]

    def remember_head(self, memo: Any) -> None:
        """Keep this call's LM-head check on ``memo`` for its later calls (see ``recall_head``)."""
        if memo is not None and self.head is not None:
            memo._head_check = (head_key(self.model), self.head)

    def _checked_head(self, x, batch, chosen, log_norm, valid):
        """The per-position LM head split ``(base, LM head, LogitMap)``, if it gives this model's own
        logits; else False.

        Models may post-process logits (soft-capping, scaling): ``logit_map`` reads what this one does
        from the model itself, on head outputs far larger than a tiny model's own, where a soft-cap
        shows. Any other post-processing keeps the slower whole-logits path. The split is then
        compared with the model's own forward on real input. Only the rows' own targets (``valid``)
        are compared: a row with fewer outputs than the widest in its batch reads other positions in
        its unused columns.
        """
        model, task = self.model, self.s.task
        parts = split_head(model, task)
        if parts is None:
            return False
        base, lm_head = parts
        try:
            with torch.no_grad():
                if task == SEQ2SEQ:  # the head's input at the first decoder input, then at 5 of them
                    start = target_table(model, task, batch[:1], x.device).decoder_in[:, :1]  # (1, 1)

                    def run(n):
                        return lambda: model(
                            inputs_embeds=x[:1].clone(),
                            decoder_input_ids=start.expand(1, n).contiguous(),
                            **no_cache(model),
                        )

                    h = head_input(lm_head, run(1))
                    way = None if h is None else logit_map(model, lm_head, h[0, -1], run(5))
                else:  # the base model's output at the first position, then at 5 positions
                    h = base(inputs_embeds=x[:1, :1].clone(), **no_cache(base)).last_hidden_state[0, 0]
                    run5 = lambda: model(inputs_embeds=x[:1, :1].repeat(1, 5, 1), **no_cache(model))  # noqa: E731
                    way = logit_map(model, lm_head, h, run5)
            if way is None:
                return False
            parts = (base, lm_head, way)
            c2, n2, _ = target_logits(model, task, x.clone(), batch, head=parts)
            c3, _, _ = target_logits(model, task, x.clone(), batch, normaliser=False, head=parts)  # LOGITS' own branch
        except torch.cuda.OutOfMemoryError:
            raise  # not a verdict on the split: halving() starts the call over with smaller batches
        except (TypeError, AttributeError, RuntimeError):
            return False
        tol = 1e-3 if x.dtype in (torch.float16, torch.bfloat16) else 1e-5  # the model's precision (logits are float32)
        atol = tol * max(1.0, float(chosen.detach().abs().max()))
        c2, n2, c3 = torch.where(valid, c2, chosen), torch.where(valid, n2, log_norm), torch.where(valid, c3, chosen)
        close = all(torch.allclose(a, b, rtol=tol, atol=atol) for a, b in ((c2, chosen), (n2, log_norm), (c3, chosen)))
        return parts if close else False

    def _attribute(self, items: list[Item], device) -> None:
        """The method's own pass: gradients here; ``perturbation.PerturbationEngine`` masks elements."""
        self._gradient_pass(items, device)

    def _gradient_pass(self, items: list[Item], device) -> None:
        s = self.s
        # A classifier's targets (by default its prediction) come from the unperturbed input:
        # that row, and the baseline's, lead the text's rows in the gradient forwards instead of
        # taking forwards of their own (which, on a GPU, cost as much as a full batch).
        # Saliency's and InputXGradient's one sample is that input: it serves as its row (half the rows).
        clean = [] if s.sample_is_input else [CLEAN]
        extra = (clean + ([BASELINE] if s.uses_baseline else [])) if s.task == CLASSIFICATION else []
        units = []  # (item, sample index), grouped by length so a forward never pads
        for group in _group(items, s.task).values():
            for it in group:
                units.extend((it, p) for p in extra)
                units.extend((it, p) for p in range(s.n_samples))
        generators = {it.index: torch.Generator().manual_seed(s.seed) for it in items}
        # Per text, per target: its running statistic, then (once complete) its reduction (``_reduce_target``).
        stats: dict[int, list] = {}  # made once a text's targets are known
        left = {it.index: s.n_samples for it in items}  # samples not run yet, per text
        cap = CPU_TOKENS_PER_BACKWARD if torch.device(device).type == "cpu" else None
        bar = Progress(s.progress, s.name, len(units))
        try:
            for rows in packed(units, s.batch_size, s.task, cap):
                self._backward_rows(rows, generators, stats, device)
                bar.step(len(rows))
                for it, p in rows:
                    if p >= 0:
                        left[it.index] -= 1
                        if not left[it.index]:
                            self._reduce_statistic(it, stats.pop(it.index))
                            it.embeds = it.baseline = None  # the text is done
        finally:
            bar.close()

    def _reduces_early(self) -> bool:
        """Whether each sample's gradients can be reduced over the hidden dimension as they come: the
        mean over samples of a signed sum is the signed sum of the mean, and one sample is its own
        mean. Then a target's running statistic is ``(seq,)``, not ``(seq, hidden)``: a long
        generation (400 targets × 450 positions × hidden 4096) holds MiB, not GiB. Variances, means
        of squares and the norms of a mean over several samples need the whole ``(seq, hidden)``."""
        s = self.s
        if s.uses_baseline and s.token_reduction != "sum":  # its completeness gap needs the signed total
            return False
        return s.statistic == "mean" and (s.token_reduction == "sum" or s.n_samples == 1)

    def _reduce_statistic(self, it: Item, streams: list) -> None:
        """A text's statistic, once its last sample is in: only what the explanation reads is kept.

        The (targets, seq, hidden) statistic of every text held until the last batch grew with the
        number of texts (GiB for a few hundred long generations); here it lives one text at a time,
        and each target's is reduced on its own (no stacked copy of them all).
        """
        # Every target's (seq,) scores are in it.token_scores already: kept there as they ran (early), or
        # written there as each target's last sample came in (``_reduce_target``).
        if self._reduces_early() and self.s.uses_baseline:  # completeness is about the signed total: the
            it.stat_total = it.token_scores.sum(-1)  # sum of the signed sums

    def _reduce_target(self, it: Item, j: int, statistic: torch.Tensor) -> None:
        """Target ``j``'s complete ``(seq, hidden)`` statistic, written as the text reads it: its
        ``(seq,)`` scores, and with a baseline its signed total (completeness is about that, whatever
        the display reduction). Kept whole, 400 output tokens × 450 positions × hidden 4096 in float64
        would be 11 GiB, for one text."""
        if self.s.uses_baseline:
            it.stat_total[j] = statistic.sum()
        it.token_scores[j] = reduce_hidden(statistic, self.s.token_reduction)

    def _backward_rows(self, rows, generators, stats, device) -> None:
        s = self.s
        self._embed([it for it, _ in rows])
        xs, ms = [], []
        for it, p in rows:
            if p == CLEAN:
                x, m = it.embeds, None
            elif p == BASELINE:
                x, m = it.baseline, None
            else:
                x, m = s.sample(it.embeds, it.baseline, generators[it.index], p)
            xs.append(x)
            ms.append(m)
        x = torch.stack(xs).to(device).requires_grad_(True)  # (rows, seq, hidden)
        mult = None
        if any(m is not None for m in ms):
            mult = torch.stack([m if m is not None else torch.zeros_like(e) for m, e in zip(ms, xs)])
        row_items = [it for it, _ in rows]
        is_sample = [p >= 0 for _, p in rows]
        segments = []  # (item, first row, end row): an item's samples are contiguous
        for r, it in enumerate(row_items):
            if not is_sample[r]:
                continue
            if segments and segments[-1][0] is it:
                segments[-1][2] = r + 1
            else:
                segments.append([it, r, r + 1])
        with torch.enable_grad():
            # The model gets a copy: a leaf that needs grad refuses in-place ops, and some models add to
            # their input embeddings in place (DeBERTa's before transformers 4.49). Gradients reach x.
            x_in = x.clone()
            # One (rows,) score per target, each its own graph branch where the model allows it.
            if s.task == CLASSIFICATION:
                logits = self._classifier_logits(x_in, row_items[0].token_types)  # (rows, classes)
                self._read_unperturbed(rows, logits)
                if not segments:
                    return
                cols, valid = classification_columns(self.model, logits, row_items, s.inference_mode)
                valid = valid & send(torch.tensor(is_sample), valid.device)[:, None]
            else:
                cols, valid = score_columns(self.model, s.task, x_in, row_items, s.inference_mode, self.head or None)
            early = self._reduces_early()  # each gradient reduced over hidden as it comes
            for it, _, _ in segments:
                if it.index not in stats:
                    # What the text keeps, made before its first backward: a small tensor made per target
                    # between backwards' GiB of temporaries kept the C allocator from reusing them (a
                    # 150-token SmoothGrad of a 2-layer GPT-2 held 2.3 GiB more after the call).
                    it.token_scores = torch.empty(it.n_targets, x.shape[1], dtype=torch.float64, device=x.device)
                    if s.uses_baseline and not early:
                        it.stat_total = torch.empty(it.n_targets, dtype=torch.float64, device=x.device)
                    rows_out = it.token_scores if early else [None] * it.n_targets
                    stats[it.index] = [Streaming(s.statistic, out) for out in rows_out]
            width = len(cols)
            step = s.targets_per_backward or (CUDA_TARGETS_PER_BACKWARD if x.device.type == "cuda" else 1)
            if self.loop_only:
                step = 1
            j0 = 0
            while j0 < width:
                js = range(j0, min(width, j0 + step))
                # Rows are independent, so the gradient of a column's sum is each row's own gradient.
                if len(js) == 1:
                    # torch.where, not boolean indexing: that would wait for the device.
                    f = torch.where(valid[:, j0], cols[j0], 0).sum()
                    grads = self._grad(f, x, retain_graph=js[-1] < width - 1)[None]  # (1, rows, seq, hidden)
                else:
                    grads = self._vmapped_grads(x, cols, valid, js)  # (k, rows, seq, hidden)
                    if grads is None:  # out of memory: the loop, for the rest of this call
                        self.loop_only, step = True, 1
                        continue
                for i, j in enumerate(js):
                    a = grads[i] if mult is None else grads[i] * mult  # (rows, seq, hidden)
                    if early:  # in float64, as the statistic would have reduced it
                        a = reduce_hidden(a.double(), s.token_reduction)  # (rows, seq)
                    for it, r0, r1 in segments:
                        if j < it.n_targets:
                            st = stats[it.index][j]
                            st.update(a[r0:r1])
                            if not early and st.n == s.n_samples:  # complete: kept as what the text reads
                                self._reduce_target(it, j, st.result())
                                stats[it.index][j] = None
                j0 = js[-1] + 1

    def _vmapped_grads(self, x, cols, valid, js) -> torch.Tensor | None:
        """One vmapped backward for the targets ``js``: ``(k, rows, seq, hidden)``, None if out of memory.

        The graph is always retained, so that after a failure the loop can still use it.
        """
        f = torch.stack([cols[j] for j in js], 1)  # (rows, k)
        seeds = torch.zeros(len(js), *f.shape, dtype=f.dtype, device=f.device)  # (k, rows, k)
        for i, j in enumerate(js):
            seeds[i, :, i] = valid[:, j].to(f.dtype)
        try:
            return self._grad(f, x, grad_outputs=seeds, retain_graph=True, is_grads_batched=True)
        except torch.cuda.OutOfMemoryError:
            pass
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # outside the except block, whose frame held the failed buffers
        return None

    def _grad(self, f: torch.Tensor, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The gradient of ``f`` with respect to ``x`` (``input_grad``'s keywords).

        A float16 model's backward underflows where a float32 one would not (gradients under 6e-8
        are 0, under 6e-5 lose digits): a SOFTMAX target's gradients, whole words of them, came out
        exactly 0. So its seed is scaled by ``grad_scale`` (a power of two, which changes no digit
        where nothing under- or overflows) and the gradient divided back in float32, as mixed
        precision training scales its loss; if the scaled backward overflows, the scale drops 16×
        for the rest of the call and the backward runs again.
        """
        if x.dtype != torch.float16:
            (g,) = input_grad(self.model, f, x, **kwargs)
            return g
        retain = kwargs.pop("retain_graph", False)
        seeds = kwargs.pop("grad_outputs", None)
        while True:
            scale = self.grad_scale
            scaled = {"grad_outputs": seeds * scale} if seeds is not None else {}
            (g,) = input_grad(
                self.model,
                f if seeds is not None else f * scale,
                x,
                retain_graph=retain or scale > 1,
                **scaled,
                **kwargs,
            )
            if scale == 1 or bool(torch.isfinite(g).all()):  # one host sync per backward, for float16 only
                return g.float() / scale
            self.grad_scale = max(1.0, scale / 16)

    def _read_unperturbed(self, rows, logits: torch.Tensor) -> None:
        """A classifier's prediction, f(x), log p and f(baseline), from their rows of a batch."""
        s = self.s
        clean = 0 if s.sample_is_input else CLEAN  # the row the unperturbed input's numbers come from
        extra = [(r, it, CLEAN if p == clean else p) for r, (it, p) in enumerate(rows) if p < 0 or p == clean]
        if not extra:
            return
        with torch.no_grad():
            lg = logits.detach()[[r for r, _, _ in extra]]  # (extra rows, classes)
            log_norm = class_log_norm(self.model, lg, lg)  # (extra rows, 1 or classes)
            f = apply_mode(lg, log_norm, s.inference_mode).double().cpu()
            log_p = (lg - log_norm).double().cpu()
        for k, (_, it, p) in enumerate(extra):
            if p == CLEAN:
                it.predicted = int(log_p[k].argmax())
                if not it.classes:
                    it.classes = [it.predicted]
                it.target_scores, it.target_logprobs = f[k, it.classes], log_p[k, it.classes]
                check_finite(self.model, it)
            else:
                it.baseline_scores = f[k, it.classes]

    # ------------------------------------------------------------------ result
    def _assemble(self, it: Item) -> Explanation:
        s = self.s
        token_scores = it.token_scores.cpu()  # (targets, seq)
        gap = None
        if s.uses_baseline:
            delta = (it.target_scores - it.baseline_scores).cpu()  # f(x) - f(b), per target token or class
            gap = it.stat_total.cpu() - delta
            size = torch.maximum(it.target_scores.abs(), it.baseline_scores.abs()).cpu()
        elements, spans, mapping = group_tokens(
            it.text, it.offsets, it.special, s.granularity, it.token_strings, it.hidden_spans
        )
        if s.task == CLASSIFICATION:
            scores = pool(token_scores, mapping, len(elements), s.aggregation)
            if gap is not None:
                self._note_gap(it, gap, delta, size)
            return self._explanation(it, elements, spans, scores, self._class_targets(it), gap, None, None, None)

        out_elements, out_spans, out_map = it.output_groups
        n_in, n_out = len(elements), len(out_elements)
        if s.task == CAUSAL_LM:
            n_p = it.n_prompt
            # Output token t cannot depend on output tokens t, t+1, ...: NaN, never zero.
            t_idx = torch.arange(token_scores.shape[0])[:, None]
            k_idx = torch.arange(token_scores.shape[1] - n_p)[None, :]
            token_scores[:, n_p:] = token_scores[:, n_p:].masked_fill(k_idx >= t_idx, float("nan"))
            mapping = mapping + [m + n_in if m >= 0 else -1 for m in out_map]
            cols = n_in + n_out
        else:
            cols = n_in
        scores = pool(token_scores, mapping, cols, s.aggregation)  # (out tokens, cols)
        scores = pool(scores.T, out_map, n_out, s.aggregation).T  # (out elements, cols)
        if s.task == CAUSAL_LM:
            r_idx = torch.arange(n_out)[:, None]
            c_idx = torch.arange(n_out)[None, :]
            scores[:, n_in:] = scores[:, n_in:].masked_fill(c_idx >= r_idx, float("nan"))
        targets = self._output_targets(it, out_elements, out_map)
        if gap is not None:  # an output element's: its tokens' summed (as its f is their sum)
            rows = [[t for t, m in enumerate(out_map) if m == r] for r in range(n_out)]
            gap, delta, size = (torch.stack([v[r].sum() for r in rows]) for v in (gap, delta, size))
            self._note_gap(it, gap, delta, size)
        return self._explanation(it, elements, spans, scores, targets, gap, it.output_text, out_elements, out_spans)

    def _note_gap(self, it: Item, gap: torch.Tensor, delta: torch.Tensor, size: torch.Tensor) -> None:
        """Keep the call's largest completeness gap relative to f(x) − f(baseline), by the explanation's
        rows (``worst_gap``). A gap or a difference within the model's rounding of f (bfloat16's is
        1/128 of it) says nothing about the steps, and is passed over."""
        weight = self.model.get_input_embeddings().weight
        eps = torch.finfo(weight.dtype if weight.is_floating_point() else torch.float32).eps
        rounding = 16 * eps * size.clamp_min(1.0)
        meaningful = (gap.abs() > rounding) & (delta.abs() > rounding)
        share = torch.where(meaningful, gap.abs() / delta.abs(), 0.0).nan_to_num(0.0)
        if not share.numel():
            return
        k = int(share.argmax())
        if self.worst_gap is None or float(share[k]) > self.worst_gap[0]:
            self.worst_gap = (float(share[k]), it.index, k, float(gap[k]), float(delta[k]))

    def _label(self, index: int) -> str:
        if self.id2label is None:  # read once: a config attribute costs microseconds in transformers 5
            self.id2label = dict(self.model.config.id2label or {})
        return str(self.id2label.get(index, index))

    def _class_targets(self, it: Item) -> list[Target]:
        logprobs, scores = it.target_logprobs.tolist(), it.target_scores.tolist()
        if self.regression is None:
            self.regression = regression(self.model)
        probability = [math.nan if self.regression else math.exp(lp) for lp in logprobs]
        return [Target(self._label(c), c, [], probability[k], scores[k]) for k, c in enumerate(it.classes)]

    def _output_targets(self, it: Item, out_elements: list[str], out_map: list[int]) -> list[Target]:
        """One target per output element: its tokens' probabilities multiply, their scores add."""
        logprobs, scores = it.target_logprobs.tolist(), it.target_scores.tolist()
        targets = []
        for r in range(len(out_elements)):
            toks = [t for t, m in enumerate(out_map) if m == r]
            targets.append(
                Target(
                    out_elements[r],
                    r,
                    [it.output_ids[t] for t in toks],
                    math.exp(math.fsum(logprobs[t] for t in toks)),
                    math.fsum(scores[t] for t in toks),
                )
            )
        return targets

    def _explanation(self, it, elements, spans, scores, targets, gap, out_text, out_elements, out_spans) -> Explanation:
        s = self.s
        return Explanation(
            text=str(it.text),
            elements=elements,
            spans=spans,
            scores=scores.numpy(),
            targets=targets,
            method=s.name,
            task=s.task,
            granularity=s.granularity.value,
            aggregation=s.aggregation.value,
            inference_mode=s.inference_mode.value,
            token_reduction=s.token_reduction,
            predicted=it.predicted,
            completeness_gap=None if gap is None else gap.numpy(),
            # "chat": the text is a chat template's output, holding its own special tokens (the metrics
            # must not add them again), and the spans of the messages' contents (the metrics mask those only).
            options={
                **(s.options or {}),
                **text_kind(it.text),
                # The decoder start generation was given (decoder_start_token_id=): the metrics read it back.
                **({"decoder_start_token_id": it.decoder_start} if it.decoder_start is not None else {}),
                **({"generation": it.generation} if it.generation else {}),
                # A forced output (a target): a resumed CLI run that would generate it is refused.
                **({"forced": True} if it.forced else {}),
                # truncation=True cut the text given: the characters kept (the explanation's text) of how many.
                **({"truncated": dict(it.cut)} if it.cut else {}),
            },
            output_text=out_text,
            output_elements=out_elements,
            output_spans=out_spans,
            output_ids=None if s.task == CLASSIFICATION else list(it.output_ids),
            predicted_label=None if it.predicted is None else self._label(it.predicted),
            model=self._model_name,
        )


# A float16 backward's seed scale at the start of a call: 2**12 lifts gradients of a probability
# (1e-6 and less on the bundled classifier) clear of float16's underflow, and leaves 16× headroom
# for gradients up to 1, a logit's; larger ones overflow it and fall back (Engine._grad).
FLOAT16_GRAD_SCALE = 2.0**12
READOUT_CHECK_ROWS = 4  # the rows on which a classifier's readout is compared with its full forward


def check_finite(model, it: Item) -> None:
    """Refuse a text whose target scores or log-probabilities on the unchanged input are not finite (a
    float16 model's activations overflow past 65504): every attribution would be NaN, or worse, zeros."""
    bad = ~(torch.isfinite(it.target_scores) & torch.isfinite(it.target_logprobs))
    if not bool(bad.any()):
        return
    k = int(bad.nonzero()[0, 0])
    value = (
        float(it.target_scores[k]) if not math.isfinite(float(it.target_scores[k])) else float(it.target_logprobs[k])
    )
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    fix = (
        "a float16 model's activations overflow past 65504, the largest float16: load it in bfloat16 or float32 "
        "(model.to(torch.bfloat16) or model.float())"
        if dtype == torch.float16
        else "check the model's weights for NaN or inf"
    )
    raise InterpTextError(
        f"text {it.index}: the model's output on the unchanged text is not finite ({value} for target {k}), so "
        f"nothing can be attributed to its words; {fix}."
    )


def input_grad(model, f: torch.Tensor, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor]:
    """``torch.autograd.grad(f, x)``, with a clear error for a model whose output has no gradient
    with respect to its input embeddings (a quantized model's int8 layers, a forward run under
    ``torch.no_grad()``): autograd's own error names no fix."""
    try:
        return torch.autograd.grad(f, x, **kwargs)
    except RuntimeError as err:
        message = str(err)
        if "not have been used in the graph" not in message and "does not require grad" not in message:
            raise
        raise InterpTextError(
            f"{type(model).__name__}'s output has no gradient with respect to its input embeddings (autograd: "
            f"{message.split('. ')[0]}); its layers pass none back, as a quantized model's int8 layers do. Explain it "
            "with a perturbation method (Occlusion, Lime, KernelShap, Sobol), which needs no gradient."
        ) from None


def model_name(model) -> str | None:
    """What ``model`` was loaded from: a bundled model's name, a folder's absolute path, a Hub id; None
    for a model built in memory."""
    from .bundled import NAMES, default_path

    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if not name:
        return None
    path = Path(name)
    if path.is_dir():
        path = path.resolve()
        bundled = {default_path(n).resolve(): n for n in NAMES}
        return bundled.get(path, str(path))
    return name


def json_options(options: dict) -> dict:
    """``options`` as JSON keeps them: a value JSON cannot hold as it is (a GenerationConfig, a
    tensor) becomes its settings that differ from the defaults, else its repr."""
    out = {}
    for key, value in options.items():
        try:
            out[key] = json.loads(json.dumps(value, default=_numpy_number))
        except (TypeError, ValueError):
            if hasattr(value, "to_diff_dict"):
                settings = {k: v for k, v in value.to_diff_dict().items() if k != "transformers_version"}
                out[key] = json.loads(json.dumps(settings, default=repr))
            else:
                out[key] = repr(value)[:200]
    return out


def _numpy_number(value: Any) -> Any:
    """``json.dumps``' fallback: a numpy number (``max_new_tokens=np.int64(5)``) as the number it holds."""
    number = plain(value)
    if number is value:
        raise TypeError(f"{type(value).__name__} is not a JSON value")
    return number


def text_kind(text: str) -> dict:
    """What an explanation keeps of how its text was read, so that the metrics read it the same way:
    "chat", a chat template's output (it holds its own special tokens); "text_pair_start", where the
    second text of a pair starts."""
    if isinstance(text, inp.Templated):  # the messages' contents, the only text explained (or all of it: True)
        return {"chat": True if text.contents is None else [list(span) for span in text.contents]}
    if isinstance(text, inp.TextPair):
        return {"text_pair_start": text.second_start}
    return {}


def as_read(text: str, options: dict) -> str:
    """The text an explanation explains, as ``text_kind`` said it was read."""
    chat = options.get("chat")
    if chat:
        return inp.Templated(text, None if chat is True else chat)
    start = options.get("text_pair_start")
    if start is not None:
        return inp.TextPair(text[: start - 1], text[start:])
    return text


def packed(units: list, batch_size: int, task: str, max_tokens: int | None = None) -> Iterator[list]:
    """Batches of at most ``batch_size`` units ``(item, row)`` whose items share one length.

    ``units`` come grouped by length. Each length group is cut into batches on its own, so a
    group never shares a batch with the next one (no padding) and takes ceil(rows / batch_size)
    forwards, the fewest possible. ``max_tokens``: a batch also holds at most this many token
    positions (at least one row).
    """
    start = 0
    while start < len(units):
        key = units[start][0].group_key(task)
        end = start + 1
        # A text's units are contiguous: its key is computed again only where the text changes.
        while end < len(units) and (units[end][0] is units[end - 1][0] or units[end][0].group_key(task) == key):
            end += 1
        rows = batch_size
        if max_tokens is not None:
            it = units[start][0]
            tokens = it.input_ids.shape[0] + (len(it.output_ids) if task == SEQ2SEQ else 0)  # and the decoder's
            rows = min(rows, max(1, max_tokens // tokens))
        for b in range(start, end, rows):
            yield units[b : min(b + rows, end)]
        start = end
