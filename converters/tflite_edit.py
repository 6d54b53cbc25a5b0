"""Small, checked edits of a converted .tflite flatbuffer (no converter re-run).

  float_io     an int8 file whose inputs/outputs are int8 (litert-torch's full-int8 output)
               gets float32 inputs/outputs: a QUANTIZE op after each int8 input and a
               DEQUANTIZE op before each int8 output, inside the graph. The app feeds floats,
               and the conversion runs in the runtime (XNNPACK delegates both ops) instead of
               in the app's own code. This is the TFLiteConverter's default for Keras/TF.
  float_depthwise_weights
               a dynamic-range file's hybrid DEPTHWISE_CONV_2D ops (int8 weights, float
               activations; not delegated to XNNPACK) get float32 weights, the exact values
               of their int8 codes.
  symmetric_embedding_tables
               a dynamic-range file's int8 EMBEDDING_LOOKUP tables with a nonzero zero point
               (which LiteRT refuses) are requantized with zero point 0.

Uses ai_edge_litert's own flatbuffer object API (tools.flatbuffer_utils), part of every
extra that makes .tflite files.
"""

from __future__ import annotations

from edgekit.errors import require

def _schema():
    fu = require("ai_edge_litert.tools.flatbuffer_utils", "tf")
    schema = require("ai_edge_litert.schema_py_generated", "tf")
    return fu, schema


def _opcode_index(model, schema, builtin: int, version: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            code.version = max(code.version, version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _is_quantized_int(tensor, schema) -> bool:
    q = tensor.quantization
    return (tensor.type in (schema.TensorType.INT8, schema.TensorType.UINT8) and q is not None
            and q.scale is not None and len(q.scale) > 0)


def _float_twin(tensor, schema):
    twin = schema.TensorT()
    twin.shape = list(tensor.shape) if tensor.shape is not None else None
    twin.shapeSignature = list(tensor.shapeSignature) if tensor.shapeSignature is not None else None
    twin.hasRank = tensor.hasRank
    twin.type = schema.TensorType.FLOAT32
    twin.buffer = 0  # no data: an activation
    twin.name = tensor.name
    tensor.name = (tensor.name or b"") + b"_int8"
    return twin


def float_io(blob: bytes) -> tuple[bytes, list[str]]:
    """Give every quantized int8/uint8 input and output of `blob` a float32 face.

    Returns the new flatbuffer and the names of the tensors that changed (empty: nothing to
    do, the blob comes back unchanged)."""
    fu, schema = _schema()
    model = fu.read_model_from_bytearray(bytearray(blob))
    changed: list[str] = []
    for si, sg in enumerate(model.subgraphs):
        sigs = [s for s in (model.signatureDefs or []) if s.subgraphIndex == si]
        if si > 0 and not sigs:
            continue  # a control-flow body, not an entry point
        quant = _opcode_index(model, schema, schema.BuiltinOperator.QUANTIZE, 1)
        dequant = _opcode_index(model, schema, schema.BuiltinOperator.DEQUANTIZE, 2)
        remap_in, remap_out = {}, {}
        front, back = [], []
        for k, t_idx in enumerate(sg.inputs):
            t = sg.tensors[t_idx]
            if not _is_quantized_int(t, schema):
                continue
            sg.tensors.append(_float_twin(t, schema))
            new = len(sg.tensors) - 1
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = quant, [new], [t_idx]
            front.append(op)
            sg.inputs[k] = new
            remap_in[t_idx] = new
            changed.append(sg.tensors[new].name.decode(errors="replace"))
        for k, t_idx in enumerate(sg.outputs):
            t = sg.tensors[t_idx]
            if not _is_quantized_int(t, schema):
                continue
            sg.tensors.append(_float_twin(t, schema))
            new = len(sg.tensors) - 1
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = dequant, [t_idx], [new]
            back.append(op)
            sg.outputs[k] = new
            remap_out[t_idx] = new
            changed.append(sg.tensors[new].name.decode(errors="replace"))
        sg.operators = front + list(sg.operators) + back
        for s in sigs:
            for ti in s.inputs or []:
                ti.tensorIndex = remap_in.get(ti.tensorIndex, ti.tensorIndex)
            for ti in s.outputs or []:
                ti.tensorIndex = remap_out.get(ti.tensorIndex, ti.tensorIndex)
    if not changed:
        return blob, []
    return bytes(fu.convert_object_to_bytearray(model)), changed


def float_depthwise_weights(blob: bytes) -> tuple[bytes, int]:
    """Hybrid DEPTHWISE_CONV_2D ops (float input, int8 weights) get float32 weights: the
    exact float values of the int8 codes, (q - zero_point) * scale per channel.

    Returns the new flatbuffer and how many ops changed (0: the blob comes back unchanged)."""
    import numpy as np

    fu, schema = _schema()
    model = fu.read_model_from_bytearray(bytearray(blob))
    dw = {i for i, c in enumerate(model.operatorCodes)
          if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    changed = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex not in dw or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            x, w = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
            if x.type != schema.TensorType.FLOAT32 or not _is_quantized_int(w, schema) \
                    or w.type != schema.TensorType.INT8:
                continue
            values = _dequantized(model, w)
            if values is None:
                continue
            buf = schema.BufferT()
            buf.data = np.frombuffer(values.astype("<f4").tobytes(), dtype=np.uint8)
            model.buffers.append(buf)  # a new buffer: the int8 one may be shared
            w.buffer = len(model.buffers) - 1
            w.type = schema.TensorType.FLOAT32
            w.quantization = None
            changed += 1
    if not changed:
        return blob, 0
    return bytes(fu.convert_object_to_bytearray(model)), changed


def _dequantized(model, w):
    """The float32 values of an int8 constant tensor, (q - zero_point) * scale per channel (None: no data)."""
    import numpy as np

    data = model.buffers[w.buffer].data
    if data is None:
        return None
    q = np.frombuffer(bytes(data), dtype=np.int8).reshape(w.shape).astype(np.float32)
    scale = np.asarray(w.quantization.scale, dtype=np.float32)
    zero = np.asarray(w.quantization.zeroPoint if w.quantization.zeroPoint is not None else [0], dtype=np.float32)
    axis = w.quantization.quantizedDimension if scale.size > 1 else 0
    bshape = [1] * q.ndim
    if scale.size > 1:
        bshape[axis] = scale.size
    return (q - zero.reshape(bshape if zero.size > 1 else [1] * q.ndim)) * scale.reshape(bshape)


def symmetric_embedding_tables(blob: bytes) -> tuple[bytes, int]:
    """Hybrid EMBEDDING_LOOKUP tables (int8, read by a float graph) with a nonzero zero point get
    zero point 0: LiteRT's hybrid kernel requires it and refuses the file otherwise
    (embedding_lookup.cc 'zero_point == 0'), and litert-torch's dynamic-range conversion writes
    an asymmetric table for some weights (a BERT's word embeddings: zero point 4). The table is
    requantized from its own dequantized values, per tensor, scale max|v| / 127, so it stays int8
    (a quarter of the float size) at the cost of a second rounding (at most half a step).

    Returns the new flatbuffer and how many tables changed (0: the blob comes back unchanged)."""
    import numpy as np

    fu, schema = _schema()
    model = fu.read_model_from_bytearray(bytearray(blob))
    lookup = {i for i, c in enumerate(model.operatorCodes)
              if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.EMBEDDING_LOOKUP}
    changed = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex not in lookup or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            w = sg.tensors[op.inputs[1]]
            zero = w.quantization.zeroPoint if _is_quantized_int(w, schema) else None
            if w.type != schema.TensorType.INT8 or zero is None or not np.any(np.asarray(zero)):
                continue
            values = _dequantized(model, w)
            if values is None:
                continue
            scale = float(np.abs(values).max()) / 127.0 or 1.0
            codes = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
            buf = schema.BufferT()
            buf.data = np.frombuffer(codes.tobytes(), dtype=np.uint8)
            if sum(t.buffer == w.buffer for g in model.subgraphs for t in g.tensors) == 1:
                model.buffers[w.buffer] = buf  # its own buffer: replaced, so the file does not grow
            else:
                model.buffers.append(buf)
                w.buffer = len(model.buffers) - 1
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = [scale], [0], 0
            w.quantization = q
            changed += 1
    if not changed:
        return blob, 0
    return bytes(fu.convert_object_to_bytearray(model)), changed
