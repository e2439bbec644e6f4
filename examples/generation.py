"""Explain a language model's answer: which prompt words each generated word came from.

Run: python examples/generation.py   (uses the bundled facts model)
"""

from interp_text import InferenceModes, Saliency, SmoothGrad, load_default

model, tokenizer = load_default("facts")  # any ...ForCausalLM or ...ForConditionalGeneration

# No target: the model generates greedily, then its own output is explained.
explanation = Saliency(model, tokenizer).explain("The capital of France is", max_new_tokens=3)
print(explanation)
print("output:", repr(explanation.output_text))
print("matrix (outputs x [prompt + outputs]):\n", explanation.scores.round(3))

# A forced target, explained by its log-probability.
forced = SmoothGrad(model, tokenizer, inference_mode=InferenceModes.LOG_SOFTMAX, n_perturbations=10)
answer = forced.explain("The official language of Japan is", targets=" Japanese")
print(answer)
answer.save_html("generation.html")
print("page written to generation.html")
