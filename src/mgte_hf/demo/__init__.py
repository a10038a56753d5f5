"""`mgte-hf demo`: train, evaluate and package a small mGTE end to end on real multilingual data, on a CPU.

The pipeline is the project's own pieces, in the order of the mGTE recipe:

1. data (`data`): UDHR and Debian package descriptions (training), GNOME Help and the Bible (evaluation), from the
   cache of `mgte_hf.data` (built on first use);
2. the real XLM-R tokenizer trimmed to the training and evaluation text and a small config sized to it (`stages`);
3. MLM pre-training with the length curriculum (short texts, then long ones at a raised RoPE base);
4. contrastive pre-training (revNTK) on (synopsis → description) and cross-lingual pairs;
5. TRM fine-tuning (Matryoshka dense + sparse) with hard negatives mined by the contrastive model;
6. reranker training on groups mined by the TRM;
7. evaluation through `RetrievalEvaluator` after every stage, against BM25 (`pipeline`), and with `--ablations`
   the long-context and Matryoshka studies (`ablations`);
8. a report (Markdown, JSON, PNG chart; `report`) and Hub-ready folders, verified in a fresh process that loads
   them with `trust_remote_code` and sentence-transformers only (`verify`).

Every stage runs a fixed number of steps (`config.DemoConfig`) with fixed seeds, data order and thread count, so
two runs on one machine give the same report whatever the load; `DemoConfig.time_limit` only guards the run.
"""

from .config import DemoConfig, StageBudget
from .data import DemoData, load_demo_data
from .pipeline import run_demo
from .report import DemoResult
from .stages import DemoTimeout


__all__ = ["DemoConfig", "DemoData", "DemoResult", "DemoTimeout", "StageBudget", "load_demo_data", "run_demo"]
