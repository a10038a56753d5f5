"""The retrieval metrics as a Hugging Face `evaluate` module: `evaluate.load(mgte_hf.evaluation.METRIC_PATH)`.

The folder holds `retrieval_metrics.py` (the module evaluate imports) and is a package only so that it ships in
the wheel.
"""
