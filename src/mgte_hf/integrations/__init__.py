"""Interoperability with other libraries (sentence-transformers).

The modules are imported on use: `from mgte_hf.integrations.sentence_transformers import ...`. `mgte_sparse.py` is
also shipped inside Hub folders as sentence-transformers remote code, so it imports nothing from mgte_hf.
"""
