"""LLM judges: outcome verdicts and step critiques from a local engine or an OpenAI-compatible
server, parsed strictly (an unparseable answer is an abstention, kept with its raw text)."""
