#!/usr/bin/env python3
"""A PyTorch eager reference for `treadc bench` on the Flux-shaped model
(models/mnist-flux-small.json, flux-dev.json's shape at test size): the same training step
(rectified-flow loss with logit-normal t, AdamW and EMA with the file's recipe, EMA as one
multi-tensor lerp, text dropout, TREAD routing of the image tokens), timed dense and routed,
alternating, in one process. Run by developers beside `treadc bench`, never in CI; like
torch_mmdit.py and ../shared/bench/torch_dit.py.

  python3 -m pip install torch numpy   # CPU is enough
  python3 tools/torch_flux.py --model models/mnist-flux-small.json --batch 64 --threads 2

The network follows the model file's graph: one trunk value [text; image] (linear embeddings of
the context and the patches), 3-axis positions (text 0, image (0, row, column)) and RoPE over
them (the file's axes_dims and theta, pairs (2i, 2i+1)); conditioning silu(time MLP + pooled MLP);
double-stream blocks (per stream adaLN ×6, qkv, QK RMS head-norm, one joint attention, per-stream
output projection and GELU MLP) and single-stream blocks (adaLN ×3, one 7D in-projection split
into q, k, v and a 4D GELU MLP, one 5D→D output projection, gated residual). A route keeps a
random subset of the image tokens (and their positions) through its blocks; the L text tokens pass
whole, as treadc's stream_indices. Text conditioning is random: context [B, L, DC], pooled [B, DP].
It prints the parameter count to compare with `treadc compile` (same shapes, same FLOPs).

Prints one JSON line: {"dense_ms", "routed_ms", "ratio", "params", ...} (medians over --steps).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_common import (bench, gather_tokens, head_norm, load_model, merge_tokens, modulate, need,
                          norm, parse_args, positions, rope, rope_freqs, rope_tables, route_select,
                          sdpa, text_inputs, timestep_embed)


def rope_of(m, block):
    """(axes_dims, theta) of the first rope node of a block template."""
    for node in m["blocks"][block]["nodes"]:
        if node["op"] == "rope":
            return node["axes_dims"], node.get("theta", 10000.0)
    raise SystemExit(f"block `{block}` has no rope node")


class Stream(nn.Module):
    """One stream's half of a double block."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ada = nn.Linear(d, 6 * d)
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.Parameter(torch.ones(d // heads))
        self.k_norm = nn.Parameter(torch.ones(d // heads))
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def pre(self, x, c):
        shift, scale, *self.mods = self.ada(c).unsqueeze(1).chunk(6, dim=2)
        q, k, v = self.qkv(modulate(norm(x), shift, scale)).chunk(3, dim=2)
        return head_norm(q, self.q_norm, self.heads), head_norm(k, self.k_norm, self.heads), v

    def post(self, x, a):
        gate1, shift2, scale2, gate2 = self.mods
        x = x + gate1 * self.proj(a)
        h = modulate(norm(x), shift2, scale2)
        return x + gate2 * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class Double(nn.Module):
    def __init__(self, d, heads, text_len):
        super().__init__()
        self.heads, self.lt = heads, text_len
        self.txt, self.img = Stream(d, heads), Stream(d, heads)

    def forward(self, x, c, cs):
        lt = self.lt
        tq, tk, tv = self.txt.pre(x[:, :lt], c)
        iq, ik, iv = self.img.pre(x[:, lt:], c)
        q = rope(torch.cat([tq, iq], dim=1), cs, self.heads)
        k = rope(torch.cat([tk, ik], dim=1), cs, self.heads)
        a = sdpa(q, k, torch.cat([tv, iv], dim=1), self.heads)
        return torch.cat([self.txt.post(x[:, :lt], a[:, :lt]), self.img.post(x[:, lt:], a[:, lt:])], dim=1)


class Single(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.d = heads, d
        self.ada = nn.Linear(d, 3 * d)
        self.in_proj = nn.Linear(d, 7 * d)
        self.q_norm = nn.Parameter(torch.ones(d // heads))
        self.k_norm = nn.Parameter(torch.ones(d // heads))
        self.proj = nn.Linear(5 * d, d)

    def forward(self, x, c, cs):
        d = self.d
        shift, scale, gate = self.ada(c).unsqueeze(1).chunk(3, dim=2)
        q, k, v, mlp = self.in_proj(modulate(norm(x), shift, scale)).split([d, d, d, 4 * d], dim=2)
        q = rope(head_norm(q, self.q_norm, self.heads), cs, self.heads)
        k = rope(head_norm(k, self.k_norm, self.heads), cs, self.heads)
        a = sdpa(q, k, v, self.heads)
        return x + gate * self.proj(torch.cat([a, F.gelu(mlp, approximate="tanh")], dim=2))


class Flux(nn.Module):
    def __init__(self, size, ch, patch, d, n_double, n_single, heads, text_len, text_dim, pooled_dim,
                 axes_dims, theta):
        super().__init__()
        self.patch, self.ch, self.size, self.lt = patch, ch, size, text_len
        g = size // patch
        self.img_in = nn.Linear(patch * patch * ch, d)
        self.txt_in = nn.Linear(text_dim, d)
        self.register_buffer("pe", torch.cat([positions(text_len, [], 3), positions(g * g, [g, g], 3)], dim=1))
        self.register_buffer("freqs", rope_freqs(axes_dims, theta))
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.p_mlp = nn.Sequential(nn.Linear(pooled_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Double(d, heads, text_len) for _ in range(n_double)]
                                    + [Single(d, heads) for _ in range(n_single)])
        self.f_ada = nn.Linear(d, 2 * d)
        self.f_lin = nn.Linear(d, patch * patch * ch)

    def forward(self, x, t, ctx, pooled, route=None):
        b, p, g, lt = x.shape[0], self.patch, self.size // self.patch, self.lt
        patches = x.reshape(b, self.ch, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, -1)
        h = torch.cat([self.txt_in(ctx), self.img_in(patches)], dim=1)
        c = F.silu(self.t_mlp(timestep_embed(t)) + self.p_mlp(pooled))
        cs_all = rope_tables(self.pe, self.freqs)
        cs = cs_all
        for i, blk in enumerate(self.blocks):
            if route and i == route[1]:  # the image stream only: text tokens kept whole
                idx = route_select(b, h.shape[1] - lt, route[0], before=lt)
                saved = h
                h = gather_tokens(h, idx)
                cs = rope_tables(gather_tokens(self.pe, idx), self.freqs)
            h = blk(h, c, cs)
            if route and i == route[2]:
                h = merge_tokens(saved, h, idx)
                cs = cs_all
        shift, scale = self.f_ada(c).unsqueeze(1).chunk(2, dim=2)
        h = self.f_lin(modulate(norm(h[:, lt:]), shift, scale))
        h = h.reshape(b, g, g, p, p, self.ch).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, self.ch, self.size, self.size)


def main():
    a = parse_args("models/mnist-flux-small.json")
    m, dims, depth, route, training = load_model(a.model)
    size, ch, patch, d, heads, text_len, text_dim, pooled_dim = need(
        dims, a.model, "S", "C", "P", "D", "H", "L", "DC", "DP")
    reps = {e["block"]: e.get("repeat", 1) for e in m["trunk"]["blocks"]}
    n_double, n_single = reps.get("double", 0), reps.get("single", 0)
    if n_double + n_single != depth:
        raise SystemExit(f"{a.model}: the trunk is not double blocks then single blocks")
    axes_dims, theta = rope_of(m, "double" if n_double else "single")
    if route[3] != "image":
        raise SystemExit(f"{a.model}: only routes of the image stream are mirrored")
    make = lambda: Flux(size, ch, patch, d, n_double, n_single, heads, text_len, text_dim, pooled_dim,
                        axes_dims, theta)
    x = torch.randn(a.batch, ch, size, size)
    cond = text_inputs(a.batch, dims, pooled=pooled_dim)
    bench(a, make, x, cond, training, route)


if __name__ == "__main__":
    main()
