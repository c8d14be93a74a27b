"""Materializing a transformer from the meta device: initlab.init_model vs torch's to_empty + reset_parameters.

    .venv/bin/python benchmarks/materialize.py [--models gpt2-small 1b] [--threads 2] [--repeat 2]

For each model (built with ``transformers`` on the meta device: a GPT-2-small-shaped ``GPT2LMHeadModel``,
124M parameters, and a 1.1B-parameter Llama-shaped ``LlamaForCausalLM``, 2048 wide, 22 layers, the
TinyLlama shape) it runs, each in a fresh process so that peak memory is that run's own:

* ``fill``: the raw fill of the same parameter shapes with ``initlab.rng.fill_normal_`` (the counter-based
  generator init_model uses) -- the floor any initialization from meta can reach;
* ``torch_fill``: the same shapes filled with torch's ``normal_``;
* ``initlab``: ``init_model(model, seed=0, device="cpu")`` (counter-based, the default with a seed),
  split into its steps (trace, plan, draw, assign, report);
* ``torch``: ``model.to_empty(device="cpu")`` then ``reset_parameters()`` on every module that has one
  (torch's own recipe for meta-built models; it is not what Hugging Face's ``_init_weights`` does).

Each process times ``--repeat`` calls on fresh meta models and keeps the fastest (the first call of a
process also pays numba's kernel load, printed separately as ``first``). Prints seconds, the ratio to the
raw fill, and the peak resident memory of the process over the size of the parameters (1.0 = nothing
beyond the model itself; the interpreter, torch and transformers take a fixed ~0.5-0.7 GB on top,
printed as ``base``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch

MODELS = ("gpt2-small", "1b")
MODES = ("base", "fill", "torch_fill", "initlab", "torch")


def build(name: str) -> torch.nn.Module:
    warnings.simplefilter("ignore")
    if name == "gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        cls = GPT2LMHeadModel
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                          num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False)
        cls = LlamaForCausalLM
    with torch.device("meta"):
        return cls(cfg)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_initlab(model: torch.nn.Module) -> dict[str, float]:
    """``init_model`` itself, with its steps timed by wrapping the functions it calls (no copy of its body)."""
    from initlab import model_init as mi

    spent: dict[str, float] = {}

    def timed(step: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[step] = spent.get(step, 0.0) + time.perf_counter() - start
        return wrapper

    steps = {"trace": "trace", "describe": "describe", "plan": "_plan", "draw": "_draw", "assign": "_assign",
             "report": "_report"}
    saved = {attr: getattr(mi, attr) for attr in steps.values()}
    try:
        for step, attr in steps.items():
            setattr(mi, attr, timed(step, saved[attr]))
        start = time.perf_counter()
        mi.init_model(model, seed=0, device="cpu", example_inputs=torch.zeros(1, 8, dtype=torch.long))
        total = time.perf_counter() - start
    finally:
        for attr, fn in saved.items():
            setattr(mi, attr, fn)
    return {step: spent.get(step, 0.0) for step in steps} | {"total": total}


def run_torch(model: torch.nn.Module) -> dict[str, float]:
    start = time.perf_counter()
    model.to_empty(device="cpu")
    for mod in model.modules():
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
    return {"total": time.perf_counter() - start}


def run_fill(model: torch.nn.Module, torch_side: bool) -> dict[str, float]:
    from initlab import rng

    shapes = [tuple(p.shape) for p in model.parameters()]
    start = time.perf_counter()
    for i, shape in enumerate(shapes):
        t = torch.empty(shape)
        if torch_side:
            t.normal_()
        else:
            rng.fill_normal_(t, rng.key_for(0, str(i)))
        shapes[i] = t  # kept, as the model keeps its parameters
    return {"total": time.perf_counter() - start}


def one(mode: str, name: str, repeat: int, threads: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    n = sum(p.numel() for p in build(name).parameters())
    runs = []
    if mode != "base":
        from initlab import model_init  # noqa: F401  (imported before timing, as a user's program would)

        for _ in range(repeat):
            model = build(name)
            fn = {"fill": lambda m: run_fill(m, False), "torch_fill": lambda m: run_fill(m, True),
                  "initlab": run_initlab, "torch": run_torch}[mode]
            runs.append(fn(model))
            del model
    best = min(runs, key=lambda r: r["total"]) if runs else {}
    return {"mode": mode, "model": name, "params": n, "best": best,
            "first": runs[0]["total"] if runs else 0.0, "peak_gb": peak_gb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.repeat, args.threads)))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeat} per process\n")
    for name in args.models:
        res = {}
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--one", mode, name, "--repeat", str(args.repeat),
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        n = res["fill"]["params"]
        gb = n * 4 / 2**30
        fill = res["fill"]["best"]["total"]
        base = res["base"]["peak_gb"]
        print(f"{name}: {n / 1e6:.0f}M parameters, {gb:.2f} GB in fp32; process base {base:.2f} GB")
        print(f"  {'':12s} {'seconds':>8s} {'x fill':>7s} {'first':>7s} {'peak-base/params':>17s}")
        for mode in MODES[1:]:
            r = res[mode]
            t = r["best"]["total"]
            print(f"  {mode:12s} {t:8.3f} {t / fill:7.2f} {r['first']:7.3f} {(r['peak_gb'] - base) / gb:17.2f}")
        steps = res["initlab"]["best"]
        print("  init_model steps: " + ", ".join(f"{k} {v:.3f}s" for k, v in steps.items() if k != "total"))
        print()


if __name__ == "__main__":
    main()
