"""Time initlab's initializers against torch.nn.init on the same tensors, in one run.

    .venv/bin/python benchmarks/init_speed.py [--repeats 20]

Prints, per scheme and shape, the median time of torch.nn.init and of initlab (both with an explicit
generator, float32 on CPU) and the ratio initlab / torch. initlab samples into a fresh float32 buffer and
copies, so expect a ratio a little above 1 for the cheap schemes; for fp16/bf16 targets initlab samples in
float32 on purpose (unbiased truncated normals, working QR).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.init as tinit

import initlab

CASES = [
    ("kaiming_normal_", lambda t, g: tinit.kaiming_normal_(t, generator=g), initlab.HeNormal(torch_compatible=True)),
    ("kaiming_uniform_", lambda t, g: tinit.kaiming_uniform_(t, generator=g), initlab.HeUniform(torch_compatible=True)),
    ("xavier_uniform_", lambda t, g: tinit.xavier_uniform_(t, generator=g), initlab.GlorotUniform()),
    ("trunc_normal_", lambda t, g: tinit.trunc_normal_(t, std=0.02, generator=g),
     initlab.TruncatedNormal(std=0.02, bounds=(-2.0, 2.0), absolute=True)),
    ("orthogonal_", lambda t, g: tinit.orthogonal_(t, generator=g), initlab.Orthogonal()),
]
SHAPES = [(512, 512), (4096, 1024), (256, 128, 3, 3)]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'scheme':18s} {'shape':18s} {'torch ms':>9s} {'initlab ms':>11s} {'ratio':>6s}")
    for name, theirs, ours in CASES:
        for shape in SHAPES:
            if name == "orthogonal_" and shape[0] > 1024:
                continue
            t = torch.empty(shape)
            g = torch.Generator()
            a = median_time(lambda f=theirs, t=t, g=g: f(t, g.manual_seed(0)), args.repeats)
            b = median_time(lambda o=ours, t=t, g=g: o.init_(t, generator=g.manual_seed(0)), args.repeats)
            print(f"{name:18s} {str(shape):18s} {a * 1e3:9.3f} {b * 1e3:11.3f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
