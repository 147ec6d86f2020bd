#!/usr/bin/env python3
"""A PyTorch eager reference for `treadc bench` on the Wan-shaped video model
(models/mnist-wan-small.json, wan2.1-t2v-1.3b.json's shape at test size): the same training step
(rectified-flow loss with logit-normal t on clips [B, C, F, H, W], AdamW and EMA with the file's
recipe, EMA as one multi-tensor lerp, text dropout, TREAD routing of the video tokens), timed
dense and routed, alternating, in one process. Run by developers beside `treadc bench`, never in
CI; like torch_mmdit.py and ../shared/bench/torch_dit.py.

  python3 -m pip install torch numpy   # CPU is enough
  python3 tools/torch_wan.py --model models/mnist-wan-small.json --batch 64 --threads 2

The network follows the model file's graph: 3-D patches (patch_t × P × P, tokens row-major over
frame, row, column) and a linear embedding; 3-axis positions (frame, row, column) and RoPE over
them (the file's axes_dims and theta, pairs (2i, 2i+1)); the caption through a GELU MLP; Wan's
shared modulation (one `e6` linear of silu(time_emb) in the stem, plus a learned [1, 6D] table per
block); per block adaLN-modulated self-attention (q, k, v linears, RMS-norm over D with a weight
on q and k, RoPE, output linear), cross-attention to the caption after an affine layer norm (RMS
norms on its q and k, no mask: the file has no context_mask input), adaLN-modulated GELU MLP of
width FF; the head's shift/scale are [time_emb, time_emb] plus a learned [1, 2D] table. A route
keeps a random subset of the video tokens (and their positions) through its blocks; the caption
is never routed. Text conditioning is random: context [B, L, DC]. It prints the parameter count
to compare with `treadc compile` (same shapes, same FLOPs).

Prints one JSON line: {"dense_ms", "routed_ms", "ratio", "params", ...} (medians over --steps).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_common import (bench, gather_tokens, load_model, merge_tokens, modulate, need, norm,
                          parse_args, positions, rope, rope_freqs, rope_tables, route_select, sdpa,
                          text_inputs, timestep_embed)


def rms(x, w, eps=1e-6):
    return F.rms_norm(x, x.shape[-1:], w, eps)


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.table = nn.Parameter(torch.randn(1, 6 * d) * 0.03)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.qn, self.kn = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.attn_out = nn.Linear(d, d)
        self.norm3 = nn.LayerNorm(d, eps=1e-6)
        self.cq, self.ck, self.cv = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.cqn, self.ckn = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.cross_out = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x, e6, ctx, cs):
        sm, cm, gm, sf, cf, gf = (e6 + self.table).unsqueeze(1).chunk(6, dim=2)
        h = modulate(norm(x), sm, cm)
        q = rope(rms(self.q(h), self.qn), cs, self.heads)
        k = rope(rms(self.k(h), self.kn), cs, self.heads)
        x = x + gm * self.attn_out(sdpa(q, k, self.v(h), self.heads))
        cq = rms(self.cq(self.norm3(x)), self.cqn)
        x = x + self.cross_out(sdpa(cq, rms(self.ck(ctx), self.ckn), self.cv(ctx), self.heads))
        h = modulate(norm(x), sf, cf)
        return x + gf * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class Wan(nn.Module):
    def __init__(self, frames, height, width, ch, patch_t, patch, d, depth, heads, ff, text_dim,
                 axes_dims, theta):
        super().__init__()
        self.shape, self.ch, self.pt, self.p = (frames, height, width), ch, patch_t, patch
        grid = [frames // patch_t, height // patch, width // patch]
        self.embed = nn.Linear(patch_t * patch * patch * ch, d)
        self.register_buffer("pe", positions(grid[0] * grid[1] * grid[2], grid, 3))
        self.register_buffer("freqs", rope_freqs(axes_dims, theta))
        self.txt = nn.Sequential(nn.Linear(text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.e6 = nn.Linear(d, 6 * d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(depth))
        self.final_table = nn.Parameter(torch.randn(1, 2 * d) * 0.03)
        self.f_lin = nn.Linear(d, patch_t * patch * patch * ch)

    def forward(self, x, t, ctx, route=None):
        b, c, (f, hh, ww), pt, p = x.shape[0], self.ch, self.shape, self.pt, self.p
        gf, gh, gw = f // pt, hh // p, ww // p
        patches = (x.reshape(b, c, gf, pt, gh, p, gw, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
                   .reshape(b, gf * gh * gw, -1))
        h = self.embed(patches)
        txt = self.txt(ctx)
        time_emb = self.t_mlp(timestep_embed(t))
        e6 = self.e6(F.silu(time_emb))
        cs_all = rope_tables(self.pe, self.freqs)
        cs, n = cs_all, h.shape[1]
        for i, blk in enumerate(self.blocks):
            if route and i == route[1]:
                idx = route_select(b, n, route[0])
                saved = h
                h = gather_tokens(h, idx)
                cs = rope_tables(gather_tokens(self.pe, idx), self.freqs)
            h = blk(h, e6, txt, cs)
            if route and i == route[2]:
                h = merge_tokens(saved, h, idx)
                cs = cs_all
        shift, scale = (torch.cat([time_emb, time_emb], dim=1) + self.final_table).unsqueeze(1).chunk(2, dim=2)
        h = self.f_lin(modulate(norm(h), shift, scale))
        h = h.reshape(b, gf, gh, gw, pt, p, p, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return h.reshape(b, c, f, hh, ww)


def main():
    a = parse_args("models/mnist-wan-small.json")
    m, dims, depth, route, training = load_model(a.model)
    frames, height, width, ch, patch, d, heads, ff, _, text_dim = need(
        dims, a.model, "F", "S", "W", "C", "P", "D", "H", "FF", "L", "DC")
    patch_t = next(n.get("patch_t", 1) for n in m["stem"] if n["op"] == "patchify_video")
    rn = next(n for t in m["blocks"].values() for n in t["nodes"] if n["op"] == "rope")
    axes_dims, theta = rn["axes_dims"], rn.get("theta", 10000.0)
    make = lambda: Wan(frames, height, width, ch, patch_t, patch, d, depth, heads, ff, text_dim,
                       axes_dims, theta)
    x = torch.randn(a.batch, ch, frames, height, width)
    cond = text_inputs(a.batch, dims)
    bench(a, make, x, cond, training, route)


if __name__ == "__main__":
    main()
