"""What kind of model this is, and the score f it is explained by.

Each task turns a batch of input embeddings into target scores ``(rows, targets)``. Rows of a
batch always have the same length (the engine groups them), so no padding ever enters a forward.
"""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import InterpTextError
from .options import InferenceModes

CLASSIFICATION, CAUSAL_LM, SEQ2SEQ = "classification", "causal_lm", "seq2seq"
TASK_NAMES = (CLASSIFICATION, CAUSAL_LM, SEQ2SEQ)


def detect_task(model: torch.nn.Module, task: str | None = None) -> str:
    """The task of ``model``: from its class hierarchy and config; ``task`` must agree with them.

    ``task="generation"`` means whichever of causal_lm and seq2seq the model is.
    """
    if task is not None and task not in (*TASK_NAMES, "generation"):
        raise InterpTextError(f"task={task!r} is not valid; use one of {(*TASK_NAMES, 'generation')}.")
    detected = _task_of(model)
    if detected is None:
        _refuse_other_heads(model)
    if task is None or task == detected:
        if detected is None:
            raise InterpTextError(
                f"cannot tell what {type(model).__name__} predicts; pass task='classification', 'causal_lm' or "
                "'seq2seq' to the explainer (a ...ForSequenceClassification, ...ForCausalLM or "
                "...ForConditionalGeneration model is detected by itself)."
            )
        return detected
    if task == "generation":
        if detected in (CAUSAL_LM, SEQ2SEQ):
            return detected
        if detected is None:
            raise InterpTextError(
                f"cannot tell whether {type(model).__name__} is a causal or a seq2seq LM; pass task='causal_lm' "
                "or 'seq2seq'."
            )
    if detected is None:  # a model class this library does not recognise: the user says what it is
        return task
    raise InterpTextError(
        f"task={task!r} does not fit {type(model).__name__}, a {detected} model; leave task unset "
        f"(or pass task={detected!r})."
    )


# Hugging Face heads that score no class of the whole text and no next token.
_OTHER_HEADS = {
    "ForMaskedLM": "a masked LM",
    "ForTokenClassification": "a token classifier",
    "ForQuestionAnswering": "a question-answering model",
    "ForMultipleChoice": "a multiple-choice model",
    "ForPreTraining": "a pre-training model",
    "ForNextSentencePrediction": "a next-sentence model",
}


def _refuse_other_heads(model: torch.nn.Module) -> None:
    """A transformers model without a head this library reads (a base model, a masked LM...):
    ``task=`` cannot make one, so it is refused, with the way to load the head the user means."""
    cls = type(unwrapped(model))
    if not cls.__module__.startswith("transformers."):
        return  # the user's own class: task= says what it is
    kind = next((what for suffix, what in _OTHER_HEADS.items() if cls.__name__.endswith(suffix)), None)
    get_head = getattr(unwrapped(model), "get_output_embeddings", None)
    if kind is None and cls.__name__.endswith("Model") and callable(get_head) and get_head() is None:
        kind = "a base model without a head"  # (an LM head under another name, OpenAIGPTDoubleHeadsModel, passes)
    if kind is None:
        return
    raise InterpTextError(
        f"{cls.__name__} is {kind}: it scores no class of the text and no next token, whatever task= says. "
        "Load the checkpoint with the head to explain (AutoModelForSequenceClassification, AutoModelForCausalLM "
        "or AutoModelForSeq2SeqLM .from_pretrained(...)), or pass its folder or name with task= to load it so."
    )


def _task_of(model: torch.nn.Module) -> str | None:
    model = unwrapped(model)  # torch.compile's or PEFT's wrapper: the model it runs
    return task_of_class(type(model), getattr(model, "config", None), getattr(model, "can_generate", None))


def task_of_class(cls: type, config: Any, can_generate: Any = None) -> str | None:
    """The task of a model class with this config, or None when it has no head this library explains.

    ``can_generate``: the model's own (a wrapper forwards it); default: the class's.
    """
    names = [c.__name__ for c in cls.__mro__]
    if any(n.endswith("ForSequenceClassification") for n in names):
        return CLASSIFICATION
    can_generate = can_generate if can_generate is not None else getattr(cls, "can_generate", None)
    # transformers before 4.50 said a masked LM (BertForMaskedLM) can generate: it reads both ways.
    if callable(can_generate) and can_generate() and not any(n.endswith("ForMaskedLM") for n in names):
        # Any Hugging Face model with a generation head, whatever its class name: MarianMTModel,
        # a vision-language ...ForConditionalGeneration read as text only (Gemma 3, LLaVA).
        return SEQ2SEQ if getattr(config, "is_encoder_decoder", False) else CAUSAL_LM
    if getattr(config, "is_encoder_decoder", False) and any(
        n.endswith(("ForConditionalGeneration", "ForSeq2SeqLM")) or n == "EncoderDecoderModel" for n in names
    ):
        return SEQ2SEQ
    if any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names):
        return CAUSAL_LM
    return None


def check_accepts_embeddings(model: torch.nn.Module) -> None:
    embeddings = getattr(model, "get_input_embeddings", None)
    if not callable(embeddings):
        inner = getattr(model, "module", None)  # DataParallel, DistributedDataParallel
        fix = (
            f"pass the model it wraps (model.module, a {type(inner).__name__})"
            if isinstance(inner, torch.nn.Module)
            else "pass the Hugging Face model itself (a PreTrainedModel), or give the wrapper its config and "
            "get_input_embeddings()"
        )
        raise InterpTextError(
            f"{type(model).__name__} is not a Hugging Face model (it has no get_input_embeddings()): {fix}."
        )
    params = inspect.signature(model.forward).parameters
    if "inputs_embeds" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise InterpTextError(
            f"{type(model).__name__}.forward does not take `inputs_embeds`; gradient methods perturb "
            "input embeddings, so the model's forward must accept them."
        )
    ids = params.get("input_ids")
    if ids is not None and ids.default is inspect.Parameter.empty and ids.kind != ids.KEYWORD_ONLY:
        raise InterpTextError(  # FSMT's, in transformers 4
            f"{type(model).__name__}.forward requires input_ids, so it cannot be given embeddings alone, and "
            "interp_text feeds every model its (perturbed) input embeddings; a newer transformers may make "
            "input_ids optional."
        )
    if embeddings() is None:
        raise InterpTextError(f"{type(model).__name__} has no input embeddings (get_input_embeddings() is None).")


_FORWARD_PARAMETERS: dict = {}


def send(t: torch.Tensor, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` (on the CPU) on ``device``, without waiting for the work already queued there.

    A copy from ordinary (pageable) memory to a GPU first waits for everything queued on it; from
    pinned memory it is queued like a kernel. ``pin_memory`` reuses cached pinned blocks.
    """
    if torch.device(device).type == "cuda":
        t = t.pin_memory()
    return t.to(device, dtype, non_blocking=True)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model a wrapper runs: torch.compile's ``_orig_mod``, a PEFT model's ``get_base_model()``."""
    for _ in range(4):  # a compiled PEFT model is two wrappers deep
        inner = getattr(model, "_orig_mod", None)
        if inner is None and callable(getattr(model, "get_base_model", None)):
            inner = model.get_base_model()
        if not isinstance(inner, torch.nn.Module) or inner is model:
            break
        model = inner
    return model


def _parameters(model: torch.nn.Module) -> frozenset:
    """The keywords ``model.forward`` names, and "**" if it takes others (cached per forward function)."""

    def read() -> frozenset:
        params = inspect.signature(model.forward).parameters.values()
        return frozenset(p.name for p in params) | ({"**"} if any(p.kind == p.VAR_KEYWORD for p in params) else set())

    forward = getattr(model.forward, "__func__", None)
    if forward is None:  # not a plain method: no cache
        return read()
    if forward not in _FORWARD_PARAMETERS:
        _FORWARD_PARAMETERS[forward] = read()
    return _FORWARD_PARAMETERS[forward]


def accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether ``model.forward`` names a keyword ``name``."""
    return name in _parameters(model)


def no_cache(model: torch.nn.Module) -> dict:
    """``use_cache=False`` for a forward that takes it (by name or ``**kwargs``); none for one that does
    not (OpenAI GPT's before transformers 5)."""
    params = _parameters(unwrapped(model))
    return {"use_cache": False} if "use_cache" in params or "**" in params else {}


@dataclass
class Item:
    """One text, tokenized, with its targets: the unit the engine explains."""

    index: int
    text: str
    input_ids: torch.Tensor  # (seq,) the model input: tokens; for causal LMs prompt + output
    offsets: list[tuple[int, int]]  # per prompt token, into text
    special: list[bool]  # per prompt token
    token_strings: list[str]  # per prompt token
    classes: list[int] = field(default_factory=list)  # classification targets
    output_ids: list[int] = field(default_factory=list)  # generation targets
    output_text: str = ""
    output_offsets: list[tuple[int, int]] = field(default_factory=list)  # per output token
    output_special: list[bool] = field(default_factory=list)
    output_groups: tuple | None = None  # group_tokens of the output: (elements, spans, token -> element)
    token_types: tuple[int, ...] | None = None  # a text pair's token type ids, when the model reads them
    hidden_spans: list[tuple[int, int]] = field(default_factory=list)  # text of tokens dropped from the input
    decoder_start: int | None = None  # seq2seq: the decoder start token generation began with
    generation: dict | None = None  # the explain() options its output was generated with (JSON)
    forced: bool = False  # its output was given (a target), not generated
    forced_text: str | None = None  # that output, when given as text
    cut: dict | None = None  # truncation=True cut it: {"start", "end", "of"}, characters of the text given
    embeds: torch.Tensor | None = None  # (seq, hidden)
    # Filled by the clean pass (unperturbed input):
    predicted: int | None = None
    target_scores: torch.Tensor | None = None  # (targets,) f(x)
    target_logprobs: torch.Tensor | None = None  # (targets,)
    baseline: torch.Tensor | None = None  # (seq, hidden) IG / GradientShap baseline
    baseline_scores: torch.Tensor | None = None  # (targets,) f(baseline)
    token_scores: torch.Tensor | None = None  # (targets, seq) the method's statistic, reduced over hidden
    stat_total: torch.Tensor | None = None  # (targets,) its signed sum over tokens and hidden (completeness)

    @property
    def n_prompt(self) -> int:
        return len(self.offsets)

    @property
    def n_targets(self) -> int:
        return len(self.classes) if self.classes else len(self.output_ids)

    def group_key(self, task: str) -> tuple[int, ...]:
        if task == SEQ2SEQ:
            return (self.input_ids.shape[0], len(self.output_ids))
        if self.token_types is not None:  # a batch's rows share their token types
            return (self.input_ids.shape[0], *self.token_types)
        return (self.input_ids.shape[0],)


_READS_IDS: weakref.WeakSet = weakref.WeakSet()  # classifiers that refuse inputs_embeds

# Per model, the factor its forward applies to embeddings read from token ids but not to inputs_embeds
# (see input_scale_candidates), once found by Engine._check_input_scale; 1 for most models.
INPUT_SCALES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def input_scale_candidates(model) -> list[float]:
    """Factors other than 1 a model may apply to its input embeddings on the ids path alone: the
    embed_scale (√d with scale_embedding) of Pegasus', Marian's, BlenderbotSmall's and MVP's
    encoders, FalconH1's embedding_multiplier. Read from the modules that hold the input embeddings;
    whether the factor applies to inputs_embeds too is for a forward to tell."""
    emb = model.get_input_embeddings()
    found: list[float] = []
    for m in model.modules():
        own = getattr(m, "embed_tokens", None)
        if own is not emb and getattr(own, "weight", None) is not getattr(emb, "weight", emb):
            continue  # (an encoder's own module may hold the shared, tied weight)
        for name in ("embed_scale", "embedding_multiplier"):
            value = getattr(m, name, None)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value != 1 and value not in found:
                found.append(float(value))
    return found


def resolve_input_scale(
    model, ids: torch.Tensor, decoder_ids: torch.Tensor | None = None, token_types: tuple | None = None
) -> float:
    """The factor of ``INPUT_SCALES`` for ``model``, found once from the forwards of ``ids`` ``(1, seq)``
    (and an encoder-decoder's ``decoder_ids``) on ids and on embeddings, among 1 and the factors it
    holds (``input_scale_candidates``); a model that holds none is taken as 1 without a forward.
    A model that matches none is refused."""
    if model in INPUT_SCALES:
        return INPUT_SCALES[model]
    candidates = input_scale_candidates(model)
    if not candidates:
        INPUT_SCALES[model] = 1.0
        return 1.0
    kwargs = {} if decoder_ids is None else {"decoder_input_ids": decoder_ids}
    if token_types is not None:
        kwargs["token_type_ids"] = torch.tensor([token_types], device=ids.device)
    scales, gaps = (1.0, *candidates), []
    with torch.inference_mode():
        own = model(input_ids=ids, **kwargs).logits.double()
        x = model.get_input_embeddings()(ids)
        for scale in scales:
            try:
                got = model(inputs_embeds=x * scale, **kwargs).logits.double()
            except NotImplementedError:  # a classifier that reads its ids (MVP's, BART's): embeddings never go in
                INPUT_SCALES[model] = 1.0
                return 1.0
            # Equal infinities (a logit a wrapper masks to -inf) agree; a NaN never does.
            diff = torch.where(got == own, 0.0, (got - own).abs()).nan_to_num(nan=math.inf)
            gaps.append(float(diff.max()))
    # The closest, not the first close enough: a small random model's outputs may hardly move with the scale.
    best = min(range(len(scales)), key=gaps.__getitem__)
    finite = own[own.isfinite()]
    if gaps[best] <= 1e-3 * (float(finite.abs().max()) if finite.numel() else 0.0) + 1e-3:
        INPUT_SCALES[model] = scales[best]
        return scales[best]
    raise InterpTextError(
        f"{type(model).__name__} gives other outputs for embeddings than for the token ids they embed (by up to "
        f"{min(gaps):.3g} in logits, with each scale it holds tried: {[1.0, *candidates]}), and interp_text explains "
        "it through its embeddings: its scores would not be this model's. Please report the model."
    )


DECODERS_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_causal_decoder(model, ids: torch.Tensor, start: int) -> None:
    """Refuse an encoder-decoder whose decoder, in the forward interp_text makes (embeddings in, one
    teacher-forced pass), lets a position see the decoder inputs after it: the outputs would not be
    scored as ``generate()`` scores them. transformers' FSMT builds its causal mask from input ids
    only, so given embeddings it has none. Checked once per model: the first position of two
    decoder rows that differ in their second input only, and of a decoder of one input (what
    ``generate()`` reads there), must agree. ``ids``: an input ``(1, seq)``."""
    if model in DECODERS_CHECKED:
        return
    avoid = {start}
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(model.config, key, None)
        avoid.update(value if isinstance(value, (list, tuple)) else [value])  # eos may be several ids
    a, b = [t for t in range(len(avoid) + 2) if t not in avoid][:2]  # no pad token: it may be masked out
    # One row per forward: rows of a batch may share more than attention (a mixture of experts'
    # capacity, in Switch Transformers), which is not what this asks.
    rows, kwargs = ([start, a], [start, b], [start]), no_cache(model)
    with torch.inference_mode():
        x = embed(model, ids)
        logits = torch.cat(
            [
                model(inputs_embeds=x, decoder_input_ids=torch.tensor([r], device=ids.device), **kwargs).logits[:, 0]
                for r in rows
            ]
        ).double()  # (3, vocab): position 0, three ways
    half = x.dtype in (torch.float16, torch.bfloat16)
    finite = logits[logits.isfinite()]
    scale = 1.0 + (float(finite.abs().max()) if finite.numel() else 0.0)
    same = logits == logits[:1]  # equal infinities agree
    gaps = torch.where(same, 0.0, (logits - logits[:1]).abs()).nan_to_num(nan=math.inf).amax(1)  # (3,)
    # Rows of one length agree exactly in every family checked, half precision included; a row one
    # input shorter runs other matrix shapes, which round otherwise (ProphetNet's: 2e-4 here).
    if gaps[1] > (1e-3 if half else 1e-4) * scale or gaps[2] > 1e-2 * scale:
        raise InterpTextError(
            f"{type(model).__name__}'s decoder lets each output position see the output tokens after it in the "
            f"forward interp_text makes (embeddings in, all outputs at once): its first position's logits moved by "
            f"{float(gaps.max()):.3g} with the decoder inputs after it (their tokens, or how many there are), so no "
            "score would be what generate() reads there. "
            "transformers' FSMT does this (it builds its causal mask from input ids only), and Switch Transformers in "
            "transformers 4; such a model cannot be explained here."
        )
    DECODERS_CHECKED[model] = True


def embed(model, ids: torch.Tensor) -> torch.Tensor:
    """The embeddings the model reads for ``ids``, as its forward on ids computes them."""
    x = model.get_input_embeddings()(ids)
    scale = INPUT_SCALES.get(model, 1.0)
    return x if scale == 1.0 else x * scale


def reads_ids_only(model) -> bool:
    """Whether ``model`` was found to refuse ``inputs_embeds`` (see ``classification_logits``)."""
    return model in _READS_IDS


def classification_logits(
    model,
    embeds: torch.Tensor,
    token_types: tuple[int, ...] | None = None,
    ids: Callable | None = None,
    readout: Any = None,
) -> torch.Tensor:
    """The logits of rows that share their token types (``Item.token_types``; None: the model's default).

    ``ids``: a function giving the rows' token ids ``(rows, seq)``, masked as ``embeds`` are, for a
    classifier that refuses ``inputs_embeds`` because it reads its ids (BART's finds its
    end-of-sentence tokens in them, and feeds them to its decoder too): it gets the ids instead.
    ``readout``: a checked ``readout.Readout``, which runs the last layer at the read position only.
    """
    if readout is not None:
        with readout.active():
            return classification_logits(model, embeds, token_types, ids)
    kwargs = {}
    if token_types is not None:
        kwargs["token_type_ids"] = send(torch.tensor(token_types), embeds.device)[None].expand(embeds.shape[0], -1)
    if accepts(unwrapped(model), "global_attention_mask"):
        # Longformer's classifiers build this from their ids (global attention on the first token);
        # given embeddings they have none to build it from.
        kwargs["global_attention_mask"] = global_first_token(embeds)
    if model not in _READS_IDS:
        try:
            # Rows are never padded, so no attention mask: an all-ones mask means the same and costs time.
            return model(inputs_embeds=embeds, **kwargs).logits  # (rows, classes)
        except NotImplementedError as err:
            message = str(err).lower()
            if "input embeddings" not in message and "inputs_embeds" not in message:  # another limit (an op
                raise  # on this device, "embedding_dense_backward"): not this one
            _READS_IDS.add(model)
    if ids is None:
        raise InterpTextError(
            f"{type(model).__name__} does not take inputs_embeds (it reads its token ids), so no embedding can be "
            "perturbed: explain it with a perturbation method (Occlusion, Lime, KernelShap, Sobol) and a replacement "
            "token (the default; not replacement='zeros')."
        )
    rows = ids()
    try:
        return model(input_ids=rows, **kwargs).logits
    except (ValueError, IndexError) as err:
        eos = getattr(model.config, "eos_token_id", None)
        missing = isinstance(eos, int) and not bool((rows == eos).any())
        # transformers 5 says "eos"; 4 fails to index the end tokens of a row that has none.
        if "eos" not in str(err).lower() and not (isinstance(err, IndexError) and missing):
            raise
        reads = f"{type(model).__name__} reads its output at the end-of-sentence tokens (id {eos}) of its ids"
        if missing:
            raise InterpTextError(
                f"{reads}, and the tokenizer wrote none in this text: use the tokenizer the model was trained with "
                f"({err})"
            ) from None
        raise InterpTextError(
            f"{reads}, and needs as many in every row; masking changed their number: either the replacement token is "
            "that token (often the pad token too: pass replacement='unk', 'mask' or another token id), or the text holds "
            f"it typed in it (remove it from the text) ({err})"
        ) from None


def global_first_token(embeds: torch.Tensor) -> torch.Tensor:
    """``(rows, seq)`` long: global attention on the first token only, as Longformer's classifier
    sets it from its ids when it is given none."""
    mask = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    mask[:, 0] = 1
    return mask


def target_scores(
    model, task: str, embeds: torch.Tensor, items: list[Item], mode: InferenceModes, head: tuple | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores f of each row's targets under the inference mode.

    Args:
        embeds: ``(rows, seq, hidden)``, all rows of one length.
        items: the item of each row.
        mode: the inference mode applied to the target's logit.
        head: causal LMs: ``(base model, LM head, LogitMap)`` (``split_head``, ``logit_map``), checked
            to give the model's own logits; scores each target from its own position's branch.

    Returns:
        ``(scores, valid)``, both ``(rows, max targets)``; ``valid`` is False where a row has
        fewer targets than the widest row.
    """
    normaliser = mode != InferenceModes.LOGITS
    chosen, log_norm, valid = target_logits(model, task, embeds, items, normaliser=normaliser, head=head)
    return apply_mode(chosen, log_norm, mode), valid


def apply_mode(chosen: torch.Tensor, log_norm: torch.Tensor | None, mode: InferenceModes) -> torch.Tensor:
    """The logit, probability or log-probability from a target logit and its log normaliser."""
    if mode == InferenceModes.LOGITS:
        return chosen
    log_prob = chosen - log_norm
    return log_prob.exp() if mode == InferenceModes.SOFTMAX else log_prob


def split_head(model, task: str = CAUSAL_LM) -> tuple | None:
    """``(base model, linear LM head)`` of a causal LM, ``(None, linear LM head)`` of an
    encoder-decoder (whose head's input ``head_input`` reads), or None if it has no such split."""
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return None
    if task == SEQ2SEQ:
        return None, head
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return None
    return base, head


@dataclass(frozen=True)
class LogitMap:
    """What a generator does to its LM head's output z to make its logits, in the model's dtype and
    order: ``z + add`` (a vector over the vocabulary: BART's and Marian's ``final_logits_bias``), then
    ``z * multiply / divide``, then, with a soft-cap c, ``tanh(z / c) * c``. Most models: nothing.
    Gemma 2 soft-caps (``final_logit_softcapping``), Cohere multiplies (``logit_scale``), Granite
    divides (``logits_scaling``)."""

    multiply: float | None = None
    divide: float | None = None
    cap: float | None = None
    add: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (1, vocab)

    def __call__(self, z: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of head outputs ``z``: ``(..., vocab)``, or with ``ids`` the entries at those ids."""
        if self.add is not None:
            z = z + (self.add if ids is None else self.add.reshape(-1)[ids])
        if self.multiply is not None:
            z = z * self.multiply
        if self.divide is not None:
            z = z / self.divide
        if self.cap is not None:
            z = torch.tanh(z / self.cap) * self.cap
        return z


# Config values that models apply to their LM head's output: candidates for a LogitMap's numbers.
LOGIT_SCALES = ("logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier", "output_logits_scaling")
LOGIT_CAPS = ("final_logit_softcapping",)


def _config_numbers(model, names: tuple[str, ...]) -> list[float]:
    """The values of ``names`` in the model's config (and text config), and as the model's own
    attributes (Cohere multiplies by ``model.logit_scale``, a copy of the config's)."""
    configs = [model.config, unwrapped(model)]
    text = getattr(model.config, "get_text_config", None)
    if callable(text) and text() is not model.config:
        configs.append(text())
    found = [getattr(c, n, None) for c in configs for n in names]
    return list(dict.fromkeys(float(v) for v in found if isinstance(v, (int, float)) and not isinstance(v, bool) and v))


def head_key(model) -> tuple:
    """What a checked LM-head split depends on: the base model and head, the numbers a logit map
    reads (config values, and the model's own copies), the ``final_logits_bias`` tensor, and the
    hooks on the model and its head (a user's temperature hook changes the logits). A hook whose
    own behaviour changes from call to call is not seen."""
    head = model.get_output_embeddings()
    hooks = tuple(  # their handles' ids, never reused: one hook swapped for another is a change
        tuple(getattr(m, name, {}).keys())
        for m in (model, unwrapped(model), head)
        for name in ("_forward_hooks", "_forward_pre_hooks")
        if isinstance(m, torch.nn.Module)
    )
    bias = getattr(unwrapped(model), "final_logits_bias", None)
    numbers = tuple(_config_numbers(model, LOGIT_SCALES + LOGIT_CAPS)) if hasattr(model, "config") else ()
    return (id(getattr(model, "base_model", None)), id(head), numbers, id(bias), hooks)


class HeadNotReached(Exception):
    """The model's forward never called its LM head as a module (it reads the head's weight itself)."""


class _HeadReached(Exception):
    """Raised by a forward pre-hook on the LM head: the model has run up to it."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def head_input(lm_head: torch.nn.Module, run: Callable[[], Any]) -> torch.Tensor | None:
    """The hidden states the LM head reads when ``run()`` calls the model, with their graph.

    The model runs up to its head and stops there (a forward pre-hook raises, and is removed), so
    no vocabulary logits are made. Whatever the model does to its decoder's states before its head
    (T5 scales them) is in them. None if the head was never called.
    """

    def stop(module, args):
        raise _HeadReached(args[0])

    handle = lm_head.register_forward_pre_hook(stop)
    try:
        run()
    except _HeadReached as reached:
        return reached.hidden
    finally:
        handle.remove()
    return None


def logit_map(model, lm_head, h: torch.Tensor, run: Callable[[], Any]) -> LogitMap | None:
    """The model's own map from its LM head's output to its logits, read off the model itself.

    ``h`` ``(hidden,)`` is a hidden state the head reads; ``run()`` calls the model on one row whose
    last 5 hidden states the head reads (a causal LM's 5 positions, a decoder's 5 inputs). Those
    5 states are swapped at the head's input (a hook, removed after) for multiples of h whose head outputs z span |z| from 0.01 to 1000, and the model's
    logits y compared with each candidate map of z, built from the config's numbers
    (``LOGIT_SCALES``, ``LOGIT_CAPS``) and the model's ``final_logits_bias``: a soft-cap or scale is
    thus seen whatever the size of the model's own logits (a tiny model's are far below any cap),
    and a map with a wrong number or direction is told apart. None: no candidate gives y (the model
    does something else to its logits).
    """
    with torch.no_grad():
        z = lm_head(h)
        if lm_head.bias is not None:
            z = z - lm_head.bias
        size = float(z.float().abs().max())
        if not math.isfinite(size) or size == 0.0:
            return None
        sizes = torch.tensor([0.01, 1.0, 10.0, 100.0, 1000.0], dtype=torch.float32) / size
        swapped = (h.float()[None] * sizes[:, None]).to(h.dtype)[None]  # (1, 5, hidden)

        def swap(module, args):
            return (swapped, *args[1:])

        handle = lm_head.register_forward_pre_hook(swap)
        try:
            y = run().logits[0, -5:]  # (5, vocab)
        finally:
            handle.remove()
        z = lm_head(swapped[0])  # (5, vocab)
        scales = _config_numbers(model, LOGIT_SCALES)
        ways = [LogitMap()] + [LogitMap(multiply=v) for v in scales] + [LogitMap(divide=v) for v in scales]
        ways += [LogitMap(w.multiply, w.divide, cap) for cap in _config_numbers(model, LOGIT_CAPS) for w in list(ways)]
        bias = getattr(unwrapped(model), "final_logits_bias", None)
        if isinstance(bias, torch.Tensor) and bias.shape[-1] == z.shape[-1]:
            bias = bias.reshape(1, -1).to(z.device)
            ways = [LogitMap(w.multiply, w.divide, w.cap, bias) for w in ways] + ways
        tol = 8 * torch.finfo(y.dtype).eps if y.is_floating_point() else 0.0
        y = y.float()
        for way in ways:
            if torch.allclose(way(z).float(), y, rtol=tol, atol=tol * max(1.0, float(y.abs().max()))):
                return way
    return None


def score_columns(
    model, task: str, embeds: torch.Tensor, items: list[Item], mode: InferenceModes, head: tuple | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``target_scores`` as one ``(rows,)`` tensor per target, each from its own graph branch.

    With the per-position LM head, target t's logit and normaliser are separate nodes: a backward
    from target t then never runs the other positions' LM-head backward (a stacked tensor would
    send zero gradients through every branch, and autograd would compute them all).
    """
    normaliser = mode != InferenceModes.LOGITS
    chosen, log_norm, valid = target_logits(model, task, embeds, items, normaliser, head, stacked=False)
    if isinstance(chosen, list):
        return [apply_mode(c, log_norm[j] if log_norm else None, mode) for j, c in enumerate(chosen)], valid
    f = apply_mode(chosen, log_norm, mode)
    return [f[:, j] for j in range(f.shape[1])], valid


@dataclass
class Table:
    """What each row of a batch is scored on, on the batch's device."""

    valid: torch.Tensor  # (rows, width) bool: False past a row's own targets
    target_ids: torch.Tensor  # (rows, width) the target classes or output tokens
    start: torch.Tensor  # (rows,) causal LMs: the position whose logits predict the first output
    decoder_in: torch.Tensor | None  # (rows, out) seq2seq: the teacher-forced decoder inputs

    def __getitem__(self, rows: slice) -> Table:
        d = None if self.decoder_in is None else self.decoder_in[rows]
        return Table(self.valid[rows], self.target_ids[rows], self.start[rows], d)


def text_table(model, task: str, texts: list[Item]) -> torch.Tensor:
    """``(texts, 2·width + 1 [+ out])`` int64 on the CPU, one row per text, read by ``table_rows``."""
    width = max(it.n_targets for it in texts)
    out = len(texts[0].output_ids) if task == SEQ2SEQ else 0  # one length per group
    table = torch.zeros(len(texts), 2 * width + 1 + out, dtype=torch.long)
    for k, it in enumerate(texts):
        table[k, : it.n_targets] = 1
        table[k, width : width + it.n_targets] = torch.tensor(it.classes or it.output_ids)
        table[k, 2 * width] = it.n_prompt - 1
        if out:
            table[k, 2 * width + 1 :] = decoder_inputs(model, it)
    return table


def target_table(model, task: str, items: list[Item], dev) -> Table:
    """The ``Table`` of a batch's rows (``items``: the item of each row), sent in one copy."""
    row_of: dict[int, int] = {}
    which = torch.tensor([row_of.setdefault(id(it), len(row_of)) for it in items])  # (rows,)
    distinct = list({id(it): it for it in items}.values())
    # A batch holds many rows of few texts: build each text's row once, then index.
    rows = text_table(model, task, distinct)[which]
    return table_rows(send(rows, dev), max(it.n_targets for it in distinct))


def table_rows(rows: torch.Tensor, width: int) -> Table:
    """``text_table`` rows (indexed to a batch's rows, on its device) as a ``Table``."""
    # Contiguous: a model may flatten its decoder inputs with .view.
    d = rows[:, 2 * width + 1 :].contiguous() if rows.shape[1] > 2 * width + 1 else None
    return Table(rows[:, :width].bool(), rows[:, width : 2 * width], rows[:, 2 * width], d)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits summed in float32; float64 ones stay float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def multi_label(model) -> bool:
    """A classifier whose classes are independent yes/no decisions (a sigmoid each), not one softmax."""
    return getattr(model.config, "problem_type", None) == "multi_label_classification"


def regression(model) -> bool:
    """A regression model, which has no probability, by Hugging Face's convention: ``problem_type="regression"``,
    or one output that is not a sigmoid (``num_labels == 1`` without a multi-label ``problem_type``)."""
    config = model.config
    if getattr(config, "problem_type", None) == "regression":
        return True
    return int(getattr(config, "num_labels", 2)) == 1 and not multi_label(model)


def class_log_norm(model, logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The log normaliser of the chosen class logits: ``chosen - it`` is the log-probability.

    A softmax classifier: log Σ exp over every class, ``(rows, 1)``. A multi-label classifier
    (``config.problem_type == "multi_label_classification"``, one sigmoid per class):
    log(1 + e^logit) of each chosen logit, so SOFTMAX means its sigmoid. Shape of ``chosen``.
    At least float32, so that a half-precision model's probabilities are not rounded a second time.
    """
    if multi_label(model):
        return torch.nn.functional.softplus(at_least_float32(chosen))
    return torch.logsumexp(at_least_float32(logits), -1, keepdim=True)


def class_targets(
    model, logits: torch.Tensor, target_ids: torch.Tensor, normaliser: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The target classes' logits ``(rows, width)`` and, if asked, their log normaliser, read from the
    logits in at least float32 (see target_logits: a half-precision gradient of p would be rounded)."""
    logits = at_least_float32(logits)
    chosen = logits.gather(1, target_ids)
    return chosen, class_log_norm(model, logits, chosen) if normaliser else None


def classification_columns(
    model, logits: torch.Tensor, items: list[Item], mode: InferenceModes
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``score_columns`` of a classifier from logits already computed: ``(rows, classes)``."""
    t = target_table(model, CLASSIFICATION, items, logits.device)
    chosen, log_norm = class_targets(model, logits, t.target_ids, mode != InferenceModes.LOGITS)
    valid = t.valid
    f = apply_mode(chosen, log_norm, mode)
    return [f[:, j] for j in range(f.shape[1])], valid


def target_logits(
    model,
    task: str,
    embeds: torch.Tensor,
    items: list[Item],
    normaliser: bool = True,
    head: tuple | None = None,
    stacked: bool = True,
    past: Any = None,
    offset: int = 0,
    table: Table | None = None,
) -> tuple[torch.Tensor, torch.Tensor | list | None, torch.Tensor]:
    """The target logits ``(rows, width)``, their log-softmax normalisers (if asked) and validity.

    With ``head``, a normaliser and ``stacked=False`` the target logits and normalisers are lists of
    ``(rows,)`` tensors, one per target, for ``score_columns``. Causal LMs only: ``past`` is the model's cache of the
    first ``offset`` positions, and ``embeds`` the positions after them. ``table``: the rows'
    ``Table`` if already on the device (else built from ``items``).
    """
    dev = embeds.device
    table = table if table is not None else target_table(model, task, items, dev)
    valid, target_ids = table.valid, table.target_ids
    if task == CLASSIFICATION:
        logits = classification_logits(model, embeds, items[0].token_types)
        return (*class_targets(model, logits, target_ids, normaliser), valid)

    if head is not None and task == CAUSAL_LM and past is None:
        return _causal_by_position(head, embeds, table, normaliser, stacked)
    run, scored = _generator_call(model, task, embeds, items, table, past, offset)
    if head is not None:
        return _by_position(head, scored(head_input(head[1], run)), table, normaliser, stacked)
    logits = scored(run().logits)  # (rows, width, vocab)
    # A half-precision model's logits in float32 before the target is read: the gradient of log p,
    # one-hot − p, is a difference of numbers near 1 for a confident target, which float16 rounds.
    logits = at_least_float32(logits)
    chosen = logits.gather(2, target_ids[..., None])[..., 0]  # (rows, width)
    # The normaliser only at the scored positions, never over the whole sequence.
    log_norm = torch.logsumexp(logits, dim=-1) if normaliser else None
    return chosen, log_norm, valid


def _generator_call(
    model, task: str, embeds: torch.Tensor, items: list[Item], table: Table, past: Any = None, offset: int = 0
) -> tuple[Callable[[], Any], Callable[[torch.Tensor], torch.Tensor]]:
    """``(run, scored)``: ``run()`` calls a generator on rows (teacher-forced), and ``scored(x)`` takes,
    of what it gives along the positions (``(rows, positions, ...)``: its logits, or the states its
    LM head reads), the ``(rows, width, ...)`` at each row's targets. An encoder-decoder's every
    decoder position is a target. A causal LM's position p predicts token p + 1, so a row's targets
    start at its prompt length - 1, and only the positions from the group's first on reach the head
    (``logits_to_keep``, where the model takes it). ``past``: the cache of the first ``offset``
    positions (``embeds`` are the positions after them).
    """
    width = table.valid.shape[1]  # a length group's widest output: maybe more than these rows have
    if task == SEQ2SEQ:
        return (
            lambda: model(inputs_embeds=embeds, decoder_input_ids=table.decoder_in, **no_cache(model)),
            lambda x: x[:, :width],
        )
    seq = offset + embeds.shape[1]
    first = min(it.n_prompt for it in items) - 1
    kwargs = no_cache(model) if past is None else {"use_cache": True, "past_key_values": past}
    if accepts(unwrapped(model), "logits_to_keep"):  # a wrapper passes it on by **kwargs
        kwargs["logits_to_keep"] = seq - first  # only the scored positions reach the LM head

    def scored(x: torch.Tensor) -> torch.Tensor:
        x = x[:, x.shape[1] - (seq - first) :]  # (rows, seq - first, ...)
        if all(it.n_prompt == first + 1 for it in items) and x.shape[1] >= width:
            return x[:, :width]  # a view: one prompt length, scored positions lead
        pos = _target_positions(table, -first)  # each row's own positions: a gather copies
        return x.gather(1, pos[..., None].expand(-1, -1, x.shape[-1]))

    return lambda: model(inputs_embeds=embeds, **kwargs), scored


def head_targets(
    model,
    task: str,
    embeds: torch.Tensor,
    items: list[Item],
    head: tuple,
    normalised: torch.Tensor,
    past: Any = None,
    offset: int = 0,
    table: Table | None = None,
    logits_bytes: int = 2**28,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``target_logits`` of a generator, without gradients, made where they are read: each row's
    target logits as ``W[y] · h (+ b)``, mapped (``LogitMap``), from the states its LM head reads
    (``head_input``), and the vocabulary's normaliser only where ``normalised`` ``(rows, width)``
    says (NaN elsewhere; their logits made ``logits_bytes`` of float32 at a time). ``head``:
    ``(base, plain Linear head, LogitMap)``, checked (``Engine._checked_head``). A perturbation explainer in LOGITS reads a normaliser for its
    unperturbed rows only; the whole-logits path made rows × positions × vocabulary logits for all
    of them (a 128 256-token vocabulary: two thirds of KernelShap's time).
    """
    _, lm_head, logits_of = head
    table = table if table is not None else target_table(model, task, items, embeds.device)
    valid, target_ids = table.valid, table.target_ids
    run, scored = _generator_call(model, task, embeds, items, table, past, offset)
    h = head_input(lm_head, run)
    if h is None:
        raise HeadNotReached
    h = scored(h)  # (rows, width, hidden)
    # The product in float32, then rounded to the model's dtype, as its head's matrix product does.
    chosen = (h.float() * lm_head.weight[target_ids].float()).sum(-1)
    if lm_head.bias is not None:
        chosen = chosen + lm_head.bias[target_ids].float()
    chosen = at_least_float32(logits_of(chosen.to(h.dtype), target_ids))  # (rows, width)
    log_norm = torch.full_like(chosen, float("nan"))
    pairs = (normalised & valid).nonzero()  # (k, 2): (row, target) whose normaliser is read
    step = max(1, logits_bytes // (4 * lm_head.out_features))  # float32 logits of this many pairs at a time
    for part in pairs.split(step):
        r, j = part[:, 0], part[:, 1]
        logits = at_least_float32(logits_of(lm_head(h[r, j])))  # (part, vocab)
        log_norm[r, j] = torch.logsumexp(logits, -1)
    return chosen, log_norm, valid


def _target_positions(table: Table, shift: int = 0) -> torch.Tensor:
    """``(rows, width)`` the position whose logits predict each target (0 where not valid), plus ``shift``."""
    width = table.valid.shape[1]
    pos = torch.arange(width, device=table.start.device)[None] + (table.start + shift)[:, None]  # (rows, width)
    return torch.where(table.valid, pos, 0)


def _causal_by_position(head, embeds, table: Table, normaliser, stacked=True):
    """Causal target logits from the base model's hidden states at the scored positions
    (``_by_position``)."""
    base = head[0]
    h = base(inputs_embeds=embeds, **no_cache(base)).last_hidden_state  # (rows, seq, hidden)
    pos = _target_positions(table)  # (rows, width)
    h = h.gather(1, pos[..., None].expand(-1, -1, h.shape[-1]))  # (rows, width, hidden)
    return _by_position(head, h, table, normaliser, stacked)


def _by_position(head, h: torch.Tensor, table: Table, normaliser, stacked=True):
    """Target logits from the hidden states ``h`` ``(rows, width, hidden)`` the LM head reads at each
    target's position, one branch per position.

    Computing the vocabulary logits of all scored positions as one tensor makes every target's
    backward cross the LM head at every position (a dense (positions × vocab) × (vocab × hidden)
    product per target). Here target t's logit and normaliser are computed from h_t alone, so its
    backward only crosses the head at its own position. Without a normaliser the logit is
    h_t · W[y_t] (+ b), mapped; with one, both are read from h_t's vocabulary logits, so that the
    gradient of their difference meets at the logits (one-hot − p) rather than in hidden space,
    where the two nearly cancel for a confident token and float32 keeps a tenth of the digits.
    """
    _, lm_head, logits_of = head
    valid, target_ids = table.valid, table.target_ids
    width = target_ids.shape[1]
    if not normaliser and _plain_linear(lm_head):  # its rows only: W[y_t] · h_t (+ b)
        chosen = (h * lm_head.weight[target_ids]).sum(-1)  # (rows, width)
        if lm_head.bias is not None:
            chosen = chosen + lm_head.bias[target_ids]
        return at_least_float32(logits_of(chosen, target_ids)), None, valid  # the map is elementwise
    chosen, log_norm = [], []
    for j in range(width):
        logits = at_least_float32(logits_of(lm_head(h[:, j])))  # (rows, vocab), float32 as in the whole-logits path
        chosen.append(logits.gather(1, target_ids[:, j, None])[:, 0])
        if normaliser:
            log_norm.append(torch.logsumexp(logits, -1))
    if not stacked:  # one branch per target: see score_columns
        return chosen, (log_norm if normaliser else None), valid
    return torch.stack(chosen, 1), (torch.stack(log_norm, 1) if normaliser else None), valid


def _plain_linear(module: torch.nn.Module) -> bool:
    """Whether ``module`` computes h · Wᵀ + b and nothing else: a torch Linear, not a subclass with a
    forward of its own, with no hooks (a user's temperature hook on the head)."""
    return type(module) is torch.nn.Linear and not module._forward_hooks and not module._forward_pre_hooks


def decoder_start_id(model) -> Any:
    """The decoder start generate() would use: the generation config's, then the model config's (an
    int, or None or a list when neither names one)."""
    start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
    if not isinstance(start, int):
        start = getattr(model.config, "decoder_start_token_id", None)
    return start


def decoder_inputs(model, item: Item) -> torch.Tensor:
    """Teacher forcing for encoder-decoders: the decoder reads start + outputs[:-1].

    The start is the one generation began with (``Item.decoder_start``), else the one generate()
    would use: the generation config's, then the model config's.
    """
    start = item.decoder_start
    if start is None:
        start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
    if not isinstance(start, int):  # unset, or a list of starts (one per language)
        start = model.config.decoder_start_token_id
    if start is None:
        raise InterpTextError(f"{type(model).__name__}.config.decoder_start_token_id is not set; set it to explain.")
    return torch.tensor([start] + item.output_ids[:-1], dtype=torch.long)
