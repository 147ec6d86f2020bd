"""Writes tests/fixtures/dit-official/: a tiny DiT's state dict under the official
facebookresearch/DiT parameter names (`x_embedder.proj.weight`, `t_embedder.mlp.0.weight`,
`blocks.N.adaLN_modulation.1.weight`, `final_layer.linear.weight`, ...; learned sigma, so the
output has 2C channels) and one forward pass's inputs and output, for `--init-from` tests.

The model is written here from the DiT paper's description and the official layout (the official
code is not copied): patch embedding as a strided Conv2d, fixed 2-D sin-cos positions (first half
of the channels the column, each half [sin, cos]), a [cos, sin] frequency embedding of t through
Linear-SiLU-Linear, a label table with a null row, adaLN-Zero blocks (shift, scale, gate for
attention then MLP; qkv packed as [3, heads, head_dim]; tanh-GELU MLP), and a final layer whose
(shift, scale) modulate a LayerNorm before the linear that emits each patch as (row, column,
channel).

Usage (a developer runs it once; CI never does):
  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
  /tmp/torchenv/bin/python tools/make_dit_fixture.py --onnx
  # DiT-S/2's size (models/dit-s2.json), trained-scale weights, written elsewhere:
  /tmp/torchenv/bin/python tools/make_dit_fixture.py --dims 32,4,2,384,6,12,1000 --std 0.02 \
      --out /tmp/dit-s2 --t 3,500 --y 7,1000
"""
import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

S, C, P, D, HEADS, DEPTH, K = 8, 4, 2, 32, 2, 2, 10
OUT = "tests/fixtures/dit-official"


def sincos_1d(dim, pos):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1, 1).double() * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim, grid):
    row, col = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], dim=1).float()[None]


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=P, stride=P)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, D), nn.SiLU(), nn.Linear(D, D))

    def forward(self, t):
        half, dt = self.freq // 2, self.mlp[0].weight.dtype
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=dt) / half)
        args = t[:, None].to(dt) * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding_table = nn.Embedding(K + 1, D)

    def forward(self, y):
        return self.embedding_table(y)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, n, D))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 4 * D)
        self.fc2 = nn.Linear(4 * D, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c):
        sm, cm, gm, sf, cf, gf = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gf.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sf, cf))


class FinalLayer(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(D, P * P * out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = 2 * C  # learned sigma
        self.x_embedder = PatchEmbed()
        self.t_embedder = TimestepEmbedder()
        self.y_embedder = LabelEmbedder()
        self.pos_embed = nn.Parameter(sincos_2d(D, S // P), requires_grad=False)
        self.blocks = nn.ModuleList([Block() for _ in range(DEPTH)])
        self.final_layer = FinalLayer(self.out)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for b in self.blocks:
            x = b(x, c)
        x = self.final_layer(x, c)
        h = w = S // P
        x = x.reshape(x.shape[0], h, w, P, P, self.out)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], self.out, S, S)


def main():
    global S, C, P, D, HEADS, DEPTH, K
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", help="S,C,P,D,HEADS,DEPTH,K (default: the test fixture's)")
    ap.add_argument("--std", type=float, default=0.08, help="std of the random weights")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--t", default="0.5,17,901", help="the noise levels of the recorded pass")
    ap.add_argument("--y", default="3,10,7", help="its labels (K is the null label)")
    ap.add_argument("--onnx", action="store_true",
                    help="also write model.onnx (torch.onnx.export's TorchScript exporter, opset 17) "
                    "and model-dynamo.onnx (its dynamo exporter, opset 18), batch dynamic, for "
                    "`treadc import`")
    a = ap.parse_args()
    if a.dims:
        S, C, P, D, HEADS, DEPTH, K = (int(v) for v in a.dims.split(","))
    torch.manual_seed(0)
    model = DiT()
    # Random weights everywhere (adaLN-Zero's zeros would hide layout mistakes), at a trained
    # model's scale: larger ones make the function so steep that float32 itself (PyTorch's
    # included) strays from the exact output by 1e-3.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.normal_(0.0, a.std)
    t = torch.tensor([float(v) for v in a.t.split(",")])
    y = torch.tensor([int(v) for v in a.y.split(",")])
    x = torch.randn(len(t), C, S, S)
    with torch.no_grad():
        out = model(x, t, y)
        # The same function in float64: the exact output both float32 runs are held to.
        exact = model.double()(x.double(), t.double(), y).float()
    os.makedirs(a.out, exist_ok=True)
    torch.save(model.float().state_dict(), f"{a.out}/state_dict.pt")
    torch.save({"x": x, "t": t, "y": y, "out": out, "out_f64": exact}, f"{a.out}/forward.pt")
    if a.onnx:
        # The TorchScript exporter (dynamo=False), as most released DiT ONNX files were made.
        torch.onnx.export(model.float().eval(), (x, t, y), f"{a.out}/model.onnx", opset_version=17,
                          dynamo=False, input_names=["x", "t", "y"], output_names=["out"],
                          dynamic_axes={n: {0: "B"} for n in ["x", "t", "y", "out"]})
        # The dynamo exporter (torch.export, the default since PyTorch 2.9; needs onnxscript):
        # node names after aten ops, module paths in node metadata.
        batch = torch.export.Dim("B", min=1, max=4096)
        prog = torch.onnx.export(model.float().eval(), (x, t, y), dynamo=True, opset_version=18,
                                 input_names=["x", "t", "y"], output_names=["out"],
                                 dynamic_shapes={"x": {0: batch}, "t": {0: batch}, "y": {0: batch}})
        prog.save(f"{a.out}/model-dynamo.onnx")
    print({k: tuple(v.shape) for k, v in model.state_dict().items()})
    print("out", tuple(out.shape), "max |out|", float(out.abs().max()))
    print("PyTorch float32 vs float64: max |difference|", float((out - exact).abs().max()))


if __name__ == "__main__":
    main()
