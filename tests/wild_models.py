"""ONNX models of the kinds users receive from elsewhere, built here from their real architectures.

Issue #19 tried edgekit on models that ship inside public packages: a YOLO-style detector with
dynamic height and width, and the three PP-OCR text models (detection, direction, recognition).
Nothing is downloaded: these builders rebuild the same architectures in plain torch, at a small
width, export them with the legacy TorchScript exporter (opset 17, dynamic axes as shipped), and
write real-shaped data (rendered-text-like images drawn with numpy, fixed seeds).

What matters about each, because edgekit once broke on it:
- detector: input [N,3,H,W] with H and W dynamic; output [N, 4+K, A] with pixel-valued boxes and
  sigmoid class scores; an FPN whose upsampled P5 is concatenated with P4 (a 1x1 image breaks
  that Concat) and a Concat of the three heads.
- OCR models: every convolution is Conv without bias followed by an Add of the bias (what
  paddle2onnx writes), which onnxruntime's pre-processing fuses into ConvAddFusion_* initializers.
- text-direction classifier: conv + MaxPool + FC, 2 classes, input [N,3,48,192].
- text recogniser: CRNN (conv -> BiLSTM -> FC) with dynamic width, output [N, T, C] probabilities.

Each builder takes a folder and returns it with `model.onnx`, `calib.npz` and `val.npz`
(keyed by the model's input name). Run this file to build all of them into a folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OPSET = 17
DET_CLASSES = 18  # [N, 4+18=22, A] like the detector
REC_CHARS = 37  # blank + 26 letters + 10 digits
REC_HEIGHT = 48


# ----------------------------------------------------------------------------- data
def text_images(n: int, height: int, width: int, seed: int, lines: int = 1) -> np.ndarray:
    """Rendered-text-like images in [0, 1]: light paper with noise, dark glyph strokes in lines."""
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, 3, height, width), np.float32)
    for i in range(n):
        img = np.full((height, width), rng.uniform(0.75, 0.95), np.float32)
        img += rng.normal(0, 0.03, img.shape).astype(np.float32)
        line_h = height // max(lines, 1)
        for li in range(lines):
            top = li * line_h + rng.integers(line_h // 6, line_h // 3 + 1)
            glyph_h = max(3, int(line_h * rng.uniform(0.4, 0.6)))
            x = int(rng.integers(2, max(3, width // 8)))
            end = int(width * rng.uniform(0.55, 0.95))
            while x < end:
                gw = int(rng.integers(max(2, glyph_h // 3), max(3, glyph_h)))
                # a glyph: a vertical stem plus one or two bars, the shapes text is made of
                img[top:top + glyph_h, x:x + max(1, gw // 4)] = rng.uniform(0.0, 0.25)
                for _ in range(int(rng.integers(1, 3))):
                    y = top + int(rng.integers(0, glyph_h))
                    img[y:y + max(1, glyph_h // 6), x:x + gw] = rng.uniform(0.0, 0.25)
                x += gw + int(rng.integers(1, max(2, glyph_h // 3)))
        imgs[i] = img[None] * rng.uniform(0.9, 1.0, (3, 1, 1)).astype(np.float32)
    # PP-OCR normalisation: (x - 0.5) / 0.5
    return ((np.clip(imgs, 0, 1) - 0.5) / 0.5).astype(np.float32)


def scene_images(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """Detector inputs in [0, 1]: a smooth background with a few bright and dark boxes (objects)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    imgs = np.empty((n, 3, height, width), np.float32)
    for i in range(n):
        base = 0.4 + 0.2 * np.sin(xx / rng.uniform(20, 60)) * np.cos(yy / rng.uniform(20, 60))
        img = np.repeat(base[None], 3, axis=0) * rng.uniform(0.8, 1.2, (3, 1, 1))
        for _ in range(int(rng.integers(2, 6))):
            h, w = int(rng.integers(height // 8, height // 3)), int(rng.integers(width // 8, width // 3))
            y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            img[:, y:y + h, x:x + w] = rng.uniform(0, 1, (3, 1, 1))
        imgs[i] = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return imgs.astype(np.float32)


# ----------------------------------------------------------------------------- architectures
def _torch_modules():
    import torch
    from torch import nn

    class ConvAdd(nn.Module):
        """Conv without bias, then the bias as a separate Add (paddle2onnx's pattern), BN-free."""

        def __init__(self, cin, cout, k=3, s=1, act=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
            self.bias = nn.Parameter(torch.randn(cout) * 0.05)
            self.act = nn.Hardswish() if act else nn.Identity()

        def forward(self, x):
            return self.act(self.conv(x) + self.bias.reshape(1, -1, 1, 1))

    class ConvBnSiLU(nn.Module):
        def __init__(self, cin, cout, k=3, s=1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Detector(nn.Module):
        """YOLOv8-style: strided backbone, FPN (upsample + Concat), one anchor-free head per scale,
        decoded to pixel boxes (cx, cy, w, h) and sigmoid class scores, Concat over scales."""

        def __init__(self, k=DET_CLASSES, w=16):
            super().__init__()
            self.stem = nn.Sequential(ConvBnSiLU(3, w, 3, 2), ConvBnSiLU(w, w, 3, 2))  # /4
            self.c3 = nn.Sequential(ConvBnSiLU(w, 2 * w, 3, 2), ConvBnSiLU(2 * w, 2 * w))  # /8
            self.c4 = nn.Sequential(ConvBnSiLU(2 * w, 4 * w, 3, 2), ConvBnSiLU(4 * w, 4 * w))  # /16
            self.c5 = nn.Sequential(ConvBnSiLU(4 * w, 4 * w, 3, 2), ConvBnSiLU(4 * w, 4 * w))  # /32
            self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
            self.p4 = ConvBnSiLU(8 * w, 4 * w)
            self.p3 = ConvBnSiLU(6 * w, 2 * w)
            self.heads = nn.ModuleList(nn.Conv2d(c, 4 + k, 1) for c in (2 * w, 4 * w, 4 * w))
            self.strides = (8, 16, 32)

        def forward(self, x):
            c3 = self.c3(self.stem(x))
            c4 = self.c4(c3)
            c5 = self.c5(c4)
            p4 = self.p4(torch.cat([self.up(c5), c4], 1))
            p3 = self.p3(torch.cat([self.up(p4), c3], 1))
            outs = []
            for feat, head, stride in zip((p3, p4, c5), self.heads, self.strides):
                y = head(feat)
                n, c, h, w = y.shape
                gy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, w)
                gx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, h, w)
                xy = (torch.sigmoid(y[:, 0:2]) * 2 - 0.5 + torch.cat([gx, gy], 1)) * stride
                wh = torch.sigmoid(y[:, 2:4]) * 4 * stride
                cls = torch.sigmoid(y[:, 4:])
                outs.append(torch.cat([xy, wh, cls], 1).flatten(2))
            return torch.cat(outs, 2)

    class TextDetector(nn.Module):
        """DB-style text detection: strided encoder, upsample + Add decoder, sigmoid probability map."""

        def __init__(self, w=8):
            super().__init__()
            self.e1 = nn.Sequential(ConvAdd(3, w, 3, 2), ConvAdd(w, w))  # /2
            self.e2 = nn.Sequential(ConvAdd(w, 2 * w, 3, 2), ConvAdd(2 * w, 2 * w))  # /4
            self.e3 = nn.Sequential(ConvAdd(2 * w, 4 * w, 3, 2), ConvAdd(4 * w, 4 * w))  # /8
            self.l3 = ConvAdd(4 * w, 2 * w, 1)
            self.l2 = ConvAdd(2 * w, 2 * w, 1)
            self.head = nn.Sequential(ConvAdd(2 * w, w), nn.Upsample(scale_factor=4.0, mode="nearest"),
                                      ConvAdd(w, 1, 3, act=False))

        def forward(self, x):
            f2 = self.e2(self.e1(x))
            f3 = self.e3(f2)
            p = self.l2(f2) + nn.functional.interpolate(self.l3(f3), scale_factor=2.0, mode="nearest")
            return torch.sigmoid(self.head(p))

    class DirectionClassifier(nn.Module):
        """PP-OCR text direction (0 / 180 degrees): conv + MaxPool blocks, pool over width, FC, softmax."""

        def __init__(self, w=8):
            super().__init__()
            self.body = nn.Sequential(ConvAdd(3, w), nn.MaxPool2d(2), ConvAdd(w, 2 * w), nn.MaxPool2d(2),
                                      ConvAdd(2 * w, 4 * w), nn.MaxPool2d(2), ConvAdd(4 * w, 4 * w))
            self.fc = nn.Linear(4 * w * 6, 2)  # 48 / 8 = 6 rows: where the text sits tells its direction

        def forward(self, x):
            return torch.softmax(self.fc(self.body(x).mean(3).flatten(1)), 1)

    class Recognizer(nn.Module):
        """CRNN: conv (height pooled to 1, width / 4) -> BiLSTM -> FC -> softmax, [N, T, C]."""

        def __init__(self, w=16, hidden=32, chars=REC_CHARS):
            super().__init__()
            self.body = nn.Sequential(ConvAdd(3, w), nn.MaxPool2d(2), ConvAdd(w, 2 * w), nn.MaxPool2d(2),
                                      ConvAdd(2 * w, 4 * w), nn.MaxPool2d((2, 1)), ConvAdd(4 * w, 4 * w),
                                      nn.MaxPool2d((REC_HEIGHT // 8, 1)))
            self.lstm = nn.LSTM(4 * w, hidden, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(2 * hidden, chars)

        def forward(self, x):
            f = self.body(x).squeeze(2).permute(0, 2, 1)  # [N, T, C]
            return torch.softmax(self.fc(self.lstm(f)[0]), 2)

    return {"detector": Detector, "text_det": TextDetector, "text_cls": DirectionClassifier,
            "text_rec": Recognizer}


def _export(module, example, path: Path, dynamic: dict, input_name: str, output_name: str,
            fold: bool = True, opset: int = OPSET) -> None:
    import torch

    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=fold)


def _train(module, x: np.ndarray, y: np.ndarray, loss_fn, steps: int = 60, seed: int = 0) -> None:
    """A few seconds of Adam: enough for outputs that depend on the input (a meaningful int8 verdict)."""
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    for step in range(steps):
        idx = torch.randint(0, len(xt), (16,), generator=torch.Generator().manual_seed(seed + step))
        opt.zero_grad()
        loss_fn(module(xt[idx]), yt[idx]).backward()
        opt.step()
    module.eval()


def _save_data(folder: Path, name: str, calib: np.ndarray, val: np.ndarray) -> None:
    np.savez(folder / "calib.npz", **{name: calib})
    np.savez(folder / "val.npz", **{name: val})


def build_detector(folder: Path, size: int = 320, n_calib: int = 16, n_val: int = 8) -> Path:
    """YOLO-style detector, input `images` [N,3,H,W] (H, W dynamic), output `output0` [N, 4+K, A]."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = _torch_modules()["detector"]()
    calib, val = scene_images(n_calib, size, size, 1), scene_images(n_val, size, size, 2)
    # calibrate BatchNorm statistics on real-looking images (a forward pass in train mode)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(calib))
    model.eval()
    with torch.no_grad():  # bias the class logits so that a few anchors score high, as in a trained detector
        for head in model.heads:
            head.bias[4:] -= 2.0
    _export(model, torch.from_numpy(val[:1]), folder / "model.onnx",
            {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}},
            "images", "output0")
    _save_data(folder, "images", calib, val)
    return folder


def build_text_det(folder: Path, height: int = 96, width: int = 320, n_calib: int = 16, n_val: int = 8) -> Path:
    """DB-style text detector, input `x` [N,3,H,W] (dynamic), output `sigmoid_0.tmp_0` [N,1,H,W]."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    model = _torch_modules()["text_det"]()
    calib, val = text_images(n_calib, height, width, 3, lines=3), text_images(n_val, height, width, 4, lines=3)
    target = (calib.mean(1, keepdims=True) < -0.2).astype(np.float32)  # text pixels are dark
    _train(model, calib, target, torch.nn.functional.binary_cross_entropy, steps=40)
    _export(model, torch.from_numpy(val[:1]), folder / "model.onnx",
            {"x": {0: "batch", 2: "height", 3: "width"}, "sigmoid_0.tmp_0": {0: "batch", 2: "height", 3: "width"}},
            "x", "sigmoid_0.tmp_0", fold=False)  # paddle2onnx keeps the bias Reshape
    _save_data(folder, "x", calib, val)
    return folder


def build_text_cls(folder: Path, n_calib: int = 48, n_val: int = 32, opset: int = OPSET) -> Path:
    """Text-direction classifier, input `x` [N,3,48,192], output `softmax_0.tmp_0` [N, 2] (0 / 180 deg).
    PP-OCR's ships at opset 11, whose fp16 MaxPool onnxruntime's arm64 build has no NHWC kernel for."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2)
    model = _torch_modules()["text_cls"]()

    def rotated(n, seed):
        x = text_images(n, 48, 192, seed)
        y = np.arange(n) % 2
        x[y == 1] = x[y == 1, :, ::-1, ::-1]  # upside down
        return np.ascontiguousarray(x), y.astype(np.int64)

    calib, yc = rotated(n_calib, 5)
    val, yv = rotated(n_val, 6)
    _train(model, calib, yc, lambda p, t: torch.nn.functional.nll_loss(torch.log(p + 1e-6), t), steps=120)
    _export(model, torch.from_numpy(val[:1]), folder / "model.onnx",
            {"x": {0: "batch"}, "softmax_0.tmp_0": {0: "batch"}}, "x", "softmax_0.tmp_0",
            fold=False, opset=opset)  # paddle2onnx keeps the bias Reshape
    np.savez(folder / "calib.npz", x=calib)
    np.savez(folder / "val.npz", x=val, _labels=yv)
    return folder


def build_text_rec(folder: Path, width: int = 160, n_calib: int = 16, n_val: int = 16) -> Path:
    """CRNN recogniser, input `x` [N,3,48,W] (W dynamic), output `softmax_2.tmp_0` [N, W/4, 37]."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    model = _torch_modules()["text_rec"]()
    calib, val = text_images(n_calib, REC_HEIGHT, width, 7), text_images(n_val, REC_HEIGHT, width, 8)
    # target per column: a "character" id from the ink in that column band (blank where there is none)
    ink = (calib.mean(1) < -0.2).reshape(n_calib, REC_HEIGHT, width // 4, 4).sum((1, 3))
    target = np.where(ink > 0, 1 + ink % (REC_CHARS - 1), 0).astype(np.int64)
    _train(model, calib, target,
           lambda p, t: torch.nn.functional.nll_loss(torch.log(p + 1e-6).reshape(-1, REC_CHARS), t.reshape(-1)),
           steps=60)
    _export(model, torch.from_numpy(val[:1]), folder / "model.onnx",
            {"x": {0: "batch", 3: "width"}, "softmax_2.tmp_0": {0: "batch", 1: "steps"}}, "x", "softmax_2.tmp_0", fold=False)  # paddle2onnx keeps the bias Reshape
    _save_data(folder, "x", calib, val)
    return folder


BUILDERS = {"detector": build_detector, "text_det": build_text_det, "text_cls": build_text_cls,
            "text_rec": build_text_rec}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "wild")
    for name in sys.argv[2:] or BUILDERS:
        print(BUILDERS[name](out / name))
