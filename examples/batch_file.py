"""Explain a whole file of texts with the command line, resumably.

Run: python examples/batch_file.py
It writes texts.jsonl, runs `interp-text explain --input texts.jsonl --output results.jsonl`,
and runs it again: the second run finds every text done and skips them.
"""

import json
import subprocess
import sys
from pathlib import Path

texts = ["The food was good.", "The staff were not friendly.", "I hated the soup.", "The room was not bad."]
Path("texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
Path("results.jsonl").unlink(missing_ok=True)
command = [sys.executable, "-m", "interp_text", "explain", "--input", "texts.jsonl", "--output", "results.jsonl"]
for _ in range(2):
    subprocess.run(command, check=True)
for line in Path("results.jsonl").read_text().splitlines():
    record = json.loads(line)
    best = max(zip(record["scores"][0], record["elements"]))
    print(f"{record['id']}: {record['targets'][0]['label']:>8}  top word: {best[1]!r}")
