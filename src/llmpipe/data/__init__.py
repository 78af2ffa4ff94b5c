"""The data half of the pipeline, in stage order: `sources` (ingest), `clean` (cleaners, signals,
filter rules), `kinds` (one package per source kind), `dedup` + `minhash`, `tokenizer`,
`encode` + `tokens` (tokenize), `mix` + `leakage` + `weights`, and `table` (the Document table
every data stage reads and writes). Section configs of these stages: `config`."""
