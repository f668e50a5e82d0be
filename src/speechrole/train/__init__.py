"""Fine-tuning an omni speech model into a role-play agent (SpeechRole-Agent): LoRA on Qwen2.5-Omni's
thinker with the transformers Trainer and peft (the `speechrole[train]` extra), merging, and a tiny
randomly initialised model of the real architecture for machines without the weights.

Modules: `plan` (the YAML plan), `data` (examples, exclusions, held-out split), `encode` (chat -> thinker
inputs, shared with the `omni` agent), `model` (loading, LoRA targets, adapters, merge), `fit` (the
training run and its records), `tiny` (the tiny model)."""
