"""Shared pieces of the PyTorch eager references tools/torch_pixart.py, torch_flux.py and
torch_wan.py (torch_mmdit.py predates them and stands alone): reading a treadc model file (dims,
depth, route, training recipe), the ops the model files name (timestep_embed, pos_embed_2d,
positions, rope, head_norm, sdpa with a key mask), TREAD's gather and merge, the two objectives
(EDM, rectified flow) and the timing loop with its one-line JSON report.

Run by developers beside `treadc bench`, never in CI. Nothing here is imported by the project.
"""
import argparse, json, math, statistics, time

import torch
import torch.nn.functional as F

MASKED_KEY_BIAS = -1.0e9  # compiler/src/tables.rs: a masked key's additive bias
SIGMA_DATA = 0.5  # compiler/src/edm.rs

TRAINING_DEFAULTS = {  # docs/model-format.md §10
    "objective": "edm", "lr": 1e-4, "lr_warmup": 0, "weight_decay": 0.0, "ema_decay": 0.9999,
    "ema_warmup": False, "p_mean": -1.2, "p_std": 1.2, "class_dropout": 0.1,
}


def load_model(path):
    """(model json, dims, depth, route (rate, start, end, stream), training recipe)."""
    m = json.load(open(path))
    dims = {}
    for k, v in m.get("dims", {}).items():  # integers or expressions over earlier dims
        dims[k] = v if isinstance(v, int) else int(eval(str(v), {"__builtins__": {}}, dict(dims)))
    depth = sum(b.get("repeat", 1) for b in m["trunk"]["blocks"])
    r = m.get("routes", "paper")
    if isinstance(r, list) and r:
        r = r[0]
    if r == "paper" or not r:
        route = (0.5, 2, depth - 4, "image")
    else:
        route = (r["rate"], r["start"], r["end"], r.get("stream", "image"))
    training = dict(TRAINING_DEFAULTS, **m.get("training", {}))
    return m, dims, depth, route, training


def need(dims, path, *keys):
    try:
        return tuple(dims[k] for k in keys)
    except KeyError as e:
        raise SystemExit(f"{path}: not the expected kind of model file (dims lack {e})")


# ---- ops -------------------------------------------------------------------------------------

def norm(x, eps=1e-6):
    """layer_norm without affine (the model files' default)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def timestep_embed(t, dim=256, max_period=10000):
    """[B, dim], [cos, sin] order."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def sincos_2d(dim, grid):
    """pos_embed_2d: [1, grid², dim], first half of the channels the column, second the row."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1, 1).double() * omega
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)
    gy, gx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([one(dim // 2, gx), one(dim // 2, gy)], dim=1).float()[None]


def positions(tokens, grid, axes):
    """`positions`: [1, tokens, axes], the last len(grid) axes the row-major grid coordinates."""
    p = torch.zeros(tokens, axes)
    if grid:
        coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float32) for g in grid], indexing="ij")
        for i, c in enumerate(coords):
            p[:, axes - len(grid) + i] = c.reshape(-1)
    return p[None]


def rope_freqs(axes_dims, theta):
    """[axes, dh/2], block-diagonal: axis a owns its dim_a/2 columns, θ^(−2j/dim_a)."""
    half = sum(axes_dims) // 2
    m = torch.zeros(len(axes_dims), half, dtype=torch.float64)
    col = 0
    for a, d in enumerate(axes_dims):
        m[a, col:col + d // 2] = theta ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
        col += d // 2
    return m.float()


def rope_tables(pe, freqs):
    """cos, sin [1 or B, T, dh/2] of the angles positions·freqs."""
    angles = pe @ freqs
    return torch.cos(angles), torch.sin(angles)


def rope(x, cs, heads):
    """Each head's pairs (2i, 2i+1) of x [B, T, D] turned by the angles of `cs` (rope_tables)."""
    cos, sin = cs
    b, n, d = x.shape
    pairs = x.reshape(b, n, heads, d // heads // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, :, None], sin[:, :, None]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(b, n, d)


def head_norm(x, weight, heads, eps=1e-6):
    """head_norm rms (QK-norm): each head's D/heads features alone, one weight shared by heads."""
    b, n, d = x.shape
    return F.rms_norm(x.reshape(b, n, heads, d // heads), (d // heads,), weight, eps).reshape(b, n, d)


def sdpa(q, k, v, heads, mask=None):
    """softmax(q·kᵀ/√dh + bias)·v; `mask` [B, Tk] (1 attend, 0 padding) → additive key bias."""
    b, tq, d = q.shape
    tk, dv = k.shape[1], v.shape[2]
    split = lambda t, n, w: t.reshape(b, n, heads, w // heads).transpose(1, 2)
    bias = None
    if mask is not None:
        bias = ((1 - mask) * MASKED_KEY_BIAS)[:, None, None, :]
    a = F.scaled_dot_product_attention(split(q, tq, d), split(k, tk, d), split(v, tk, dv), attn_mask=bias)
    return a.transpose(1, 2).reshape(b, tq, dv)


# ---- TREAD routing -----------------------------------------------------------------------------

def route_select(b, n, rate, before=0):
    """Kept indices [B, keep] of n routed tokens (random order), shifted past `before` tokens of
    other streams, which are kept whole (stream_indices): [B, before + keep]."""
    keep = n - int(n * rate)
    idx = torch.rand(b, n).argsort(dim=1)[:, :keep] + before
    if before:
        idx = torch.cat([torch.arange(before).expand(b, before), idx], dim=1)
    return idx


def gather_tokens(v, idx):
    """[1 or B, N, D] → [B, keep, D]."""
    v = v.expand(idx.shape[0], -1, -1)
    return v.gather(1, idx[..., None].expand(-1, -1, v.shape[2]))


def merge_tokens(base, kept, idx):
    return base.scatter(1, idx[..., None].expand(-1, -1, base.shape[2]), kept)


# ---- objectives ----------------------------------------------------------------------------------

def edm_loss(net, x, cond, training, route):
    """ln σ ~ N(p_mean, p_std²); D = c_skip·y + c_out·F(c_in·y, ln σ/4); loss mean λ(σ)(D − x)²."""
    sd = SIGMA_DATA
    sigma = torch.exp(training["p_mean"] + training["p_std"] * torch.randn(x.shape[0]))
    s = sigma.reshape(-1, *[1] * (x.dim() - 1))
    noisy = x + torch.randn_like(x) * s
    c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt()
    c_in, c_noise = 1 / (sd**2 + s**2).sqrt(), sigma.log() / 4
    den = c_skip * noisy + c_out * net(c_in * noisy, c_noise, *cond, route=route)
    w = (s**2 + sd**2) / (s * sd) ** 2
    return (w * (den - x) ** 2).mean()


def flow_loss(net, x, cond, training, route):
    """t = sigmoid(N(0, 1)), z = (1 − t)x + tε, loss mean (v(z, t) − (ε − x))²."""
    t = torch.sigmoid(torch.randn(x.shape[0]))
    eps = torch.randn_like(x)
    s = t.reshape(-1, *[1] * (x.dim() - 1))
    z = (1 - s) * x + s * eps
    return ((net(z, t, *cond, route=route) - (eps - x)) ** 2).mean()


OBJECTIVES = {"edm": edm_loss, "flow": flow_loss}


def text_dropout(tensors, p):
    """class_dropout for a text model: a dropped sample gets the empty text (every text input 0)."""
    keep = (torch.rand(tensors[0].shape[0]) >= p).float()
    return [v * keep.reshape(-1, *[1] * (v.dim() - 1)) for v in tensors]


def text_inputs(b, dims, mask=False, pooled=None):
    """Random context [B, L, DC] (+ mask [B, L] of 1..L−1 words, the rest padding; + pooled [B, DP])."""
    L, dc = dims["L"], dims["DC"]
    out = [torch.randn(b, L, dc)]
    if mask:
        lengths = torch.randint(1, L, (b, 1))
        out[0] = out[0] * (torch.arange(L)[None] < lengths)[..., None]  # padding: zero vectors
        out.append((torch.arange(L)[None] < lengths).float())
    if pooled:
        out.append(torch.randn(b, pooled))
    return out


# ---- the benchmark ------------------------------------------------------------------------------

def parse_args(default_model):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=default_model)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["both", "dense", "routed"], default="both")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a


def bench(a, make_net, x, cond, training, route):
    """Times the training step (loss with text dropout, AdamW, EMA as one multi-tensor lerp) dense
    and routed, alternating, and prints one JSON line of medians."""
    net = make_net()
    ema = make_net().requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=training["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=training["weight_decay"])
    net_params, ema_params = list(net.parameters()), list(ema.parameters())
    loss_fn = OBJECTIVES[training["objective"]]
    n_step = [0]

    def step(r):
        s = n_step[0]
        n_step[0] += 1
        t0 = time.perf_counter()
        if training["lr_warmup"]:
            for g in opt.param_groups:
                g["lr"] = training["lr"] * min(1.0, (s + 1) / training["lr_warmup"])
        c = text_dropout(cond, training["class_dropout"])
        loss = loss_fn(net, x, c, training, r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = training["ema_decay"]
        if training["ema_warmup"]:
            decay = min(decay, (1 + s) / (10 + s))
        with torch.no_grad():  # one multi-tensor kernel, as a careful user would write it
            torch._foreach_lerp_(ema_params, net_params, 1 - decay)
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
                      "model": a.model, "route": list(route[:3]), "batch": a.batch,
                      "threads": a.threads, "torch": torch.__version__}))
