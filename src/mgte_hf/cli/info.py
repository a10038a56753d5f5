"""`mgte-hf info`: versions, attention backends available here, and a summary of a checkpoint."""

from __future__ import annotations

import argparse
import json
import platform


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show versions, attention backends and (with --model) a checkpoint summary",
                       description="Show versions, the attention backends usable here, and a checkpoint summary.")
    p.add_argument("--model", help="a checkpoint folder (ours, released 'new' or transformers 'gte' layout)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def collect(model: str | None) -> dict:
    import torch
    import transformers

    import mgte_hf
    from mgte_hf.modeling import MgteConfig, available_implementations

    info = {
        "mgte_hf": mgte_hf.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    info["attn_implementations"] = {dev.type: available_implementations(dev, torch.bfloat16) for dev in devices}
    if model:
        config = MgteConfig.from_pretrained(model)
        info["model"] = {
            "path": model,
            "layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "heads": config.num_attention_heads,
            "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_position_embeddings,
            "rope_theta": config.rope_theta,
            "rope_scaling": config.rope_scaling,
            "dimensions": config.describe_dimensions(),
            "architectures": config.architectures,
        }
    return info


def run(args: argparse.Namespace) -> int:
    info = collect(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0
