"""rwpipe: a reproducible pipeline for reward-model research on LLM reasoning.

Importing this package pulls in nothing heavy: torch, transformers and vllm are imported
only inside the modules that need them.
"""

__version__ = "0.1.0"
