"""Ops without a converter of their own that ONNX defines as a function of other ops (SwiGLU,
GroupNormalization, RotaryEmbedding, CenterCropPad, the preview FlexAttention, ...): each such node is
replaced by onnx's own function body for the model's opset (a context-dependent body is built for the node's
attributes and input types, from onnx's shape inference), inlined by onnx's inliner; its ops are then
converted as any others, or refused naming the node they came from (`y/SwiGLU/Mul__1`: the node computing
y). A node onnx cannot expand is left as it is (and refused as an unsupported op)."""
from __future__ import annotations

from typing import Callable

import onnx
from onnx import inliner, shape_inference

ROUNDS = 4          # a body may use ops that are functions themselves


def expand(model: onnx.ModelProto, supported: Callable[[onnx.NodeProto], bool]) -> onnx.ModelProto:
    for _ in range(ROUNDS):
        todo = [n for n in model.graph.node if not supported(n) and _schema(model, n) is not None]
        if not todo:
            return model
        types = _types(model)
        m = onnx.ModelProto()
        m.CopyFrom(model)
        done = 0
        for k, node in enumerate(m.graph.node):
            if supported(node):
                continue
            body = _body(m, node, types)
            if body is None:
                continue
            body.overload = node.overload = f"pimc_expand_{k}"
            for inner in body.node:     # messages name the user's node: "y/SwiGLU/Mul" (the inliner adds a suffix)
                inner.name = f"{node.name or node.output[0]}/{node.op_type}/{inner.name or inner.op_type}"
            m.functions.append(body)
            done += 1
        if not done:
            return model
        m.ir_version = max(m.ir_version, 10)        # overloads: one body per node (context-dependent bodies)
        try:
            model = inliner.inline_local_functions(m)
        except Exception:       # onnx cannot inline it: the nodes stay, and are refused by name
            return model
    return model


def _version(model, domain: str) -> int | None:
    for o in model.opset_import:
        if o.domain == domain or {o.domain, domain} <= {"", "ai.onnx"}:
            return o.version
    return None


def _schema(model, node):
    version = _version(model, node.domain)
    if version is None:
        return None
    try:
        s = onnx.defs.get_schema(node.op_type, version, node.domain)
    except Exception:       # no such op in that opset
        return None
    return s if s.has_function or s.has_context_dependent_function else None


def _types(model) -> dict:
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    return {v.name: v.type for v in list(g.input) + list(g.value_info) + list(g.output)} | \
        {t.name: onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)) for t in g.initializer}


def _body(model, node, types) -> onnx.FunctionProto | None:
    """The node's function body for the model's opset, or None where onnx gives none."""
    s = _schema(model, node)
    if s is None:
        return None
    version = _version(model, node.domain)
    fp = onnx.FunctionProto()
    try:
        if s.has_context_dependent_function:
            v = max(x for x in s.context_dependent_function_opset_versions if x <= version)
            if any(i and i not in types for i in node.input):
                return None
            fp.ParseFromString(s.get_context_dependent_function_with_opset_version(
                v, node.SerializeToString(), [types[i].SerializeToString() for i in node.input if i]))
        else:
            v = max(x for x in s.function_opset_versions if x <= version)
            fp.ParseFromString(s.get_function_with_opset_version(v))
    except Exception:       # (ValueError: no body for this version; onnx's own checks on the node)
        return None
    return fp if fp.node else None
