"""Models whose score has a closed form in the embeddings, built as users build their own."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class ToyConfig(PretrainedConfig):
    model_type = "interp_text_toy"

    def __init__(self, vocab_size=128, hidden_size=6, num_labels=2, kind="linear", **kwargs):
        super().__init__(num_labels=num_labels, **kwargs)
        self.vocab_size, self.hidden_size, self.kind = vocab_size, hidden_size, kind


class ToyForSequenceClassification(PreTrainedModel):
    """f_c(e) = Σ_t w_c · e_t (linear) or Σ_t w_c · e_t² (quadratic)."""

    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(1)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed.weight.data = torch.randn(config.vocab_size, config.hidden_size, generator=g)
        self.w = nn.Parameter(torch.randn(config.num_labels, config.hidden_size, generator=g))

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, **kwargs):
        e = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (rows, seq, hidden)
        if self.config.kind == "quadratic":
            e = e * e
        return SequenceClassifierOutput(logits=torch.einsum("bsh,ch->bc", e, self.w))
