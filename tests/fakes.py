"""Deterministic stand-ins for the engines, for unit tests of the algorithms (never used by
the commands a user runs)."""

from collections.abc import Callable, Sequence

from rwpipe.backends import Completion, SamplingParams
from rwpipe.runtime import stable_seed


class ScriptedGenerator:
    """A Generator whose completions come from `script(prompt, sample_index, seed) -> text`.

    Tokens are whitespace-separated words with ids hashed from the word; each token's
    logprob is -0.5. Records every call in `calls` so tests can check what was asked.
    """

    def __init__(self, script: Callable[[str, int, int], str]) -> None:
        self.script = script
        self.calls: list[tuple[list[str], SamplingParams]] = []
        self.closed = False

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return f"<sys>{system or ''}</sys><user>{question}</user><assistant>"

    def _complete(self, prompt: str, i: int, params: SamplingParams) -> Completion:
        text = self.script(prompt, i, params.seed)
        words = text.split()[: params.max_new_tokens]
        ids = tuple(stable_seed(w) % 49_000 + 3 for w in words)
        finish = "length" if len(text.split()) > params.max_new_tokens else "stop"
        return Completion(text, ids, tuple(-0.5 for _ in ids), finish)

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Completion]]:
        self.calls.append((list(prompts), params))
        out = []
        for prompt in prompts:
            completions = [self._complete(prompt, i, params) for i in range(params.n)]
            out.append(completions)
            if progress:
                progress(1, sum(len(c.token_ids) for c in completions))
        return out

    def close(self) -> None:
        self.closed = True
