"""Tiny seeded models and tokenizers built offline from configs."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

torch.set_num_threads(1)  # tiny models: threads cost more than they give
if int(transformers.__version__.split(".")[0]) < 5:
    # The tests' tokenizers return what transformers 5's do: no token type ids, which 4's return by
    # default and some test models (DistilBERT's, GPT-2's) refuse or add to their input.
    PreTrainedTokenizerFast.model_input_names = ["input_ids", "attention_mask"]

WORDS = (
    "the a food was cold but staff were lovely not good bad great terrible service slow fast i "
    "loved hated pasta movie it is of capital france paris germany berlin and very really "
    "quite ok , . ! ? ' - naïve café 😀"
).split()


# transformers' compiled models need torch.compiler.is_compiling (torch 2.3): on older torch they fail
# inside transformers itself, whatever interp_text does.
needs_compiler = pytest.mark.skipif(
    not hasattr(torch.compiler, "is_compiling"), reason="transformers models compile from torch 2.3 on"
)


def cpu_float16_works() -> bool:
    """Whether this torch runs a float16 model on the CPU (layer norm, matmul, softmax: from torch 2.3)."""
    try:
        x = torch.ones(2, 2, dtype=torch.float16)
        torch.nn.functional.layer_norm(x, (2,))
        (x @ x).softmax(-1)
        return True
    except RuntimeError:
        return False


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    for piece in ["##s", "##ly", "##ing", "##ed", "##er", "un", "##a", "##e", "##o", "##i"]:
        vocab.setdefault(piece, len(vocab))
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault("##" + ch, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def bpe_tokenizer(with_pad: bool = False, bos: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    from tokenizers import trainers

    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [" ".join(WORDS), "The capital of France is Paris.", "The food was cold but the staff were lovely."] * 5
    tok.train_from_iterator(corpus, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    kwargs = dict(eos_token="<|endoftext|>", bos_token="<s>", model_max_length=128)
    if with_pad:
        kwargs["pad_token"] = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


@pytest.fixture(scope="session")
def wp_tokenizer():
    return wordpiece_tokenizer()


def tiny_bert(tokenizer, **config):
    """A 2-layer, width-32 BERT classifier with 3 classes, seeded; ``config`` overrides BertConfig."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    defaults = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    return BertForSequenceClassification(BertConfig(**{**defaults, **config})).eval()


# A 1+1-layer BART-shaped encoder-decoder (BART, Pegasus, Marian configs take these names).
SEQ2SEQ_SMALL = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    decoder_start_token_id=2,
)


def tiny_bart_classifier(tokenizer, **config):
    """A 1+1-layer BART classifier, seeded: it refuses inputs_embeds, finding its </s> (here [SEP])
    tokens in the ids. ``config`` overrides BartConfig."""
    from transformers import BartConfig, BartForSequenceClassification

    torch.manual_seed(0)
    defaults = dict(
        SEQ2SEQ_SMALL, vocab_size=len(tokenizer), num_labels=3, pad_token_id=0, eos_token_id=tokenizer.sep_token_id
    )
    defaults.update(init_std=0.3)
    return BartForSequenceClassification(BartConfig(**{**defaults, **config})).eval()


def tiny_bert_checkpoint(folder, tokenizer, cls_name: str = "BertModel") -> None:
    """Save a 1-layer BERT of class ``cls_name`` (a checkpoint without a classifier head) and ``tokenizer``."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    getattr(transformers, cls_name)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def bert(wp_tokenizer):
    return tiny_bert(
        wp_tokenizer,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )


@pytest.fixture(scope="session")
def bpe():
    return bpe_tokenizer()


@pytest.fixture(scope="session")
def gpt2(bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(bpe),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=bpe.bos_token_id,
        eos_token_id=bpe.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def t5(bpe):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(bpe),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=bpe.eos_token_id,
        eos_token_id=bpe.eos_token_id,
        decoder_start_token_id=bpe.eos_token_id,
    )
    return T5ForConditionalGeneration(config).eval()


# The bundled models, loaded once per test module (a module may change a tokenizer setting and restore it).
@pytest.fixture(scope="module")
def sentiment():
    from interp_text import load_default

    return load_default("sentiment")


@pytest.fixture(scope="module")
def facts():
    from interp_text import load_default

    return load_default("facts")
