#!/usr/bin/env python3
"""Writes the preset model files in this folder (models/*.json).

The presets are data: the compiler reads them and the tests compile each one. They are generated
so that every family shares one block definition; edit this script and rerun
`python3 models/generate.py` rather than editing the JSON by hand. Format: docs/model-format.md.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def dumps(v):
    return json.dumps(v, ensure_ascii=False)


def node(name, op, ins=None, **attrs):
    n = {"name": name, "op": op}
    if ins:
        n["in"] = ins
    n.update(attrs)
    return n


def chunks(src, prefix_names, axis):
    k = len(prefix_names)
    return [node(n, "chunk", [src], axis=axis, chunks=k, index=i) for i, n in enumerate(prefix_names)]


def image_inputs(labelled=True):
    inputs = {
        "x": {"shape": ["B", "C", "S", "S"], "role": "image"},
        "t": {"shape": ["B"], "role": "noise_level"},
    }
    if labelled:
        inputs["y"] = {"shape": ["B"], "dtype": "i64", "role": "label"}
    return inputs


def dit_stem():
    return [
        node("patches", "patchify", ["x"], patch="P"),
        node("x_embed", "linear", ["patches"], out="D"),
        node("pos", "pos_embed_2d", height="S/P", width="S/P", dim="D"),
        node("tokens", "add", ["x_embed", "pos"]),
        node("t_freq", "timestep_embed", ["t"], dim=256),
        node("t_hidden", "linear", ["t_freq"], out="D"),
        node("t_act", "silu", ["t_hidden"]),
        node("t_emb", "linear", ["t_act"], out="D"),
        node("y_emb", "class_embed", ["y"], classes="K", dim="D"),
        node("c", "add", ["t_emb", "y_emb"]),
        node("c_act", "silu", ["c"]),
    ]


def adaln(n_chunks, names):
    return [
        node("ada", "linear", ["c"], out=f"{n_chunks}*D"),
        node("ada_t", "unsqueeze", ["ada"], axis=1),
    ] + chunks("ada_t", names, axis=2)


def dit_block():
    """DiT block: adaLN-Zero with gates, pre-LN attention and MLP (tread.md §2)."""
    return {
        "params": ["x", "c"],
        "nodes": adaln(6, ["shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp"]) + [
            node("norm1", "layer_norm", ["x"], eps=1e-6),
            node("mod1", "modulate", ["norm1", "shift_msa", "scale_msa"]),
            node("attn", "attention", ["mod1"], heads="H"),
            node("gated_attn", "mul", ["gate_msa", "attn"]),
            node("res1", "add", ["x", "gated_attn"]),
            node("norm2", "layer_norm", ["res1"], eps=1e-6),
            node("mod2", "modulate", ["norm2", "shift_mlp", "scale_mlp"]),
            node("fc1", "linear", ["mod2"], out="4*D"),
            node("act", "gelu", ["fc1"], approximate="tanh"),
            node("fc2", "linear", ["act"], out="D"),
            node("gated_mlp", "mul", ["gate_mlp", "fc2"]),
            node("out", "add", ["res1", "gated_mlp"]),
        ],
        "output": "out",
    }


def dit_head(trunk="trunk"):
    return [
        node("final_ada", "linear", ["c_act"], out="2*D"),
        node("final_ada_t", "unsqueeze", ["final_ada"], axis=1),
    ] + chunks("final_ada_t", ["final_shift", "final_scale"], axis=2) + [
        node("final_norm", "layer_norm", [trunk], eps=1e-6),
        node("final_mod", "modulate", ["final_norm", "final_shift", "final_scale"]),
        node("final_linear", "linear", ["final_mod"], out="P*P*C"),
        node("image", "unpatchify", ["final_linear"], patch="P", height="S", width="S"),
    ]


def dit(name, depth, d, heads, patch, objective="edm", size=32, channels=4, classes=1000,
        description=None, training=None, routes="paper"):
    train = {"objective": objective, "init": "xavier", "lr": 1e-4, "weight_decay": 0.0,
             "ema_decay": 0.9999, "ema_warmup": False, "class_dropout": 0.1, "batch": 256}
    train.update(training or {})
    return {
        "format": "treadc.model/1",
        "name": name,
        "description": description or (
            f"{name}: DiT as the official TREAD code builds it (tread.md §2) on "
            f"{channels}x{size}x{size} latents, {classes} classes, no learned sigma. "
            + ("Trained with the EDM objective." if objective == "edm" else
               "SiT: the same network trained with a rectified-flow objective.")),
        "dims": {"S": size, "C": channels, "P": patch, "D": d, "H": heads, "K": classes},
        "inputs": image_inputs(),
        "stem": dit_stem(),
        "blocks": {"dit": dit_block()},
        "trunk": {"input": "tokens", "blocks": [{"block": "dit", "repeat": depth, "args": {"c": "c_act"}}]},
        "head": dit_head(),
        "outputs": {"out": "image"},
        "routes": routes,
        "training": train,
    }


def uvit_s():
    """U-ViT-style: plain pre-LN transformer blocks, conditioning added to the tokens once,
    long skips from in-block k to out-block depth-1-k joined by concat + linear."""
    in_block = {
        "params": ["x"],
        "nodes": [
            node("norm1", "layer_norm", ["x"], eps=1e-6, affine=True),
            node("attn", "attention", ["norm1"], heads="H"),
            node("res1", "add", ["x", "attn"]),
            node("norm2", "layer_norm", ["res1"], eps=1e-6, affine=True),
            node("fc1", "linear", ["norm2"], out="4*D"),
            node("act", "gelu", ["fc1"]),
            node("fc2", "linear", ["act"], out="D"),
            node("out", "add", ["res1", "fc2"]),
        ],
        "output": "out",
    }
    out_block = {
        "params": ["h", "skip"],
        "nodes": [node("joined", "concat", ["h", "skip"], axis=2),
                  node("x", "linear", ["joined"], out="D")] + in_block["nodes"],
        "output": "out",
    }
    half = 6
    trunk = [{"block": "plain", "repeat": half + 1}]
    for k in range(half + 1, 2 * half + 1):
        trunk.append({"block": "skip_join", "args": {"skip": f"blocks.{2 * half - k}"}})
    return {
        "format": "treadc.model/1",
        "name": "U-ViT-S/2",
        "description": "U-ViT-style backbone (13 blocks: 6 in, 1 mid, 6 out) with long skip "
                       "connections (concat + linear) from block k to block 12-k. Conditioning is "
                       "added to every token once before the trunk (U-ViT proper prepends it as "
                       "extra tokens); no final 3x3 conv.",
        "dims": {"S": 32, "C": 4, "P": 2, "D": 512, "H": 8, "K": 1000},
        "inputs": image_inputs(),
        "stem": [
            node("patches", "patchify", ["x"], patch="P"),
            node("x_embed", "linear", ["patches"], out="D"),
            node("pos", "param", shape=[1, "(S/P)*(S/P)", "D"], token_axis=1, init="normal", std=0.02),
            node("t_freq", "timestep_embed", ["t"], dim="D"),
            node("t_hidden", "linear", ["t_freq"], out="4*D"),
            node("t_act", "silu", ["t_hidden"]),
            node("t_emb", "linear", ["t_act"], out="D"),
            node("y_emb", "class_embed", ["y"], classes="K", dim="D"),
            node("c", "add", ["t_emb", "y_emb"]),
            node("c_tok", "unsqueeze", ["c"], axis=1),
            node("pos_tokens", "add", ["x_embed", "pos"]),
            node("tokens", "add", ["pos_tokens", "c_tok"]),
        ],
        "blocks": {"plain": in_block, "skip_join": out_block},
        "trunk": {"input": "tokens", "blocks": trunk},
        "head": [
            node("final_norm", "layer_norm", ["trunk"], eps=1e-6, affine=True),
            node("final_linear", "linear", ["final_norm"], out="P*P*C"),
            node("image", "unpatchify", ["final_linear"], patch="P", height="S", width="S"),
        ],
        "outputs": {"out": "image"},
        "routes": "paper",
        "training": {"objective": "edm", "init": "xavier", "batch": 256},
    }


def gated_conv_s2():
    """Order-sensitive backbone: DiT-S/2 whose attention is replaced by a gated causal depthwise
    convolution over the token sequence (Mamba/RWKV-like local mixing without a scan)."""
    block = {
        "params": ["x", "c"],
        "nodes": adaln(6, ["shift_mix", "scale_mix", "gate_mix", "shift_mlp", "scale_mlp", "gate_mlp"]) + [
            node("norm1", "layer_norm", ["x"], eps=1e-6),
            node("mod1", "modulate", ["norm1", "shift_mix", "scale_mix"]),
            node("in_proj", "linear", ["mod1"], out="2*D"),
            node("u", "chunk", ["in_proj"], axis=2, chunks=2, index=0),
            node("z", "chunk", ["in_proj"], axis=2, chunks=2, index=1),
            node("u_conv", "token_conv", ["u"], kernel=4, causal=True),
            node("u_act", "silu", ["u_conv"]),
            node("z_act", "silu", ["z"]),
            node("mixed", "mul", ["u_act", "z_act"]),
            node("out_proj", "linear", ["mixed"], out="D"),
            node("gated_mix", "mul", ["gate_mix", "out_proj"]),
            node("res1", "add", ["x", "gated_mix"]),
            node("norm2", "layer_norm", ["res1"], eps=1e-6),
            node("mod2", "modulate", ["norm2", "shift_mlp", "scale_mlp"]),
            node("fc1", "linear", ["mod2"], out="4*D"),
            node("act", "gelu", ["fc1"], approximate="tanh"),
            node("fc2", "linear", ["act"], out="D"),
            node("gated_mlp", "mul", ["gate_mlp", "fc2"]),
            node("out", "add", ["res1", "gated_mlp"]),
        ],
        "output": "out",
    }
    m = dit("GatedConv-S/2", 12, 384, 6, 2)
    m["description"] = ("Order-sensitive backbone: DiT-S/2 with attention replaced by a gated causal "
                        "depthwise convolution over the token sequence (kernel 4; Mamba/RWKV-like "
                        "local mixing, no selective scan). Routing must keep kept tokens in order.")
    m["blocks"] = {"gated_conv": block}
    m["trunk"]["blocks"][0]["block"] = "gated_conv"
    return m


def mlp_embedder(prefix, src, out="D"):
    """Linear → SiLU → linear (Flux's MLPEmbedder, DiT's timestep MLP)."""
    return [
        node(f"{prefix}_hidden", "linear", [src], out=out),
        node(f"{prefix}_act", "silu", [f"{prefix}_hidden"]),
        node(f"{prefix}_emb", "linear", [f"{prefix}_act"], out=out),
    ]


def attention_heads(prefix, src):
    """q, k, v of one stream: a packed projection, chunked, each of q and k RMS-normed per head."""
    return [
        node(f"{prefix}_qkv", "linear", [src], out="3*D"),
    ] + chunks(f"{prefix}_qkv", [f"{prefix}_q0", f"{prefix}_k0", f"{prefix}_v"], axis=2) + [
        node(f"{prefix}_q", "head_norm", [f"{prefix}_q0"], heads="H", norm="rms"),
        node(f"{prefix}_k", "head_norm", [f"{prefix}_k0"], heads="H", norm="rms"),
    ]


def joint_attention(streams, out, axes):
    """One attention over the streams' concatenation [text; image], with RoPE on q and k."""
    nodes = []
    for part in ("q", "k", "v"):
        nodes.append(node(f"joint_{part}", "concat", [f"{s}_{part}" for s in streams], axis=1))
    nodes += [
        node("rq", "rope", ["joint_q", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node("rk", "rope", ["joint_k", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node(out, "sdpa", ["rq", "rk", "joint_v"], heads="H"),
    ]
    return nodes


def flux_double_block(axes):
    """Flux/MMDiT double-stream block on the joined trunk [text; image]: each stream has its own
    modulation, norms, projections and MLP; one attention runs over both."""
    nodes = [
        node("txt", "select_stream", ["x"], stream="text"),
        node("img", "select_stream", ["x"], stream="image"),
    ]
    for s in ("img", "txt"):
        nodes += [
            node(f"{s}_ada", "linear", ["c"], out="6*D"),
            node(f"{s}_ada_t", "unsqueeze", [f"{s}_ada"], axis=1),
        ] + chunks(f"{s}_ada_t", [f"{s}_shift1", f"{s}_scale1", f"{s}_gate1",
                                  f"{s}_shift2", f"{s}_scale2", f"{s}_gate2"], axis=2) + [
            node(f"{s}_norm1", "layer_norm", [s], eps=1e-6),
            node(f"{s}_mod1", "modulate", [f"{s}_norm1", f"{s}_shift1", f"{s}_scale1"]),
        ] + attention_heads(s, f"{s}_mod1")
    nodes += joint_attention(["txt", "img"], "attn", axes)
    for s in ("txt", "img"):
        nodes += [
            node(f"{s}_attn", "select_stream", ["attn"], stream="text" if s == "txt" else "image"),
            node(f"{s}_proj", "linear", [f"{s}_attn"], out="D"),
            node(f"{s}_gated1", "mul", [f"{s}_gate1", f"{s}_proj"]),
            node(f"{s}_res1", "add", [s, f"{s}_gated1"]),
            node(f"{s}_norm2", "layer_norm", [f"{s}_res1"], eps=1e-6),
            node(f"{s}_mod2", "modulate", [f"{s}_norm2", f"{s}_shift2", f"{s}_scale2"]),
            node(f"{s}_fc1", "linear", [f"{s}_mod2"], out="4*D"),
            node(f"{s}_act", "gelu", [f"{s}_fc1"], approximate="tanh"),
            node(f"{s}_fc2", "linear", [f"{s}_act"], out="D"),
            node(f"{s}_gated2", "mul", [f"{s}_gate2", f"{s}_fc2"]),
            node(f"{s}_out", "add", [f"{s}_res1", f"{s}_gated2"]),
        ]
    nodes.append(node("out", "concat", ["txt_out", "img_out"], axis=1))
    return {"params": ["x", "c", "pe"], "nodes": nodes, "output": "out"}


def flux_single_block(axes):
    """Flux single-stream block: attention and MLP in parallel from one modulated input, on the
    joined stream; one output projection over [attention; MLP]."""
    nodes = [
        node("ada", "linear", ["c"], out="3*D"),
        node("ada_t", "unsqueeze", ["ada"], axis=1),
    ] + chunks("ada_t", ["shift", "scale", "gate"], axis=2) + [
        node("norm", "layer_norm", ["x"], eps=1e-6),
        node("mod", "modulate", ["norm", "shift", "scale"]),
        node("in_proj", "linear", ["mod"], out="7*D"),
        node("qkv_q0", "chunk", ["in_proj"], axis=2, chunks=7, index=0),
        node("qkv_k0", "chunk", ["in_proj"], axis=2, chunks=7, index=1),
        node("qkv_v", "chunk", ["in_proj"], axis=2, chunks=7, index=2),
        node("mlp_a", "chunk", ["in_proj"], axis=2, chunks=7, index=3),
        node("mlp_b", "chunk", ["in_proj"], axis=2, chunks=7, index=4),
        node("mlp_c", "chunk", ["in_proj"], axis=2, chunks=7, index=5),
        node("mlp_d", "chunk", ["in_proj"], axis=2, chunks=7, index=6),
        node("mlp_in", "concat", ["mlp_a", "mlp_b", "mlp_c", "mlp_d"], axis=2),
        node("qkv_q", "head_norm", ["qkv_q0"], heads="H", norm="rms"),
        node("qkv_k", "head_norm", ["qkv_k0"], heads="H", norm="rms"),
        node("rq", "rope", ["qkv_q", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node("rk", "rope", ["qkv_k", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node("attn", "sdpa", ["rq", "rk", "qkv_v"], heads="H"),
        node("mlp_act", "gelu", ["mlp_in"], approximate="tanh"),
        node("both", "concat", ["attn", "mlp_act"], axis=2),
        node("proj", "linear", ["both"], out="D"),
        node("gated", "mul", ["gate", "proj"]),
        node("out", "add", ["x", "gated"]),
    ]
    return {"params": ["x", "c", "pe"], "nodes": nodes, "output": "out"}


def flux(name, double, single, d, heads, axes, size, channels, patch, text_len, text_dim,
         pooled_dim, guidance, description, training=None):
    """Flux (FLUX.1): double-stream blocks, then single-stream blocks, on the joined trunk
    [text; image]; 3-axis RoPE over (0, row, column) positions (text positions zero)."""
    train = {"objective": "flow", "init": "xavier", "lr": 1e-4, "ema_decay": 0.9999,
             "class_dropout": 0.1, "batch": 256}
    train.update(training or {})
    inputs = {
        "x": {"shape": ["B", "C", "S", "S"], "role": "image"},
        "t": {"shape": ["B"], "role": "noise_level"},
        "ctx": {"shape": ["B", "L", "DC"], "role": "context"},
        "pooled": {"shape": ["B", "DP"], "role": "pooled"},
    }
    stem = [
        node("patches", "patchify", ["x"], patch="P"),
        node("img_in", "linear", ["patches"], out="D"),
        node("txt_in", "linear", ["ctx"], out="D"),
        node("tokens", "concat", ["txt_in", "img_in"], axis=1),
        node("txt_pos", "positions", stream="text", tokens="L", axes=3),
        node("img_pos", "positions", stream="image", tokens="(S/P)*(S/P)", grid=["S/P", "S/P"], axes=3),
        node("pe", "concat", ["txt_pos", "img_pos"], axis=1),
        node("t_freq", "timestep_embed", ["t"], dim=256),
    ] + mlp_embedder("time", "t_freq") + mlp_embedder("vector", "pooled")
    cond = ["time_emb", "vector_emb"]
    if guidance:
        inputs["g"] = {"shape": ["B"], "role": "guidance"}
        stem += [node("g_freq", "timestep_embed", ["g"], dim=256)] + mlp_embedder("guidance", "g_freq")
        stem.append(node("tg", "add", ["time_emb", "guidance_emb"]))
        cond = ["tg", "vector_emb"]
    stem += [node("c", "add", cond), node("c_act", "silu", ["c"])]
    head = [
        node("img_tokens", "select_stream", ["trunk"], stream="image"),
    ] + dit_head("img_tokens")
    return {
        "format": "treadc.model/1",
        "name": name,
        "description": description,
        "dims": {"S": size, "C": channels, "P": patch, "D": d, "H": heads, "L": text_len,
                 "DC": text_dim, "DP": pooled_dim},
        "inputs": inputs,
        "stem": stem,
        "blocks": {"double": flux_double_block(axes), "single": flux_single_block(axes)},
        "trunk": {"input": "tokens", "blocks": [
            {"block": "double", "repeat": double, "args": {"c": "c_act", "pe": "pe"}},
            {"block": "single", "repeat": single, "args": {"c": "c_act", "pe": "pe"}},
        ]},
        "head": head,
        "outputs": {"out": "image"},
        "routes": "paper",
        "training": train,
    }


def mmdit_block(last=False):
    """SD3's MMDiT block on the joined trunk [text; image]: per-stream adaLN-Zero, projections and
    MLPs, one joint attention (no positional bias). The last block updates the image stream only
    (its text modulation is a continuous adaLN: scale and shift, no gates; no text MLP)."""
    nodes = [
        node("txt", "select_stream", ["x"], stream="text"),
        node("img", "select_stream", ["x"], stream="image"),
    ]
    for s in ("img", "txt"):
        if s == "txt" and last:
            mod = [f"{s}_scale1", f"{s}_shift1"]
            nodes += [node(f"{s}_ada", "linear", ["c"], out="2*D"),
                      node(f"{s}_ada_t", "unsqueeze", [f"{s}_ada"], axis=1)]
            nodes += chunks(f"{s}_ada_t", mod, axis=2)
        else:
            nodes += [node(f"{s}_ada", "linear", ["c"], out="6*D"),
                      node(f"{s}_ada_t", "unsqueeze", [f"{s}_ada"], axis=1)]
            nodes += chunks(f"{s}_ada_t", [f"{s}_shift1", f"{s}_scale1", f"{s}_gate1",
                                           f"{s}_shift2", f"{s}_scale2", f"{s}_gate2"], axis=2)
        nodes += [
            node(f"{s}_norm1", "layer_norm", [s], eps=1e-6),
            node(f"{s}_mod1", "modulate", [f"{s}_norm1", f"{s}_shift1", f"{s}_scale1"]),
            node(f"{s}_qkv", "linear", [f"{s}_mod1"], out="3*D"),
        ] + chunks(f"{s}_qkv", [f"{s}_q", f"{s}_k", f"{s}_v"], axis=2)
    for part in ("q", "k", "v"):
        nodes.append(node(f"joint_{part}", "concat", [f"txt_{part}", f"img_{part}"], axis=1))
    nodes.append(node("attn", "sdpa", ["joint_q", "joint_k", "joint_v"], heads="H"))
    for s in (("img",) if last else ("txt", "img")):
        nodes += [
            node(f"{s}_attn", "select_stream", ["attn"], stream="text" if s == "txt" else "image"),
            node(f"{s}_proj", "linear", [f"{s}_attn"], out="D"),
            node(f"{s}_gated1", "mul", [f"{s}_gate1", f"{s}_proj"]),
            node(f"{s}_res1", "add", [s, f"{s}_gated1"]),
            node(f"{s}_norm2", "layer_norm", [f"{s}_res1"], eps=1e-6),
            node(f"{s}_mod2", "modulate", [f"{s}_norm2", f"{s}_shift2", f"{s}_scale2"]),
            node(f"{s}_fc1", "linear", [f"{s}_mod2"], out="4*D"),
            node(f"{s}_act", "gelu", [f"{s}_fc1"], approximate="tanh"),
            node(f"{s}_fc2", "linear", [f"{s}_act"], out="D"),
            node(f"{s}_gated2", "mul", [f"{s}_gate2", f"{s}_fc2"]),
            node(f"{s}_out", "add", [f"{s}_res1", f"{s}_gated2"]),
        ]
    text_out = "txt" if last else "txt_out"
    nodes.append(node("out", "concat", [text_out, "img_out"], axis=1))
    return {"params": ["x", "c"], "nodes": nodes, "output": "out"}


def sd3(name, depth, d, heads, size, channels, patch, text_len, text_dim, pooled_dim,
        description, training=None):
    """Stable Diffusion 3 (MMDiT): image and text streams joined on the trunk, absolute 2-D
    positions on the image tokens, timestep + pooled-text conditioning."""
    train = {"objective": "flow", "init": "xavier", "lr": 1e-4, "ema_decay": 0.9999,
             "class_dropout": 0.1, "batch": 256}
    train.update(training or {})
    stem = [
        node("patches", "patchify", ["x"], patch="P"),
        node("x_embed", "linear", ["patches"], out="D"),
        node("pos", "pos_embed_2d", height="S/P", width="S/P", dim="D"),
        node("img_in", "add", ["x_embed", "pos"]),
        node("txt_in", "linear", ["ctx"], out="D"),
        node("tokens", "concat", ["txt_in", "img_in"], axis=1),
        node("t_freq", "timestep_embed", ["t"], dim=256),
    ] + mlp_embedder("time", "t_freq") + mlp_embedder("pooled", "pooled_in") + [
        node("c", "add", ["time_emb", "pooled_emb"]),
        node("c_act", "silu", ["c"]),
    ]
    return {
        "format": "treadc.model/1",
        "name": name,
        "description": description,
        "dims": {"S": size, "C": channels, "P": patch, "D": d, "H": heads, "L": text_len,
                 "DC": text_dim, "DP": pooled_dim},
        "inputs": {
            "x": {"shape": ["B", "C", "S", "S"], "role": "image"},
            "t": {"shape": ["B"], "role": "noise_level"},
            "ctx": {"shape": ["B", "L", "DC"], "role": "context"},
            "pooled_in": {"shape": ["B", "DP"], "role": "pooled"},
        },
        "stem": stem,
        "blocks": {"joint": mmdit_block(), "joint_last": mmdit_block(last=True)},
        "trunk": {"input": "tokens", "blocks": [
            {"block": "joint", "repeat": depth - 1, "args": {"c": "c_act"}},
            {"block": "joint_last", "repeat": 1, "args": {"c": "c_act"}},
        ]},
        "head": [node("img_tokens", "select_stream", ["trunk"], stream="image")] + dit_head("img_tokens"),
        "outputs": {"out": "image"},
        "routes": "paper",
        "training": train,
    }


def pixart_block():
    """PixArt-α block: adaLN-single (the shared timestep projection plus a learned per-block
    table), self-attention, cross-attention to the projected caption (masked), MLP."""
    nodes = [
        node("table", "param", shape=[1, "6*D"], init="normal", std=0.03),
        node("ada", "add", ["t6", "table"]),
        node("ada_t", "unsqueeze", ["ada"], axis=1),
    ] + chunks("ada_t", ["shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp",
                         "gate_mlp"], axis=2) + [
        node("norm1", "layer_norm", ["x"], eps=1e-6),
        node("mod1", "modulate", ["norm1", "shift_msa", "scale_msa"]),
        node("attn", "attention", ["mod1"], heads="H"),
        node("gated_attn", "mul", ["gate_msa", "attn"]),
        node("res1", "add", ["x", "gated_attn"]),
        node("cq", "linear", ["res1"], out="D"),
        node("ck", "linear", ["ctx"], out="D"),
        node("cv", "linear", ["ctx"], out="D"),
        node("cross", "sdpa", ["cq", "ck", "cv", "mask"], heads="H"),
        node("cross_out", "linear", ["cross"], out="D"),
        node("res2", "add", ["res1", "cross_out"]),
        node("norm2", "layer_norm", ["res2"], eps=1e-6),
        node("mod2", "modulate", ["norm2", "shift_mlp", "scale_mlp"]),
        node("fc1", "linear", ["mod2"], out="4*D"),
        node("act", "gelu", ["fc1"], approximate="tanh"),
        node("fc2", "linear", ["act"], out="D"),
        node("gated_mlp", "mul", ["gate_mlp", "fc2"]),
        node("out", "add", ["res2", "gated_mlp"]),
    ]
    return {"params": ["x", "t6", "ctx", "mask"], "nodes": nodes, "output": "out"}


def pixart(name, depth, d, heads, size, channels, out_channels, patch, text_len, text_dim,
           description, training=None):
    """PixArt-α: DiT with cross-attention to T5 embeddings (projected by a small MLP) and
    adaLN-single; learned-σ output (twice the input channels)."""
    train = {"objective": "edm", "init": "xavier", "lr": 2e-5, "ema_decay": 0.9999,
             "class_dropout": 0.1, "batch": 256}
    train.update(training or {})
    stem = [
        node("patches", "patchify", ["x"], patch="P"),
        node("x_embed", "linear", ["patches"], out="D"),
        node("pos", "pos_embed_2d", height="S/P", width="S/P", dim="D"),
        node("tokens", "add", ["x_embed", "pos"]),
        node("t_freq", "timestep_embed", ["t"], dim=256),
    ] + mlp_embedder("time", "t_freq") + [
        node("t_act", "silu", ["time_emb"]),
        node("t6", "linear", ["t_act"], out="6*D"),
        node("cap_hidden", "linear", ["ctx_in"], out="D"),
        node("cap_act", "gelu", ["cap_hidden"], approximate="tanh"),
        node("cap", "linear", ["cap_act"], out="D"),
    ]
    head = [
        node("final_table", "param", shape=[1, "2*D"], init="normal", std=0.03),
        node("final_t", "concat", ["time_emb", "time_emb"], axis=1),
        node("final_ada", "add", ["final_t", "final_table"]),
        node("final_ada_t", "unsqueeze", ["final_ada"], axis=1),
    ] + chunks("final_ada_t", ["final_shift", "final_scale"], axis=2) + [
        node("final_norm", "layer_norm", ["trunk"], eps=1e-6),
        node("final_mod", "modulate", ["final_norm", "final_shift", "final_scale"]),
        node("final_linear", "linear", ["final_mod"], out="P*P*CO"),
        node("image", "unpatchify", ["final_linear"], patch="P", height="S", width="S"),
    ]
    return {
        "format": "treadc.model/1",
        "name": name,
        "description": description,
        "dims": {"S": size, "C": channels, "CO": out_channels, "P": patch, "D": d, "H": heads,
                 "L": text_len, "DC": text_dim},
        "inputs": {
            "x": {"shape": ["B", "C", "S", "S"], "role": "image"},
            "t": {"shape": ["B"], "role": "noise_level"},
            "ctx_in": {"shape": ["B", "L", "DC"], "role": "context"},
            "mask": {"shape": ["B", "L"], "role": "context_mask"},
        },
        "stem": stem,
        "blocks": {"pixart": pixart_block()},
        "trunk": {"input": "tokens", "blocks": [
            {"block": "pixart", "repeat": depth, "args": {"t6": "t6", "ctx": "cap", "mask": "mask"}},
        ]},
        "head": head,
        "outputs": {"out": "image"},
        "routes": "paper",
        "training": train,
    }


def wan_block(axes):
    """Wan 2.1 block: shared timestep modulation plus a learned per-block table; self-attention
    with QK RMS-norm across heads and 3-D RoPE; cross-attention to the text (affine LayerNorm
    before it, QK RMS-norm); a gated GELU MLP."""
    nodes = [
        node("table", "param", shape=[1, "6*D"], init="normal", std=0.03),
        node("ada", "add", ["e6", "table"]),
        node("ada_t", "unsqueeze", ["ada"], axis=1),
    ] + chunks("ada_t", ["shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp",
                         "gate_mlp"], axis=2) + [
        node("norm1", "layer_norm", ["x"], eps=1e-6),
        node("mod1", "modulate", ["norm1", "shift_msa", "scale_msa"]),
        node("q", "linear", ["mod1"], out="D"),
        node("k", "linear", ["mod1"], out="D"),
        node("v", "linear", ["mod1"], out="D"),
        node("qn", "rms_norm", ["q"], eps=1e-6, affine=True),
        node("kn", "rms_norm", ["k"], eps=1e-6, affine=True),
        node("rq", "rope", ["qn", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node("rk", "rope", ["kn", "pe"], heads="H", axes_dims=axes, theta=10000.0),
        node("attn", "sdpa", ["rq", "rk", "v"], heads="H"),
        node("attn_out", "linear", ["attn"], out="D"),
        node("gated_attn", "mul", ["gate_msa", "attn_out"]),
        node("res1", "add", ["x", "gated_attn"]),
        node("norm3", "layer_norm", ["res1"], eps=1e-6, affine=True),
        node("cq", "linear", ["norm3"], out="D"),
        node("ck", "linear", ["ctx"], out="D"),
        node("cv", "linear", ["ctx"], out="D"),
        node("cqn", "rms_norm", ["cq"], eps=1e-6, affine=True),
        node("ckn", "rms_norm", ["ck"], eps=1e-6, affine=True),
        node("cross", "sdpa", ["cqn", "ckn", "cv"], heads="H"),
        node("cross_out", "linear", ["cross"], out="D"),
        node("res2", "add", ["res1", "cross_out"]),
        node("norm2", "layer_norm", ["res2"], eps=1e-6),
        node("mod2", "modulate", ["norm2", "shift_mlp", "scale_mlp"]),
        node("fc1", "linear", ["mod2"], out="FF"),
        node("act", "gelu", ["fc1"], approximate="tanh"),
        node("fc2", "linear", ["act"], out="D"),
        node("gated_mlp", "mul", ["gate_mlp", "fc2"]),
        node("out", "add", ["res2", "gated_mlp"]),
    ]
    return {"params": ["x", "e6", "ctx", "pe"], "nodes": nodes, "output": "out"}


def wan(name, depth, d, heads, ff, frames, height, width, channels, patch, text_len, text_dim,
        description, training=None):
    """Wan 2.1 text-to-video: video patches (1x2x2 over frames x rows x columns), 3-D RoPE,
    cross-attention to T5 text, a shared timestep modulation."""
    train = {"objective": "flow", "init": "xavier", "lr": 1e-4, "ema_decay": 0.9999,
             "class_dropout": 0.1, "batch": 256}
    train.update(training or {})
    dh = d // heads
    axes = [dh - 4 * (dh // 6), 2 * (dh // 6), 2 * (dh // 6)]
    stem = [
        node("patches", "patchify_video", ["x"], patch_t=1, patch="P"),
        node("tokens", "linear", ["patches"], out="D"),
        node("pe", "positions", stream="image", tokens="F*(S/P)*(W/P)",
             grid=["F", "S/P", "W/P"], axes=3),
        node("txt_hidden", "linear", ["ctx_in"], out="D"),
        node("txt_act", "gelu", ["txt_hidden"], approximate="tanh"),
        node("txt", "linear", ["txt_act"], out="D"),
        node("t_freq", "timestep_embed", ["t"], dim=256),
    ] + mlp_embedder("time", "t_freq") + [
        node("t_act", "silu", ["time_emb"]),
        node("e6", "linear", ["t_act"], out="6*D"),
    ]
    head = [
        node("final_table", "param", shape=[1, "2*D"], init="normal", std=0.03),
        node("final_t", "concat", ["time_emb", "time_emb"], axis=1),
        node("final_ada", "add", ["final_t", "final_table"]),
        node("final_ada_t", "unsqueeze", ["final_ada"], axis=1),
    ] + chunks("final_ada_t", ["final_shift", "final_scale"], axis=2) + [
        node("final_norm", "layer_norm", ["trunk"], eps=1e-6),
        node("final_mod", "modulate", ["final_norm", "final_shift", "final_scale"]),
        node("final_linear", "linear", ["final_mod"], out="P*P*C"),
        node("video", "unpatchify_video", ["final_linear"], patch_t=1, patch="P", frames="F",
             height="S", width="W"),
    ]
    return {
        "format": "treadc.model/1",
        "name": name,
        "description": description,
        "dims": {"F": frames, "S": height, "W": width, "C": channels, "P": patch,
                 "D": d, "H": heads, "FF": ff, "L": text_len, "DC": text_dim},
        "inputs": {
            "x": {"shape": ["B", "C", "F", "S", "W"], "role": "image"},
            "t": {"shape": ["B"], "role": "noise_level"},
            "ctx_in": {"shape": ["B", "L", "DC"], "role": "context"},
        },
        "stem": stem,
        "blocks": {"wan": wan_block(axes)},
        "trunk": {"input": "tokens", "blocks": [
            {"block": "wan", "repeat": depth, "args": {"e6": "e6", "ctx": "txt", "pe": "pe"}},
        ]},
        "head": head,
        "outputs": {"out": "video"},
        "routes": "paper",
        "training": train,
    }


def write(fname, model):
    with open(os.path.join(HERE, fname), "w", encoding="utf-8") as f:
        f.write(compact_nodes(model))


def compact_nodes(model):
    """JSON with 2-space indent, but each node object (and each short list) on one line."""
    def enc(v, ind):
        pad = "  " * ind
        if isinstance(v, dict):
            if "op" in v or (len(dumps(v)) < 90 and ind > 1):
                return dumps(v)
            items = [f'{pad}  {dumps(k)}: {enc(x, ind + 1)}' for k, x in v.items()]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(v, list):
            if len(dumps(v)) < 90 and not any(isinstance(x, dict) and "op" in x for x in v):
                return dumps(v)
            items = [f"{pad}  {enc(x, ind + 1)}" for x in v]
            return "[\n" + ",\n".join(items) + f"\n{pad}]"
        return dumps(v)
    return enc(model, 0) + "\n"


# MNIST-DiT-small's fast recipe, shared by MNIST-DiT-deep so that the two differ in depth only.
FAST_DIGITS_RECIPE = {"init": "adaln_zero", "lr": 3e-3, "lr_warmup": 100, "ema_decay": 0.999,
                      "ema_warmup": True, "batch": 64, "p_mean": -0.4, "p_std": 1.4}


def main():
    sizes = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
    for key, (depth, d, heads) in sizes.items():
        for patch in (2, 4):
            name = f"DiT-{key.upper()}/{patch}"
            write(f"dit-{key}{patch}.json", dit(name, depth, d, heads, patch))
    for key in ("b", "xl"):
        depth, d, heads = sizes[key]
        write(f"sit-{key}2.json", dit(f"SiT-{key.upper()}/2", depth, d, heads, 2, objective="flow"))
    write("uvit-s2.json", uvit_s())
    write("gated-conv-s2.json", gated_conv_s2())
    write("mnist-dit.json", dit(
        "MNIST-DiT", 8, 128, 4, 4, size=32, channels=1, classes=10,
        description="A small DiT for 32x32 one-channel images (MNIST padded from 28 to 32), "
                    "8 blocks of width 128 on an 8x8 grid of 4x4 patches (64 tokens): sized to "
                    "train on two CPU cores in minutes (the README's default run). A higher "
                    "learning rate and a short EMA with warm-up suit runs of a few thousand steps.",
        training={"lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True, "batch": 64}))
    write("mnist-dit-small.json", dit(
        "MNIST-DiT-small", 6, 64, 4, 4, size=32, channels=1, classes=10,
        description="MNIST-DiT at width 64 and depth 6 (64 tokens of 4x4 patches), trained fast: "
                    "adaLN-Zero, lr 3e-3 with a 100-step warm-up, noise levels ln(sigma) ~ "
                    "N(-0.4, 1.4^2) (more high-noise samples, where the class decides the digit), "
                    "a short EMA with warm-up. 2,000 steps on two CPU cores give digits "
                    "(README: FD and class accuracy measured with treadc eval).",
        training=FAST_DIGITS_RECIPE))
    write("mnist-dit-deep.json", dit(
        "MNIST-DiT-deep", 14, 64, 4, 4, size=32, channels=1, classes=10,
        description="MNIST-DiT-small at depth 14 (width 64, 64 tokens of 4x4 patches): deep "
                    "enough that the paper's placement (0.5:2-10, the default route) lets half "
                    "the tokens skip 9 of 14 blocks. The dense-against-routed experiment of "
                    "docs/experiments/tread-claim-deep.md; the training recipe of MNIST-DiT-small.",
        training=FAST_DIGITS_RECIPE))
    write("flux-dev.json", flux(
        "FLUX.1-dev", 19, 38, 3072, 24, [16, 56, 56], size=128, channels=16, patch=2,
        text_len=512, text_dim=4096, pooled_dim=768, guidance=True,
        description="FLUX.1 [dev] at 1024 px (16x128x128 latents, 2x2 packing: 4096 image "
                    "tokens) with 512 T5 tokens: 19 double-stream and 38 single-stream blocks of "
                    "width 3072 (24 heads of 128), 3-axis RoPE (16, 56, 56), QK RMS-norm, "
                    "guidance and pooled-CLIP embedders. Routes route the image tokens only; "
                    "the text tokens pass every block."))
    write("sd3-medium.json", sd3(
        "SD3-medium", 24, 1536, 24, size=128, channels=16, patch=2, text_len=333, text_dim=4096,
        pooled_dim=2048,
        description="Stable Diffusion 3 medium's MMDiT at 1024 px (16x128x128 latents, patch 2: "
                    "4096 image tokens) with 333 text tokens (77 CLIP + 256 T5): 24 joint blocks "
                    "of width 1536 (24 heads of 64), the last updating the image stream only. "
                    "Positions: the 64x64 sin-cos table (SD3 crops a 192x192 table with "
                    "positions scaled by 1/3: the values differ, parameters and FLOPs do not)."))
    write("mnist-mmdit-small.json", sd3(
        "MNIST-MMDiT-small", 6, 64, 4, size=32, channels=1, patch=4, text_len=8, text_dim=32,
        pooled_dim=32,
        description="An SD3-shaped MMDiT at test size: 6 joint blocks of width 64 on 64 image "
                    "tokens (4x4 patches of 32x32) and 8 text tokens.",
        training={"init": "adaln_zero", "lr": 3e-3, "lr_warmup": 100, "weight_decay": 0.0,
                  "ema_decay": 0.999, "ema_warmup": True, "batch": 64}))
    write("pixart-alpha-xl2.json", pixart(
        "PixArt-alpha-XL/2-1024", 28, 1152, 16, size=128, channels=4, out_channels=8, patch=2,
        text_len=120, text_dim=4096,
        description="PixArt-alpha XL/2 at 1024 px (4x128x128 latents, patch 2: 4096 tokens) "
                    "with 120 T5 tokens: 28 blocks of width 1152 (16 heads), adaLN-single, "
                    "masked cross-attention, learned-sigma output (8 channels). Without the 1024 "
                    "model's resolution and aspect-ratio micro-conditions (493,056 parameters)."))
    write("mnist-pixart-small.json", pixart(
        "MNIST-PixArt-small", 6, 64, 4, size=32, channels=1, out_channels=1, patch=4,
        text_len=8, text_dim=32,
        description="A PixArt-shaped cross-attention model at test size: 6 blocks of width 64 on "
                    "64 tokens, masked cross-attention to 8 text tokens, adaLN-single; trained "
                    "with MNIST-DiT-small's fast recipe (EDM).",
        training={"init": "adaln_zero", "lr": 3e-3, "lr_warmup": 100, "weight_decay": 0.0,
                  "ema_decay": 0.999, "ema_warmup": True, "batch": 64, "p_mean": -0.4,
                  "p_std": 1.4}))
    write("wan2.1-t2v-1.3b.json", wan(
        "Wan2.1-T2V-1.3B", 30, 1536, 12, 8960, frames=21, height=60, width=104, channels=16,
        patch=2, text_len=512, text_dim=4096,
        description="Wan 2.1 text-to-video 1.3B at 480x832, 81 frames (16x21x60x104 latents, "
                    "1x2x2 patches: 32,760 video tokens) with 512 T5 tokens: 30 blocks of width "
                    "1536 (12 heads of 128), FFN 8960, 3-D RoPE (44, 42, 42), QK RMS-norm across "
                    "heads, cross-attention to the text."))
    write("mnist-wan-small.json", wan(
        "MNIST-Wan-small", 6, 64, 4, 256, frames=4, height=16, width=16, channels=1,
        patch=4, text_len=8, text_dim=32,
        description="A Wan-shaped video model at test size: 6 blocks of width 64 on 4 frames of "
                    "16x16 (1x4x4 patches: 64 tokens), 3-D RoPE, cross-attention to 8 text "
                    "tokens; trained on clips of moving digits with MNIST-MMDiT-small's recipe "
                    "(flow).",
        training={"init": "adaln_zero", "lr": 3e-3, "lr_warmup": 100, "weight_decay": 0.0,
                  "ema_decay": 0.999, "ema_warmup": True, "batch": 64}))
    write("mnist-flux-small.json", flux(
        "MNIST-Flux-small", 2, 4, 64, 4, [4, 6, 6], size=32, channels=1, patch=4,
        text_len=8, text_dim=32, pooled_dim=32, guidance=False,
        description="A Flux-shaped model at test size: 2 double-stream and 4 single-stream "
                    "blocks of width 64 on 64 image tokens (4x4 patches of 32x32) and 8 text "
                    "tokens, 3-axis RoPE (4, 6, 6), QK RMS-norm; trained with "
                    "MNIST-MMDiT-small's recipe (flow).",
        training={"init": "adaln_zero", "lr": 3e-3, "lr_warmup": 100, "weight_decay": 0.0,
                  "ema_decay": 0.999, "ema_warmup": True, "batch": 64}))


if __name__ == "__main__":
    main()
