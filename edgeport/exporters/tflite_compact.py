"""Repack .tflite flatbuffers without changing a single computed value: add the edgeport metadata entry, and
shrink a quantized file: store each distinct quantization
vector (per-channel zero points, scales) once and let every tensor that uses it point at the same copy.

Why by hand: TFLiteConverter writes one int64 zero-point vector per per-channel tensor, all zeros for
symmetric int8 weights (the schema requires as many zero points as scales). On the trained Fashion-MNIST
MobileNetV2-0.5 that is 149 KB of a 978 KB file. FlatBuffers allows several tables to reference one
vector (offsets are plain pointers and the verifier only checks bounds), but neither the converter nor the
generated object API shares them, so we repack the model with the generated object API and a Pack that
reuses an already written vector when its bytes are identical. Nothing else in the file changes: the
interpreter sees the same tensors, buffers and operators (bit-identical outputs; tested). Buffers keep the
16-byte alignment the schema asks for (``force_align: 16``), which the generated Pack would drop.
"""

from __future__ import annotations

import numpy as np


def _shared_vector_pack(schema, cache: dict):
    base = schema.QuantizationParametersT

    class SharedVectors(base):
        def Pack(self, builder):  # noqa: N802 (the generated API's name)
            if self.details is not None:  # custom quantization: keep the generated packing
                return base.Pack(self, builder)

            def vector(values, dtype):
                if values is None:
                    return None
                a = np.ascontiguousarray(values, dtype=dtype)
                key = (a.dtype.str, a.tobytes())
                if key not in cache:
                    cache[key] = builder.CreateNumpyVector(a)
                return cache[key]

            offsets = {
                "Min": vector(self.min, np.float32),
                "Max": vector(self.max, np.float32),
                "Scale": vector(self.scale, np.float32),
                "ZeroPoint": vector(self.zeroPoint, np.int64),
            }
            schema.QuantizationParametersStart(builder)
            for field, offset in offsets.items():
                if offset is not None:
                    getattr(schema, f"QuantizationParametersAdd{field}")(builder, offset)
            schema.QuantizationParametersAddDetailsType(builder, self.detailsType)
            schema.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
            return schema.QuantizationParametersEnd(builder)

    return SharedVectors


BUFFER_ALIGNMENT = 16  # schema.fbs: Buffer.data:[ubyte] (force_align: 16)


def _aligned_buffer_pack(schema):
    base = schema.BufferT

    class AlignedBuffer(base):
        def Pack(self, builder):  # noqa: N802
            data = None
            if self.data is not None:
                payload = np.ascontiguousarray(self.data, dtype=np.uint8)
                builder.Prep(BUFFER_ALIGNMENT, payload.size)  # pad so the bytes that follow start aligned
                data = builder.CreateNumpyVector(payload)
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer


def _repack(schema, tree, size_hint: int) -> bytes:
    """Pack ``tree`` with identical quantization vectors stored once and buffers kept 16-byte aligned."""
    import flatbuffers

    shared = _shared_vector_pack(schema, {})
    for subgraph in tree.subgraphs or []:
        for tensor in subgraph.tensors or []:
            if tensor.quantization is not None:
                tensor.quantization.__class__ = shared
    aligned = _aligned_buffer_pack(schema)
    for buffer in tree.buffers or []:
        buffer.__class__ = aligned
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def share_quantization_vectors(model: bytes) -> bytes:
    """``model`` repacked with identical quantization vectors stored once (same graph, same values)."""
    from ai_edge_litert import schema_py_generated as schema

    packed = _repack(schema, schema.ModelT.InitFromPackedBuf(bytearray(model), 0), len(model))
    return packed if len(packed) < len(model) else model


METADATA_NAME = "edgeport"


IO_NAMES = ("input", "output")  # what a written file's graph inputs and outputs are called (several: _1, _2...)


SIGNATURE_KEY = "serving_default"  # TensorFlow's and LiteRT's default key


def io_renames(model: bytes) -> dict[str, str]:
    """The converter's names of the main graph's inputs/outputs (``serving_default_input:0``,
    ``PartitionedCall:0``) -> the names :func:`with_metadata` gives them."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(bytearray(model), 0).Subgraphs(0)
    out = {}
    for count, get, base in ((graph.InputsLength(), graph.Inputs, IO_NAMES[0]), (graph.OutputsLength(), graph.Outputs, IO_NAMES[1])):
        for i in range(count):
            out[graph.Tensors(get(i)).Name().decode()] = base if i == 0 else f"{base}_{i}"
    return out


def with_metadata(model: bytes, text: str) -> bytes:
    """``model`` with a metadata entry ``edgeport`` holding ``text`` (an earlier one replaced), and its main graph's
    inputs and outputs named as :func:`io_renames` says. The per-layer diagnosis pairs a written file's I/O tensors
    with the calibrated model's by position (edgeport.diagnose.tflite_layers), so the converter's denylist still
    gets the names it knows. A file without a SignatureDef (onnx2tf 1.28's float file has none) gets one,
    ``serving_default`` over those inputs and outputs, so LiteRT's ``get_signature_runner()`` and tools that
    need a signature (ai-edge-quantizer) take it."""
    from ai_edge_litert import schema_py_generated as schema

    renames = io_renames(model)
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for tensor in tree.subgraphs[0].tensors if tree.subgraphs else []:
        old = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        if old in renames:
            tensor.name = renames[old].encode()
    if tree.subgraphs and not tree.signatureDefs:
        tree.signatureDefs = [_signature(schema, tree.subgraphs[0])]
    tree.buffers = tree.buffers or []
    payload = schema.BufferT()
    payload.data = np.frombuffer(text.encode(), dtype=np.uint8)
    tree.buffers.append(payload)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME.encode(), len(tree.buffers) - 1
    tree.metadata = [m for m in tree.metadata or [] if m.name not in (METADATA_NAME, METADATA_NAME.encode())] + [entry]
    return _repack(schema, tree, len(model) + len(text) + 1024)


def _signature(schema, graph) -> object:
    """SignatureDef ``serving_default`` of subgraph 0, keyed by its I/O tensors' names."""
    def maps(indices) -> list:
        out = []
        for i in indices:
            m = schema.TensorMapT()
            m.name, m.tensorIndex = graph.tensors[i].name, int(i)
            out.append(m)
        return out

    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY.encode(), 0
    sig.inputs, sig.outputs = maps(graph.inputs), maps(graph.outputs)
    return sig


def read_metadata(model: bytes) -> str | None:
    """The ``edgeport`` metadata text of a .tflite, or None."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(bytearray(model), 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_NAME:
            return m.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    return None
