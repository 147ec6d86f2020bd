#!/usr/bin/env python3
"""A PyTorch eager reference for `treadc bench` on the PixArt-shaped cross-attention model
(models/mnist-pixart-small.json, pixart-alpha-xl2.json's shape at test size): the same training
step (EDM loss with the file's p_mean/p_std, AdamW and EMA with the file's recipe, EMA as one
multi-tensor lerp, text dropout, TREAD routing of the image tokens), timed dense and routed,
alternating, in one process. Run by developers beside `treadc bench`, never in CI; like
torch_mmdit.py and ../shared/bench/torch_dit.py.

  python3 -m pip install torch numpy   # CPU is enough
  python3 tools/torch_pixart.py --model models/mnist-pixart-small.json --batch 64 --threads 2

The network follows the model file's graph: linear patch embedding plus the fixed sin-cos table
(a buffer: the file's fixed params); adaLN-single (one `t6` linear of silu(time_emb) in the stem,
plus a learned [1, 6D] table per block); per block adaLN-modulated self-attention (qkv and
output projections with biases), un-modulated cross-attention to the projected caption with its
padding mask (masked keys get a −1e9 bias, as treadc's sdpa), adaLN-modulated GELU MLP; the head's
shift/scale are [time_emb, time_emb] plus a learned [1, 2D] table. Text conditioning is random:
context [B, L, DC] with 1..L−1 words and the rest padding, mask [B, L]. A route drops image
tokens only; the caption is never routed. It prints the parameter count (the trainable one, to
compare with `treadc compile`'s; the table is not trainable), same shapes, same FLOPs.

Prints one JSON line: {"dense_ms", "routed_ms", "ratio", "params", ...} (medians over --steps).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_common import (bench, gather_tokens, load_model, merge_tokens, modulate, need, norm,
                          parse_args, route_select, sdpa, sincos_2d, text_inputs, timestep_embed)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.table = nn.Parameter(torch.randn(1, 6 * d) * 0.03)
        self.qkv = nn.Linear(d, 3 * d)  # `attention`: q, k, v and output projections
        self.proj = nn.Linear(d, d)
        self.cq, self.ck, self.cv = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.cross_out = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x, t6, ctx, mask):
        b, n, d = x.shape
        sm, cm, gm, sf, cf, gf = (t6 + self.table).unsqueeze(1).chunk(6, dim=2)
        q, k, v = self.qkv(modulate(norm(x), sm, cm)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gm * self.proj(a)
        x = x + self.cross_out(sdpa(self.cq(x), self.ck(ctx), self.cv(ctx), self.heads, mask))
        h = modulate(norm(x), sf, cf)
        return x + gf * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class PixArt(nn.Module):
    def __init__(self, size, ch, ch_out, patch, d, depth, heads, text_dim):
        super().__init__()
        self.patch, self.ch, self.ch_out, self.size = patch, ch, ch_out, size
        self.x_embed = nn.Linear(patch * patch * ch, d)
        self.register_buffer("pos", sincos_2d(d, size // patch))
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.t6 = nn.Linear(d, 6 * d)
        self.cap = nn.Sequential(nn.Linear(text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
        self.final_table = nn.Parameter(torch.randn(1, 2 * d) * 0.03)
        self.f_lin = nn.Linear(d, patch * patch * ch_out)

    def forward(self, x, t, ctx, mask, route=None):
        b, p, g = x.shape[0], self.patch, self.size // self.patch
        patches = x.reshape(b, self.ch, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, -1)
        h = self.x_embed(patches) + self.pos
        time_emb = self.t_mlp(timestep_embed(t))
        t6 = self.t6(F.silu(time_emb))
        cap = self.cap(ctx)
        n = h.shape[1]
        for i, blk in enumerate(self.blocks):
            if route and i == route[1]:
                idx = route_select(b, n, route[0])
                saved = h
                h = gather_tokens(h, idx)
            h = blk(h, t6, cap, mask)
            if route and i == route[2]:
                h = merge_tokens(saved, h, idx)
        shift, scale = (torch.cat([time_emb, time_emb], dim=1) + self.final_table).unsqueeze(1).chunk(2, dim=2)
        h = self.f_lin(modulate(norm(h), shift, scale))
        h = h.reshape(b, g, g, p, p, self.ch_out).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, self.ch_out, self.size, self.size)


def main():
    a = parse_args("models/mnist-pixart-small.json")
    m, dims, depth, route, training = load_model(a.model)
    size, ch, patch, d, heads = need(dims, a.model, "S", "C", "P", "D", "H")
    need(dims, a.model, "L", "DC")
    ch_out = dims.get("CO", ch)
    make = lambda: PixArt(size, ch, ch_out, patch, d, depth, heads, dims["DC"])
    x = torch.randn(a.batch, ch, size, size)
    cond = text_inputs(a.batch, dims, mask=True)
    bench(a, make, x, cond, training, route)


if __name__ == "__main__":
    main()
