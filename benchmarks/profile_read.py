"""Profile one plain and one read-phase UNet call of real-size SDXL (random fp16): top CUDA kernels.

Run on a CUDA machine:  python benchmarks/profile_read.py --size 1024
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.csa_sdxl import unet_inputs
from storystudio.engine.consistent_attention import ConsistencyConfig, ConsistentAttention
from storystudio.engine.random_models import build_pipeline


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=4)
    args = ap.parse_args()
    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
    t = torch.tensor(500, device="cuda")
    always = ConsistencyConfig(schedule=((0, 1.0),))

    def calls(batch, n):
        lat, text, added = unet_inputs(pipe, batch, args.size)
        for _ in range(n):
            pipe.unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)
        torch.cuda.synchronize()

    with ConsistentAttention(pipe.unet, always, seed=0) as csa:
        with csa.write("hero", args.refs, sample_seed=1, steps=8) as written:
            calls(2 * args.refs, 8)
        bank = written["bank"]
        for label, ctx in (("plain", lambda: csa.plain(1)), ("read", lambda: csa.read([bank], 1, "cuda"))):
            with ctx():
                calls(2, 3)
            with ctx():
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    calls(2, 2)
            print(f"==== {label}")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70))


if __name__ == "__main__":
    main()
