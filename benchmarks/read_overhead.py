"""Where does a read-phase UNet call spend its time? Wall clock vs GPU time, plain vs read.

Run on a CUDA machine:  python benchmarks/read_overhead.py --size 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.csa_sdxl import unet_inputs
from storystudio.engine.consistent_attention import ConsistencyConfig, ConsistentAttention
from storystudio.engine.random_models import build_pipeline


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=4)
    ap.add_argument("--calls", type=int, default=12)
    args = ap.parse_args()
    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
    t = torch.tensor(500, device="cuda")
    always = ConsistencyConfig(schedule=((0, 1.0),))
    lat, text, added = unet_inputs(pipe, 2, args.size)

    def run(n):
        walls, gpus = [], []
        for _ in range(n):
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            w0 = time.perf_counter()
            a.record()
            pipe.unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)
            b.record()
            launched = time.perf_counter() - w0
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - w0) * 1000)
            gpus.append(a.elapsed_time(b))
            gpus[-1] = (gpus[-1], launched * 1000)
        return {
            "wall_ms": round(statistics.median(walls), 1),
            "gpu_ms": round(statistics.median(g for g, _ in gpus), 1),
            "cpu_launch_ms": round(statistics.median(l for _, l in gpus), 1),
        }

    out = {}
    with ConsistentAttention(pipe.unet, always, seed=0) as csa:
        lat8, text8, added8 = unet_inputs(pipe, 2 * args.refs, args.size)
        for keep in ("host", "device"):
            with csa.write("hero", args.refs, sample_seed=1, steps=3 * args.calls + 2, keep_on=keep) as w:
                for _ in range(3 * args.calls + 2):
                    pipe.unet(lat8, t, encoder_hidden_states=text8, added_cond_kwargs=added8, return_dict=False)
            bank = w["bank"]
            for rnd in range(2):
                with csa.plain(1):
                    out[f"plain_{keep}_{rnd}"] = run(args.calls)
                with csa.read([bank], 1, "cuda"):
                    out[f"read_{keep}_{rnd}"] = run(args.calls)
            del bank
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
