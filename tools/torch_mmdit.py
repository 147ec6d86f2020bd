#!/usr/bin/env python3
"""A PyTorch eager reference for `treadc bench` on the SD3-shaped joint-attention MMDiT
(models/mnist-mmdit-small.json and sd3-medium.json): the same training step (rectified-flow loss
with logit-normal t, AdamW, EMA as one multi-tensor lerp, TREAD routing of the image tokens),
timed dense and routed, alternating, in one process. Run by developers beside `treadc bench`,
never in CI; like ../shared/bench/torch_dit.py for the DiTs.

  python3 -m pip install torch numpy   # CPU is enough
  python3 tools/torch_mmdit.py --model models/mnist-mmdit-small.json --batch 64 --threads 2

The network follows the model file's graph: per stream (text, image) adaLN-modulated pre-norm,
qkv projection, one attention over [text; image], per-stream output projection and GELU MLP; the
last block updates the image stream only (its text branch has shift/scale and qkv, no output);
timestep and pooled-text embedders summed into the conditioning; a route drops image tokens only.
It prints the parameter count so it can be compared with `treadc compile` (same shapes, same FLOPs).

Prints one JSON line: {"dense_ms", "routed_ms", "ratio", "params", ...} (medians over --steps).
"""
import argparse, json, math, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sincos_2d(dim, grid):
    def one(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1, 1).double() * omega
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)
    gy, gx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([one(dim // 2, gx), one(dim // 2, gy)], dim=1).float()[None]


def norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class Stream(nn.Module):
    """One stream's half of a joint block; `last`: the text half of the last block (no output)."""

    def __init__(self, d, last=False):
        super().__init__()
        self.last = last
        self.ada = nn.Linear(d, (2 if last else 6) * d)
        self.qkv = nn.Linear(d, 3 * d)
        if not last:
            self.proj = nn.Linear(d, d)
            self.fc1 = nn.Linear(d, 4 * d)
            self.fc2 = nn.Linear(4 * d, d)

    def pre(self, x, c):
        m = self.ada(c).unsqueeze(1)
        if self.last:
            scale, shift = m.chunk(2, dim=2)
            self.mods = None
        else:
            shift, scale, *self.mods = m.chunk(6, dim=2)
        return self.qkv(norm(x) * (1 + scale) + shift)

    def post(self, x, a):
        gate1, shift2, scale2, gate2 = self.mods
        x = x + gate1 * self.proj(a)
        h = norm(x) * (1 + scale2) + shift2
        return x + gate2 * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class JointBlock(nn.Module):
    def __init__(self, d, heads, last=False):
        super().__init__()
        self.heads, self.last = heads, last
        self.txt, self.img = Stream(d, last), Stream(d)

    def forward(self, txt, img, c):
        b, lt, d = txt.shape
        qkv = torch.cat([self.txt.pre(txt, c), self.img.pre(img, c)], dim=1)
        n = qkv.shape[1]
        q, k, v = qkv.reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        img = self.img.post(img, a[:, lt:])
        return (txt if self.last else self.txt.post(txt, a[:, :lt])), img


class MMDiT(nn.Module):
    def __init__(self, size, ch, patch, d, depth, heads, text_dim, pooled_dim):
        super().__init__()
        self.patch, self.ch, self.size = patch, ch, size
        self.x_embed = nn.Linear(patch * patch * ch, d)
        self.register_buffer("pos", sincos_2d(d, size // patch))
        self.txt_in = nn.Linear(text_dim, d)
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.p_mlp = nn.Sequential(nn.Linear(pooled_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(JointBlock(d, heads, i == depth - 1) for i in range(depth))
        self.f_ada = nn.Linear(d, 2 * d)
        self.f_lin = nn.Linear(d, patch * patch * ch)

    def forward(self, x, t, ctx, pooled, route=None):
        b, p, g = x.shape[0], self.patch, self.size // self.patch
        patches = x.reshape(b, self.ch, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, -1)
        img = self.x_embed(patches) + self.pos
        txt = self.txt_in(ctx)
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        c = F.silu(self.t_mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=1)) + self.p_mlp(pooled))
        n, d = img.shape[1], img.shape[2]
        for i, blk in enumerate(self.blocks):
            if route and i == route[1]:
                keep = n - int(n * route[0])
                idx = torch.rand(b, n).argsort(dim=1)[:, :keep]
                saved = img
                img = img.gather(1, idx[..., None].expand(-1, -1, d))
            txt, img = blk(txt, img, c)
            if route and i == route[2]:
                img = saved.scatter(1, idx[..., None].expand(-1, -1, d), img)
        shift, scale = self.f_ada(c).unsqueeze(1).chunk(2, dim=2)
        h = self.f_lin(norm(img) * (1 + scale) + shift)
        h = h.reshape(b, g, g, p, p, self.ch).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, self.ch, self.size, self.size)


def from_model_json(path):
    """(size, ch, patch, width, depth, heads, text_len, text_dim, pooled_dim, route)."""
    m = json.load(open(path))
    dims = {}
    for k, v in m.get("dims", {}).items():  # integers or expressions over earlier dims
        dims[k] = v if isinstance(v, int) else int(eval(str(v), {"__builtins__": {}}, dict(dims)))
    try:
        size, ch, patch, d, heads = (dims[k] for k in ("S", "C", "P", "D", "H"))
        text_len, text_dim, pooled_dim = dims["L"], dims["DC"], dims["DP"]
    except KeyError as e:
        raise SystemExit(f"{path}: not an MMDiT-style file (dims lack {e})")
    depth = sum(b.get("repeat", 1) for b in m["trunk"]["blocks"])
    r = m.get("routes", "paper")
    if r == "paper" or not r:
        route = (0.5, 2, depth - 4)
    else:
        route = (r[0]["rate"], r[0]["start"], r[0]["end"])
    return size, ch, patch, d, depth, heads, text_len, text_dim, pooled_dim, route


def flow_loss(net, x, ctx, pooled, route):
    t = torch.sigmoid(torch.randn(x.shape[0]))
    drop = (torch.rand(x.shape[0]) < 0.1).float()
    ctx = ctx * (1 - drop)[:, None, None]
    pooled = pooled * (1 - drop)[:, None]
    eps = torch.randn_like(x)
    s = t[:, None, None, None]
    z = (1 - s) * x + s * eps
    return ((net(z, t, ctx, pooled, route) - (eps - x)) ** 2).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/mnist-mmdit-small.json")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["both", "dense", "routed"], default="both")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size, ch, patch, d, depth, heads, text_len, text_dim, pooled_dim, route = from_model_json(a.model)
    args = (size, ch, patch, d, depth, heads, text_dim, pooled_dim)
    net = MMDiT(*args)
    ema = MMDiT(*args).requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
    net_params, ema_params = list(net.parameters()), list(ema.parameters())
    x = torch.randn(a.batch, ch, size, size)
    ctx = torch.randn(a.batch, text_len, text_dim)
    pooled = torch.randn(a.batch, pooled_dim)

    def step(r):
        t0 = time.perf_counter()
        loss = flow_loss(net, x, ctx, pooled, r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # one multi-tensor kernel, as a careful user would write it
            torch._foreach_lerp_(ema_params, net_params, 1 - 0.999)
        return (time.perf_counter() - t0) * 1e3

    kinds = {"both": [None, route], "dense": [None], "routed": [route]}[a.only]
    times = {str(k): [] for k in kinds}
    for i in range(a.warmup + a.steps):
        for k in kinds:
            ms = step(k)
            if i >= a.warmup:
                times[str(k)].append(ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    dense, routed = med.get(str(None)), med.get(str(route))
    print(json.dumps({"dense_ms": dense, "routed_ms": routed,
                      "ratio": routed / dense if dense and routed else None,
                      "params": sum(p.numel() for p in net_params),
                      "model": a.model, "route": list(route), "batch": a.batch,
                      "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
