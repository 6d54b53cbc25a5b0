"""A 6-layer MLP (ONNX, numpy-built) whose third layer has one outlier channel: issue #15's reproduction.

Layer 3 writes one channel ~1000x larger than the others, and layer 4 reads that channel with
1000x smaller weights, so the float function is an ordinary MLP. Full int8 gives the whole
tensor one activation scale: the outlier's range leaves the other 31 channels one or two
quantization steps, and the prediction collapses. Keeping layer 3, its ReLU and layer 4 in float
(`--keep-float auto` finds them) repairs it. Writes outlier_mlp.onnx, outlier_mlp_val.npz (labels =
the float model's classes) and outlier_mlp_calib.npz (input 'x' [N, 16]).
"""

from __future__ import annotations

import numpy as np

from common import SEED, out_dir

WIDTHS = [16, 32, 32, 32, 32, 32, 10]
OUTLIER_LAYER, OUTLIER_CHANNEL, OUTLIER_GAIN = 2, 5, 1000.0  # the third Gemm (0-based 2)


def weights(rng) -> list[tuple[np.ndarray, np.ndarray]]:
    layers = []
    for k, (a, b) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        w = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
        bias = (rng.standard_normal(b) * 0.1).astype(np.float32)
        layers.append((w, bias))
    w, b = layers[OUTLIER_LAYER]
    w[:, OUTLIER_CHANNEL] *= OUTLIER_GAIN
    b[OUTLIER_CHANNEL] = 3.0 * OUTLIER_GAIN  # always active after the ReLU
    layers[OUTLIER_LAYER + 1][0][OUTLIER_CHANNEL, :] /= OUTLIER_GAIN
    return layers


def build_model(layers):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "x"
    for k, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"fc{k + 1}.weight"), numpy_helper.from_array(b, f"fc{k + 1}.bias")]
        y = f"fc{k + 1}" if k < len(layers) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [x, f"fc{k + 1}.weight", f"fc{k + 1}.bias"], [y], name=f"fc{k + 1}"))
        if k < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [y], [f"relu{k + 1}"], name=f"relu{k + 1}"))
            y = f"relu{k + 1}"
        x = y
    graph = helper.make_graph(nodes, "outlier_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgekit-samples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def forward(layers, x: np.ndarray) -> np.ndarray:
    for k, (w, b) in enumerate(layers):
        x = x @ w + b
        if k < len(layers) - 1:
            x = np.maximum(x, 0)
    return x


def save_torch(layers, path) -> None:
    """The same MLP as a torch.export program (modules fc1..fc6, functional ReLUs, dynamic batch):
    the PyTorch source for the ExecuTorch and torch→TFLite cases (needs torch)."""
    import torch

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, (w, b) in enumerate(layers):
                fc = torch.nn.Linear(*w.shape)
                fc.weight.data, fc.bias.data = torch.from_numpy(w.T.copy()), torch.from_numpy(b.copy())
                self.add_module(f"fc{k + 1}", fc)

        def forward(self, x):
            for k in range(len(layers)):
                x = getattr(self, f"fc{k + 1}")(x)
                x = torch.relu(x) if k < len(layers) - 1 else x
            return x

    dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    torch.export.save(torch.export.export(MLP().eval(), (torch.zeros(2, 16),), dynamic_shapes=dyn), str(path))


def write(out) -> None:
    import onnx

    rng = np.random.default_rng(SEED)
    layers = weights(rng)
    onnx.save_model(build_model(layers), str(out / "outlier_mlp.onnx"))
    # validation: 200 inputs the float model classifies with a clear margin (a random teacher
    # also has inputs on class boundaries, where any rounding flips the label)
    pool = rng.standard_normal((4000, 16)).astype(np.float32)
    top2 = np.sort(forward(layers, pool), axis=1)[:, -2:]
    x_val = pool[np.argsort(top2[:, 0] - top2[:, 1])[:200]]
    x_cal = rng.standard_normal((100, 16)).astype(np.float32)
    np.savez(out / "outlier_mlp_val.npz", x=x_val, _labels=forward(layers, x_val).argmax(1).astype(np.int64))
    np.savez(out / "outlier_mlp_calib.npz", x=x_cal)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--torch"]:  # outlier_mlp.py --torch OUT.pt2 [ALTERED.pt2 (fc5's weights x1.2)]
        base = weights(np.random.default_rng(SEED))
        save_torch(base, sys.argv[2])
        if len(sys.argv) > 3:
            save_torch(base[:4] + [(base[4][0] * 1.2, base[4][1])] + base[5:], sys.argv[3])
    else:
        write(out_dir())
