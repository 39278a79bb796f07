"""Small BERT-style encoders in the forms exporters write, built with onnx.helper (opset 17) and seeded weights.

Every model has the int64 inputs input_ids, attention_mask, token_type_ids of shape [batch, SEQ] (batch
symbolic) and passes onnx.checker (full check). The forms (MODELS):
- torch_like: what torch.onnx writes for a sentence-transformers BERT: Gather embeddings (word + token type +
  position ids sliced from a buffer by Shape), LayerNormalization, Q/K/V MatMul + Add, Reshape to heads with a
  target built from Shape / Gather / Unsqueeze / Concat, Transpose, Q K^T, Mul by 1/sqrt(d), an additive mask
  made by Cast / Unsqueeze / Expand / Where (float32 minimum where masked), Softmax, S V, back, output dense,
  residual, LN, FFN with Erf GELU (Div, Erf, Add, Mul, Mul), masked mean pooling (Unsqueeze, Expand, Cast,
  Mul, ReduceSum, Clip, Div) and L2 normalisation (ReduceL2, Clip, Expand, Div) -> `embedding`;
- hf_old_mask: as torch_like with the older HF bias (1.0 - Cast(Unsqueeze(mask))) * -10000.0;
- decomposed: LayerNorm as ReduceMean / Sub / Pow 2 / ReduceMean / Add eps / Sqrt / Div / Mul / Add, tanh
  GELU (Pow 3 in layer 0, Mul x*x*x in layer 1), pooling with keepdims then Squeeze, a Gemm (transB=1) dense
  layer on the pooled vector;
- hidden_states: no pooling: the last hidden states [batch, SEQ, HIDDEN] -> `last_hidden_state`;
- mixed_mask_model(): torch_like whose pooling mask mixes neighbouring tokens (mask[:, :-1] + mask[:, 1:]),
  neither a per-token select nor a function of the valid-token count, or the attention mask with the token
  types (the frontend must reject both).
attention_block(seed) draws a random small self-attention block on a float input (ReTransformer's reordering).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, HEADS, SEQ, VOCAB, LAYERS, FFN = 32, 4, 8, 50, 2, 64
HEAD_DIM = HIDDEN // HEADS
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def uid(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value, base: str = "c") -> str:
        name = self.uid(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def i64(self, *v) -> str:
        return self.const(np.array(v, np.int64), "i")

    def f32(self, v) -> str:
        return self.const(np.array(v, np.float32), "f")

    def node(self, op: str, inputs, **attrs) -> str:
        name = self.uid(op.lower())
        out = name + "_out"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out

    def weight(self, *shape, scale=None) -> str:
        s = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        return self.const(self.rng.normal(0, s, shape).astype(np.float32), "w")

    def dim(self, x: str, axis: int) -> str:
        """Shape(x)[axis] as a 1-D int64 tensor, the way torch.onnx writes x.size(axis)."""
        g = self.node("Gather", [self.node("Shape", [x]), self.const(np.array(axis, np.int64), "i")], axis=0)
        return self.node("Unsqueeze", [g, self.i64(0)])

    # -- layers --------------------------------------------------------------------------------------------
    def linear(self, x, fin, fout, gemm=False):
        w = self.rng.normal(0, 1.0 / np.sqrt(fin), (fin, fout)).astype(np.float32)
        b = self.f32(self.rng.normal(0, 0.05, fout))
        if gemm:
            return self.node("Gemm", [x, self.const(w.T.copy(), "w"), b], transB=1)
        return self.node("Add", [b, self.node("MatMul", [x, self.const(w, "w")])])   # bias first, as torch does

    def layernorm(self, x, decomposed=False):
        gamma = self.f32(self.rng.uniform(0.5, 1.5, HIDDEN))
        beta = self.f32(self.rng.normal(0, 0.1, HIDDEN))
        if not decomposed:
            return self.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-12)
        mu = self.node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = self.node("Sub", [x, mu])
        var = self.node("ReduceMean", [self.node("Pow", [d, self.f32(2.0)])], axes=[-1], keepdims=1)
        std = self.node("Sqrt", [self.node("Add", [var, self.f32(1e-12)])])
        return self.node("Add", [self.node("Mul", [self.node("Div", [d, std]), gamma]), beta])

    def gelu(self, x, form="erf", cube="pow"):
        if form == "erf":
            e = self.node("Erf", [self.node("Div", [x, self.f32(np.sqrt(2.0))])])
            return self.node("Mul", [self.node("Mul", [x, self.node("Add", [e, self.f32(1.0)])]), self.f32(0.5)])
        x3 = self.node("Pow", [x, self.f32(3.0)]) if cube == "pow" else \
            self.node("Mul", [self.node("Mul", [x, x]), x])
        inner = self.node("Mul", [self.node("Add", [x, self.node("Mul", [x3, self.f32(0.044715)])]),
                                  self.f32(np.sqrt(2 / np.pi))])
        t = self.node("Add", [self.node("Tanh", [inner]), self.f32(1.0)])
        return self.node("Mul", [self.node("Mul", [self.f32(0.5), x]), t])

    def heads(self, x, perm):
        """[B, S, H*d] -> [B, S, H, d] (target from Shape) -> Transpose(perm)."""
        target = self.node("Concat", [self.dim(x, 0), self.dim(x, 1), self.i64(HEADS), self.i64(HEAD_DIM)], axis=0)
        return self.node("Transpose", [self.node("Reshape", [x, target])], perm=perm)

    def attention(self, x, bias):
        q = self.heads(self.linear(x, HIDDEN, HIDDEN), [0, 2, 1, 3])
        k = self.heads(self.linear(x, HIDDEN, HIDDEN), [0, 2, 3, 1])
        v = self.heads(self.linear(x, HIDDEN, HIDDEN), [0, 2, 1, 3])
        s = self.node("Mul", [self.node("MatMul", [q, k]), self.f32(1.0 / np.sqrt(HEAD_DIM))])
        p = self.node("Softmax", [self.node("Add", [s, bias])], axis=-1)
        ctx = self.node("Transpose", [self.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
        target = self.node("Concat", [self.dim(ctx, 0), self.dim(ctx, 1), self.i64(HIDDEN)], axis=0)
        return self.linear(self.node("Reshape", [ctx, target]), HIDDEN, HIDDEN)

    def layer(self, x, bias, decomposed, gelu, cube):
        a = self.layernorm(self.node("Add", [self.attention(x, bias), x]), decomposed)
        h = self.gelu(self.linear(a, HIDDEN, FFN), gelu, cube)
        return self.layernorm(self.node("Add", [self.linear(h, FFN, HIDDEN), a]), decomposed)

    def embeddings(self, decomposed):
        word = self.node("Gather", [self.weight(VOCAB, HIDDEN, scale=0.5), "input_ids"])
        ttype = self.node("Gather", [self.weight(2, HIDDEN, scale=0.5), "token_type_ids"])
        # position ids: a [1, 512] buffer sliced to the sequence length read from the input's shape
        pos_ids = self.node("Slice", [self.const(np.arange(512, dtype=np.int64)[None], "pos"), self.i64(0),
                                      self.dim("input_ids", 1), self.i64(1)])
        pos = self.node("Gather", [self.weight(SEQ, HIDDEN, scale=0.5), pos_ids])
        return self.layernorm(self.node("Add", [self.node("Add", [word, ttype]), pos]), decomposed)

    def mask_bias(self, form, like):
        """The additive attention mask, broadcast over heads and queries."""
        if form == "hf_old":
            m = self.node("Cast", [self.node("Unsqueeze", ["attention_mask", self.i64(1, 2)])], to=TensorProto.FLOAT)
            return self.node("Mul", [self.node("Sub", [self.f32(1.0), m]), self.f32(-10000.0)])
        # newer torch export: bool mask expanded to [B, 1, S, S] with a shape from Shape, then Where
        cond = self.node("Unsqueeze", [self.node("Cast", ["attention_mask"], to=TensorProto.BOOL), self.i64(1, 2)])
        shape = self.node("Concat", [self.dim(like, 0), self.i64(1), self.dim(like, 1), self.dim(like, 1)], axis=0)
        return self.node("Where", [self.node("Expand", [cond, shape]), self.f32(0.0),
                                   self.f32(np.finfo(np.float32).min)])

    def pooling_mask(self, hidden, mixed):
        """The float mask [B, S, H] of mean pooling: mask.unsqueeze(-1).expand(hidden.size()).float()."""
        m = "attention_mask"
        if mixed == "inputs":      # a mask computed from two integer inputs
            m = self.node("Mul", [m, self.node("Sub", [self.i64(1), "token_type_ids"])])
        elif mixed:      # token j counts when token j or j + 1 is valid: not a per-token function
            a = self.node("Slice", [m, self.i64(0), self.i64(-1), self.i64(1)])
            b = self.node("Slice", [m, self.i64(1), self.i64(SEQ), self.i64(1)])
            m = self.node("Concat", [self.node("Add", [a, b]), self.node("Slice", [m, self.i64(-1), self.i64(SEQ),
                                                                                   self.i64(1)])], axis=1)
        e = self.node("Expand", [self.node("Unsqueeze", [m, self.i64(-1)]), self.node("Shape", [hidden])])
        return self.node("Cast", [e], to=TensorProto.FLOAT)

    def pool_normalise(self, hidden, squeeze_gemm, mixed):
        mask = self.pooling_mask(hidden, mixed)
        keep = 1 if squeeze_gemm else 0
        total = self.node("ReduceSum", [self.node("Mul", [hidden, mask]), self.i64(1)], keepdims=keep)
        count = self.node("Clip", [self.node("ReduceSum", [mask, self.i64(1)], keepdims=keep), self.f32(1e-9)])
        mean = self.node("Div", [total, count])
        if squeeze_gemm:
            mean = self.linear(self.node("Squeeze", [mean, self.i64(1)]), HIDDEN, HIDDEN, gemm=True)
        norm = self.node("Clip", [self.node("ReduceL2", [mean], axes=[1], keepdims=1), self.f32(1e-12)])
        return self.node("Div", [mean, self.node("Expand", [norm, self.node("Shape", [mean])])])


def encoder(name: str, mask="where", decomposed=False, gelu="erf", pooling=True, mixed=None,
            seed: int = 0) -> onnx.ModelProto:
    b = Builder(seed)
    x = b.embeddings(decomposed)
    bias = b.mask_bias(mask, x)
    for i in range(LAYERS):
        x = b.layer(x, bias, decomposed, gelu, "pow" if i == 0 else "mul")
    out_name = "embedding" if pooling else "last_hidden_state"
    out = b.pool_normalise(x, decomposed, mixed) if pooling else x
    b.nodes.append(helper.make_node("Identity", [out], [out_name], name="output"))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", SEQ]) for n in INPUTS]
    shape = ["batch", HIDDEN] if pooling else ["batch", SEQ, HIDDEN]
    graph = helper.make_graph(b.nodes, name, ints, [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape)],
                              b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


MODELS = {
    "torch_like": lambda: encoder("torch_like"),
    "hf_old_mask": lambda: encoder("hf_old_mask", mask="hf_old", seed=1),
    "decomposed": lambda: encoder("decomposed", decomposed=True, gelu="tanh", seed=2),
    "hidden_states": lambda: encoder("hidden_states", pooling=False, seed=3),
}


def mixed_mask_model(how: str = "neighbours") -> onnx.ModelProto:
    """torch_like with a pooling mask that mixes neighbouring tokens ("neighbours") or the attention mask
    with the token types ("inputs")."""
    return encoder(f"mixed_mask_{how}", mixed=how)


def sentences(n: int, seed: int, holes: bool = False) -> dict[str, np.ndarray]:
    """Random token ids with attention masks of varied valid lengths (1..SEQ, padding at the end; with holes,
    any token but the first may be masked) and token types 0 then 1 from a random split point."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, SEQ + 1, n)
    lengths[: min(n, 2)] = (1, SEQ)[: min(n, 2)]          # the extremes always appear
    pos = np.arange(SEQ)[None, :]
    mask = (pos < lengths[:, None]).astype(np.int64)
    if holes:
        mask = mask * rng.integers(0, 2, (n, SEQ))
        mask[:, 0] = 1
    ids = rng.integers(1, VOCAB, (n, SEQ)) * mask           # padding id 0
    ttype = ((pos >= rng.integers(1, SEQ + 1, n)[:, None]) & (mask > 0)).astype(np.int64)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask, "token_type_ids": ttype}


def attention_block(seed: int, scale_q: bool = False) -> tuple[onnx.ModelProto, dict]:
    """A random small self-attention block on a float input X [batch, S, D]: heads H of width d (H*d need not
    be D), Q / K / V linears with or without bias, scores scaled or not, an additive key mask (none, the torch
    Where form, the old HF form; mask and bias cycle with the seed) and the context either the output or read
    by a dense layer. scale_q: the scale multiplies Q before Q K^T (as scaled_dot_product_attention exports
    write it). Returns (model, the drawn parameters)."""
    rng = np.random.default_rng(seed)
    p = {"S": int(rng.integers(1, 7)), "D": int(rng.integers(2, 13)), "H": int(rng.integers(1, 4)),
         "d": int(rng.integers(1, 6)), "mask": ("none", "where", "hf_old")[seed % 3], "bias": seed // 3 % 2 == 0,
         "scale": bool(rng.integers(0, 2)) or scale_q, "dense": bool(rng.integers(0, 2))}
    S, D, H, d = p["S"], p["D"], p["H"], p["d"]
    b = Builder(seed)

    def lin(x, fin, fout):
        y = b.node("MatMul", [x, b.weight(fin, fout)])
        return b.node("Add", [y, b.f32(rng.normal(0, 0.3, fout))]) if p["bias"] else y

    def heads(x, perm):
        return b.node("Transpose", [b.node("Reshape", [x, b.i64(-1, S, H, d)])], perm=perm)

    q, k, v = heads(lin("X", D, H * d), [0, 2, 1, 3]), heads(lin("X", D, H * d), [0, 2, 3, 1]), \
        heads(lin("X", D, H * d), [0, 2, 1, 3])
    if scale_q:
        q = b.node("Mul", [q, b.f32(1.0 / np.sqrt(d))])
    s = b.node("MatMul", [q, k])
    if p["scale"] and not scale_q:
        s = b.node("Mul", [s, b.f32(1.0 / np.sqrt(d))])
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", S, D])]
    if p["mask"] != "none":
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", S]))
        s = b.node("Add", [s, b.mask_bias(p["mask"], "X")])
    ctx = b.node("Transpose", [b.node("MatMul", [b.node("Softmax", [s], axis=-1), v])], perm=[0, 2, 1, 3])
    out = b.node("Reshape", [ctx, b.i64(0, S, H * d)])
    if p["dense"]:
        out = lin(out, H * d, D)
    b.nodes.append(helper.make_node("Identity", [out], ["y"], name="output"))
    shape = ["batch", S, D if p["dense"] else H * d]
    graph = helper.make_graph(b.nodes, f"attention_{seed}", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m, p


def block_feeds(p: dict, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.normal(0, 1, (n, p["S"], p["D"])).astype(np.float32)}
    if p["mask"] != "none":
        lengths = rng.integers(1, p["S"] + 1, n)
        feeds["attention_mask"] = (np.arange(p["S"])[None, :] < lengths[:, None]).astype(np.int64)
    return feeds


def ffn_block(seed: int, S: int = 6, D: int = 16, F: int = 32) -> onnx.ModelProto:
    """A transformer feed-forward block on a float input X [batch, S, D]: linear (MatMul + Add), exact GELU as
    exporters write it (Div by sqrt 2, Erf, Add 1, Mul, Mul 0.5), linear, residual Add -> y."""
    b = Builder(seed)

    def lin(x, fin, fout):
        return b.node("Add", [b.node("MatMul", [x, b.weight(fin, fout)]), b.f32(b.rng.normal(0, 0.3, fout))])

    h = lin("X", D, F)
    erf = b.node("Erf", [b.node("Div", [h, b.f32(np.sqrt(2.0))])])
    g = b.node("Mul", [b.node("Mul", [h, b.node("Add", [erf, b.f32(1.0)])]), b.f32(0.5)])
    b.nodes.append(helper.make_node("Identity", [b.node("Add", [lin(g, F, D), "X"])], ["y"], name="output"))
    graph = helper.make_graph(b.nodes, f"ffn_{seed}", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", S, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", S, D])], b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m
