"""Evaluation and use of a trained model: `evaluate` (the `eval` stage), `mc` (multiple choice),
`generate` (KV-cache sampling), `export` + `hf_tokenizer` (Hugging Face export). Section
configs: `config`."""
