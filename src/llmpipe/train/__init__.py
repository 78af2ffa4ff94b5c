"""Training: `model` (the decoder), `optim`, `loader` (token windows), `checkpoint`,
`throughput` (the `bench` stage), `cost` (the gate), `device`, and `trainer` (the `train`
stage). Section configs: `config`."""
