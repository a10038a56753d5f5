"""`mgte-hf convert`: checkpoints between our layout, the released "new" layout (TEI / vLLM) and transformers' "gte"."""

from __future__ import annotations

import argparse


DESCRIPTION = """\
Convert an mGTE checkpoint folder between its three layouts (the source layout is detected from config.json):

  mgte  ours: model_type "mgte", remote code inside (AutoModel.from_pretrained(dir, trust_remote_code=True))
  new   the released layout (model_type "new"): what text-embeddings-inference and vLLM serve
  gte   transformers-native: transformers.GteModel / GteFor*.from_pretrained(dir), no remote code

Weights keep their dtype and are written as safetensors; tokenizer files are copied along."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint between the mgte, released 'new' and transformers 'gte' "
                                       "layouts", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="checkpoint folder (mgte, new or gte layout)")
    p.add_argument("dst", metavar="DST", help="output folder (must be empty or absent unless --overwrite)")
    p.add_argument("--to", required=True, choices=("mgte", "new", "gte"), help="layout to write")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it is not empty")
    p.add_argument("--no-tokenizer", action="store_true", help="do not copy the tokenizer files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.convert import convert_checkpoint, detect_format

    source = detect_format(args.src)
    checkpoint = convert_checkpoint(args.src, args.dst, to=args.to, overwrite=args.overwrite,
                                    copy_tokenizer=not args.no_tokenizer)
    dtype = str(checkpoint.dtype).removeprefix("torch.")
    print(f"{args.src} ({source}, {checkpoint.architecture}, {dtype}) -> {args.dst} ({args.to})")
    return 0
