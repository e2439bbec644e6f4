"""Shared pieces of the benchmarks: offline tokenizers, seeded random models, texts, timing.

Nothing here touches the network: tokenizers are built from generated pseudo-words with the
``tokenizers`` library and models are built from configs with seeded random weights. The
benchmark scripts save the model and tokenizer with ``save_pretrained`` to a temporary folder
and every contender (interp_text, the plain-PyTorch floor, each peer library, possibly in its
own virtualenv / subprocess) loads the same files.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Set by parse_args (--device, --repeats) and passed on to the peer workers.
DEVICE = "cpu"  # every contender's torch device
REPEATS = 3


def sync() -> None:
    """Wait for the device's queued work, so a host clock read after it is right."""
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


_ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "br",
    "ch",
    "cl",
    "dr",
    "fl",
    "gr",
    "pl",
    "pr",
    "sh",
    "sl",
    "st",
    "th",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "oo", "ou"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"]


def _syllables(rng: random.Random, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        out.add(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS))
    return sorted(out)


def pseudo_words(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (1 to 4 syllables), deterministic."""
    rng = random.Random(seed)
    syl = _syllables(rng, 900)
    words: list[str] = []
    seen = set()
    while len(words) < n:
        w = "".join(rng.choice(syl) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_texts(lengths: list[int], seed: int = 1, vocab: list[str] | None = None) -> list[str]:
    """One sentence-like text per requested word count (some words end in , or .)."""
    rng = random.Random(seed)
    vocab = vocab or pseudo_words(40_000, seed=0)
    common = vocab[:15_000]  # whole words in both tokenizers' vocabularies
    rare = vocab[20_000:]  # split into pieces by the WordPiece tokenizer
    texts = []
    for n in lengths:
        words = []
        for i in range(n):
            # Mostly frequent words (one token), some rare ones (split into pieces), about
            # 1.3 tokens per word like English under BERT's vocabulary.
            w = rng.choice(common) if rng.random() < 0.9 else rng.choice(rare)
            if i == 0:
                w = w.capitalize()
            words.append(w)
        text = ""
        for i, w in enumerate(words):
            text += ("" if i == 0 else " ") + w
            if 0 < i < n - 1 and rng.random() < 0.08:
                text += ","
        texts.append(text + ".")
    return texts


def wordpiece_tokenizer(vocab_size: int = 30522):
    """A BERT-style fast WordPiece tokenizer with exactly ``vocab_size`` entries, built offline.

    The vocabulary: the 5 BERT special tokens, characters and ##characters, 60% whole
    pseudo-words, then ##pieces (syllables, syllable pairs) until it has ``vocab_size`` entries.
    Texts from ``make_texts`` then tokenize into a mix of one-token and multi-piece words.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]
    vocab: list[str] = list(specials)
    vocab += [c.lower() for c in chars if c.lower() == c or not c.isalpha()]
    vocab = list(dict.fromkeys(vocab))
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    words = pseudo_words(40_000, seed=0)
    n_words = int(vocab_size * 0.6)
    vocab += [w for w in words[:n_words] if w not in vocab]
    rng = random.Random(2)
    syl = _syllables(rng, 900)
    pieces = ["##" + s for s in syl]
    pieces += ["##" + a + b for a in syl[:120] for b in syl[:120]]
    seen = set(vocab)
    for p in pieces:
        if len(vocab) >= vocab_size:
            break
        if p not in seen:
            seen.add(p)
            vocab.append(p)
    assert len(vocab) == vocab_size, len(vocab)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def bytelevel_bpe_tokenizer(vocab_size: int = 50257):
    """A GPT-2-style fast byte-level BPE tokenizer trained offline on generated text.

    ``<|endoftext|>`` is its last id, as in GPT-2. The trainer may stop short of
    ``vocab_size`` when the corpus has no more pairs to merge: use ``len(tokenizer)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    words = pseudo_words(60_000, seed=0)
    rng = random.Random(3)
    corpus = []
    for _ in range(3000):
        n = rng.randint(8, 40)
        corpus.append(" ".join(rng.choice(words) if rng.random() < 0.5 else rng.choice(words[:3000]) for _ in range(n)))
    corpus += [" ".join(words[i : i + 50]) for i in range(0, len(words), 50)]  # every word at least once
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # <|endoftext|> goes last, as in GPT-2
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(["<|endoftext|>"])
    return GPT2TokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=1024,
    )


# --------------------------------------------------------------------------- timing
def set_threads(n: int | None) -> int:
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def timed(fn, repeats: int = 3, warmup=None) -> dict:
    """Wall-clock and CPU times of ``fn()``: ``warmup()`` (default ``fn``) runs once untimed first.

    Returns ``{"time": median wall s, "times": [wall s], "cpu": median CPU s, "cpus": [CPU s],
    "result": what the last timed call returned}``.
    CPU time is this process's, all threads together: on a machine shared with other jobs it is
    steadier than wall time (it does not count time spent waiting for a core).
    """
    return interleaved({"fn": fn}, repeats, {"fn": warmup} if warmup else None)["fn"]


def interleaved(fns: dict, repeats: int = 3, warmups: dict | None = None) -> dict[str, dict]:
    """Like ``timed`` for several functions, run round-robin so background load hits all alike.

    A function may be a ``Remote`` (a job of a peer process): its times are the ones the peer
    measured around the job, so they hold neither the request's round trip nor this process's CPU.
    """
    for k, fn in fns.items():
        (warmups or {}).get(k, fn)()
    out: dict[str, dict] = {k: {"times": [], "cpus": []} for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            w0, c0 = _clock()
            result = fn()
            sync()
            w1, c1 = _clock()
            if isinstance(fn, Remote):
                (w0, c0), (w1, c1) = (0.0, 0.0), (result["wall"], result["cpu"])
            out[k]["result"] = result
            out[k]["times"].append(w1 - w0)
            out[k]["cpus"].append(c1 - c0)
    for v in out.values():
        v["time"] = statistics.median(v["times"])
        v["cpu"] = statistics.median(v["cpus"])
    return out


def quiet() -> None:
    """No progress bars or info logs from transformers (saving / loading the model)."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()
    except Exception:
        pass


def fmt_times(times: list[float]) -> str:
    return "[" + ", ".join(f"{t:.2f}" for t in times) + "]"


def versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def gpu_name(device: str) -> str:
    """``", GPU <name>"`` when ``device`` is a CUDA device, else ``""``."""
    if not str(device).startswith("cuda"):
        return ""
    import torch

    return f", GPU {torch.cuda.get_device_name(torch.device(device))}"


def machine() -> str:
    """The CPU (and the GPU, when the device is one)."""
    return _cpu() + gpu_name(DEVICE)


def _cpu() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"


# --------------------------------------------------------------------------- peers in subprocesses
def peer_python() -> str:
    """The interpreter that runs peer libraries: $BENCH_PEER_PYTHON, else .venv-bench, else this one."""
    env = os.environ.get("BENCH_PEER_PYTHON")
    if env:
        return env
    venv = REPO / ".venv-bench" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def peer_env() -> dict:
    """A peer process's environment: this repo's bench helpers importable, offline, quiet tokenizers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "bench"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def run_worker(script: str, worker: str, workdir: str, threads: int, timeout: float = 600) -> dict:
    """Run ``python script --worker NAME --workdir DIR`` in the peer interpreter; return its JSON.

    The worker prints one line ``BENCH_RESULT {json}``; anything else it prints is kept for
    the error message. A failure never raises: the result then has ``{"error": why}``.
    """
    env = peer_env()
    cmd = [peer_python(), script, "--worker", worker, "--workdir", workdir, "--threads", str(threads)]
    cmd += ["--device", DEVICE, "--repeats", str(REPEATS)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except OSError as err:
        return {"error": f"could not start {cmd[0]}: {err}"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT ") :])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


class Peer:
    """A peer worker kept running (``python script --worker NAME --serve``), so that its timed runs
    alternate with interp_text's in ``interleaved`` and a burst of background load hits both alike:
    a worker run after interp_text's runs, as ``run_worker`` does, can meet another machine.

    The worker sets up once, prints ``BENCH_READY {json}`` (its versions, its jobs, or why it has
    none), then answers each request line ``{"job": NAME, "do": "warm" | "run" | "count"}`` with one
    ``BENCH_REPLY {json}`` line. A failure never raises: ``ask`` then returns ``{"error": why}``.
    """

    def __init__(self, script: str, worker: str, workdir: str, threads: int, timeout: float = 600):
        import queue
        import tempfile
        import threading

        env = peer_env()
        cmd = [peer_python(), script, "--worker", worker, "--serve", "--workdir", workdir, "--threads", str(threads)]
        cmd += ["--device", DEVICE]
        self.timeout, self.lines, self.proc = timeout, queue.Queue(), None
        self.stderr = tempfile.TemporaryFile(mode="w+")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env, bufsize=1
            )
        except OSError as err:
            self.ready = {"error": f"could not start {cmd[0]}: {err}"}
            return

        def read() -> None:  # a thread, so that a wait for a line can time out
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        self.ready = self._reply("BENCH_READY ")

    def _reply(self, prefix: str) -> dict:
        import queue

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.close()
                return {"error": f"no answer in {self.timeout:.0f} s"}
            if line is None:
                self.stderr.seek(0)
                tail = self.stderr.read().strip().splitlines()[-6:]
                return {"error": f"exit {self.proc.wait()}: " + " | ".join(tail)}
            if line.startswith(prefix):  # anything else the peer prints is not an answer
                return json.loads(line[len(prefix) :])

    def ask(self, job: str, do: str) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            return {"error": self.ready.get("error", "the peer has stopped")}
        self.proc.stdin.write(json.dumps({"job": job, "do": do}) + "\n")
        self.proc.stdin.flush()
        return self._reply("BENCH_REPLY ")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Remote:
    """``do`` of a peer's job as a function for ``interleaved``: it raises when the job fails."""

    def __init__(self, peer: Peer, job: str, do: str = "run"):
        self.peer, self.job, self.do = peer, job, do

    def __call__(self) -> dict:
        reply = self.peer.ask(self.job, self.do)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply


def worker_serve(servers: dict, args) -> None:
    """The peer side of ``Peer``: ``servers[args.worker](workdir)`` gives ``{"versions": {...},
    "jobs": {name: {"run": f, "warm": f, "count": f}}, "errors": {name: why}}``; then each request
    is answered until stdin closes. ``run`` is timed here (wall and CPU, after a device sync)."""
    set_threads(args.threads)
    quiet()
    try:
        setup = servers[args.worker](args.workdir)
    except Exception as err:  # a peer failing offline is a result, not a crash
        setup = {"error": f"{type(err).__name__}: {err}"[:400]}
    jobs = setup.pop("jobs", {})
    print("BENCH_READY " + json.dumps({**setup, "jobs": sorted(jobs)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            job = jobs[request["job"]]
            if request["do"] == "run":
                sync()
                w0, c0 = _clock()
                job["run"]()
                sync()
                w1, c1 = _clock()
                reply = {"wall": w1 - w0, "cpu": c1 - c0}
            elif request["do"] == "warm":
                job["warm"]()
                reply = {}
            else:
                reply = job["count"]()
        except Exception as err:
            reply = {"error": f"{type(err).__name__}: {err}"[:400]}
        print("BENCH_REPLY " + json.dumps(reply), flush=True)


def emit(result: dict) -> None:
    result = {k: v for k, v in result.items() if k != "result"}
    print("BENCH_RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- reporting
def print_table(rows: dict[str, dict]) -> None:
    """One line per contender: median wall and CPU seconds and every run, or why it is missing."""
    print()
    print(f"{'contender':<26}{'wall s':>8}{'cpu s':>8}  wall runs / cpu runs")
    for name, r in rows.items():
        if "time" in r:
            print(f"{name:<26}{r['time']:>8.2f}{r['cpu']:>8.2f}  {fmt_times(r['times'])} / {fmt_times(r['cpus'])}")
        else:
            print(f"{name:<26}{'-':>8}{'-':>8}  not measured: {r.get('error', '?')}")


def print_ratio(label: str, a: dict, b: dict, target: tuple[str, float] | None = None) -> dict:
    """Print ``a / b`` on wall time (medians) and on CPU time; return both."""
    wall = a["time"] / b["time"]
    cpu = a["cpu"] / b["cpu"]
    verdict = ""
    if target:
        op, x = target
        ok = (lambda r: r <= x) if op == "<=" else (lambda r: r >= x)
        verdict = (
            f"   target {op} {x:g}: wall {'met' if ok(wall) else 'NOT met'}, cpu {'met' if ok(cpu) else 'NOT met'}"
        )
    print(f"{label:<34} wall {wall:6.2f}   cpu {cpu:6.2f}{verdict}")
    return {"wall": wall, "cpu": cpu}


def load_average() -> str:
    """The 1-minute load average over the core count: above ~1 other jobs share the cores."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "?"
    return f"{one:.1f} on {os.cpu_count()} cores"


def parse_args(description: str, peers: str, extra: list[tuple[str, dict]] = (), repeats: int = 3):
    """The options every benchmark takes (and the hidden ones its peer workers are run with).

    ``extra``: more ``(flag, add_argument keywords)`` of one script.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BENCH_THREADS", "1")),
        help="torch threads in every process (default 1, or $BENCH_THREADS; 0: torch's default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"timed repeats after one warm-up (median; default {repeats})"
    )
    parser.add_argument("--no-peers", action="store_true", help=f"skip {peers}")
    parser.add_argument(
        "--device",
        default=os.environ.get("BENCH_DEVICE", "cpu"),
        help="torch device of every contender (default cpu, or $BENCH_DEVICE), e.g. cuda",
    )
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args()
    global DEVICE, REPEATS
    DEVICE, REPEATS = args.device, args.repeats
    return args


def worker_entry(workers: dict, args) -> None:
    """Run one peer worker in this process and print its result as JSON; a failure is a result."""
    set_threads(args.threads)
    quiet()
    try:
        result = workers[args.worker](args.workdir, args.repeats)
    except Exception as err:  # a peer failing offline is a result, not a crash
        import traceback

        tb = traceback.format_exc().strip().splitlines()
        result = {"error": f"{type(err).__name__}: {err}"[:400], "where": tb[-3:]}
    emit(result)


def readout_of(model, explainer):
    """The readout (``interp_text.readout``) interp_text runs ``model`` with, once ``explainer``
    checked it; None: the full forward."""
    from interp_text.readout import Readout, last_layer

    found = last_layer(model)
    checked = getattr(explainer, "_readout_check", None)
    return Readout(found) if found is not None and checked and checked[1] else None
