"""Train/eval overlap: exact duplicates and shared 13-grams, as in GPT-3 and Llama decontamination.

An eval item is *contaminated* if any of its n-grams (n = 13 by default) occurs anywhere in the
train items (Brown et al. 2020, appendix C; Touvron et al. 2023, section A.6). Departures:
- Tokens are case-folded words *and* the arithmetic operators `+ - * / = < > ^`; other
  punctuation is dropped, as in GPT-3. Keeping operators makes `14 + 7` and `14 * 7` different,
  which matters for arithmetic items that differ only in the operator. (Keeping all punctuation
  as tokens was tried: LaTeX braces and `$` then shrink a 13-gram to a few words, and MATH-500
  vs the MATH train file, which share no problem, went from 73 to 146 of 348 flagged.)
- An item shorter than n tokens is compared by its full token sequence: it is contaminated if
  that sequence occurs in some train item (the GPT-3 rule for short items).
Everything is set based: one pass over train per n-gram length that eval needs.
"""

import re

_TOKEN = re.compile(r"\w+|[-+*/=<>^]")
MAX_EXAMPLES = 5


def normalize_text(text: str) -> str:
    """Case-fold and collapse whitespace: the key for exact-match overlap."""
    return " ".join(text.casefold().split())


def tokenize(text: str) -> list[str]:
    """Case-folded words and arithmetic operators, in order."""
    return _TOKEN.findall(text.casefold())


def contamination_report(train: list[str], eval: list[str], n: int = 13) -> dict:
    """Measure how many eval items overlap the train items.

    Args:
        train: train questions.
        eval: eval questions.
        n: n-gram length in tokens.

    Returns:
        A JSON-ready dict: `n`, `eval_total`, and for `exact` and `ngram` each a `count`,
        a `fraction` of the eval items and up to 5 `examples` (`index` into `eval`, `question`).
        Every exact duplicate is also an n-gram hit.
    """
    train_exact = {normalize_text(t) for t in train}
    exact = [i for i, q in enumerate(eval) if normalize_text(q) in train_exact]
    ngram = _ngram_hits(train, eval, n)
    return {
        "n": n,
        "eval_total": len(eval),
        "exact": _summary(exact, eval),
        "ngram": _summary(ngram, eval),
    }


def _ngram_hits(train: list[str], eval: list[str], n: int) -> list[int]:
    eval_tokens = [tokenize(q) for q in eval]
    train_tokens = [tokenize(t) for t in train]
    # Short eval items need the train k-grams of their own length k; build one set per k.
    lengths = {min(len(toks), n) for toks in eval_tokens if toks}
    grams = {k: _ngrams_of(train_tokens, k) for k in lengths}
    hits = []
    for i, toks in enumerate(eval_tokens):
        k = min(len(toks), n)
        if k and any(gram in grams[k] for gram in _ngrams(toks, k)):
            hits.append(i)
    return hits


def _ngrams(tokens: list[str], k: int) -> set[str]:
    # Joined with a space: tokens never contain whitespace, so the join is unambiguous.
    return {" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


def _ngrams_of(token_lists: list[list[str]], k: int) -> set[str]:
    grams: set[str] = set()
    for tokens in token_lists:
        grams |= _ngrams(tokens, k)
    return grams


def _summary(indices: list[int], eval: list[str]) -> dict:
    examples = [{"index": i, "question": eval[i][:200]} for i in indices[:MAX_EXAMPLES]]
    return {
        "count": len(indices),
        "fraction": len(indices) / len(eval) if eval else 0.0,
        "examples": examples,
    }
