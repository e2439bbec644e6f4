"""Explain a sentiment classifier: which words pushed the prediction up or down.

Run: python examples/classification.py   (uses the bundled model; pass your own the same way)
"""

from interp_text import Granularity, IntegratedGradients, VarGrad, load_default

model, tokenizer = load_default("sentiment")  # any ...ForSequenceClassification + its fast tokenizer

explanation = VarGrad(model, tokenizer, n_perturbations=30, seed=0).explain("The staff were not friendly.")
print(explanation)  # coloured words in the terminal
print("top words:", explanation.top(3))

# Every class at once, sentence granularity, with the completeness check of integrated gradients.
ig = IntegratedGradients(model, tokenizer, granularity=Granularity.SENTENCE, n_interpolations=50)
both = ig.explain("The pasta was great. The service was not good.", targets="all")
for target, gap in zip(both.targets, both.completeness_gap):
    print(f"{target.label:>9}: p={target.probability:.3f}  completeness gap {gap:+.2e}")
both.save_html("classification.html")
print("page written to classification.html")
