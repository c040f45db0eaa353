"""delegated_nodes: which original nodes a post-delegation node list puts inside each DELEGATE partition."""

from collections import Counter

from edgeport.formats.delegation import Delegation, delegated_nodes


def _op(index, name, inputs, outputs):
    return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}


def test_builtin_node_between_two_partitions_splits_them():
    # t0 -conv(w=t1)-> t2 -conv(w=t3)-> t4 -hard_swish-> t5 -conv(w=t6)-> t7
    ops = [
        _op(0, "CONV_2D", [0, 1], [2]),
        _op(1, "CONV_2D", [2, 3], [4]),
        _op(2, "HARD_SWISH", [4], [5]),
        _op(3, "CONV_2D", [5, 6], [7]),
        _op(4, "DELEGATE", [0, 1, 3], [4]),
        _op(5, "DELEGATE", [5, 6], [7]),
    ]
    owner = delegated_nodes(ops)
    assert owner == {0: 4, 1: 4, 3: 5}  # node 2 stays in the builtin kernels


def test_partition_inputs_stop_the_walk():
    # the delegate starts at t2: node 0 (producing t2) is not inside it even though it is upstream
    ops = [
        _op(0, "RELU_0_TO_1", [0], [2]),
        _op(1, "ADD", [2, 3], [4]),
        _op(2, "DELEGATE", [2, 3], [4]),
    ]
    assert delegated_nodes(ops) == {1: 2}


def test_left_out_and_warning():
    tfl = Delegation("m.int8.tflite", "tflite", "XNNPACK", Counter(CONV_2D=3), Counter(HARD_SWISH=2), partitions=3)
    assert tfl.left_out == Counter(HARD_SWISH=2) and "HARD_SWISH x2" in tfl.warning()
    assert "3/5 nodes delegated in 3 partitions" in tfl.summary()
    float_onnx = Delegation("m.onnx", "onnx", "ort", float_ops=Counter(Conv=4), quantized=False)
    assert float_onnx.warning() is None and float_onnx.to_dict()["left_out"] == 0
    q_onnx = Delegation("q.onnx", "onnx", "ort", Counter(QLinearConv=2), Counter(Conv=1), Counter(HardSwish=1))
    assert q_onnx.left_out == Counter(Conv=1, HardSwish=1)
