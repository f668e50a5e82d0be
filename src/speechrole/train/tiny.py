"""A randomly initialised Qwen2.5-Omni of the real architecture, small enough to train on a CPU in seconds.

It is the same model class as Qwen2.5-Omni-7B (thinker: audio encoder, vision tower, text decoder with
M-RoPE; talker; token2wav with its DiT and BigVGAN; a speaker file), with every size cut down and the
special-token ids remapped into a small byte-level BPE vocabulary trained here on the `mini`
benchmark's text. Users without the 22 GB of weights, and CI, run the whole path with it:
data -> `speechrole train` -> `train merge` -> `speechrole eval --agent omni:model=...`.

It answers with nonsense: it proves that the code paths work, never that a model learned anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The special tokens of Qwen2.5-Omni's vocabulary that the thinker and our chat encoding use.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
)
VOCAB_SIZE = 1024
#: M-RoPE splits head_dim / 2 rotary frequencies between time, height and width.
ROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
SPEAKERS = ("Chelsie", "Ethan")


def _corpus() -> list[str]:
    """Text to learn the tiny vocabulary from: the bundled mini benchmark's profiles and dialogues."""
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("speechrole.bench.mini").joinpath("mini.yaml").read_text("utf-8"))
    lines: list[str] = []
    for role in data["roles"]:
        lines += [role["name"], role["persona"], role.get("transcript", "")]
        for mode in ("single", "multi"):
            for sample in role.get(mode, []):
                lines.append(sample.get("context", ""))
                for turn in sample["dialogue"]:
                    lines += [turn["user"], turn["role"]]
    return [line for line in lines if line]


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens (any text encodes; common words are one piece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "audio_token": "<|AUDIO|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
            "image_token": "<|IMAGE|>",
            "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>",
            "vision_eos_token": "<|vision_eos|>",
        },
    )


def tiny_config(tokenizer: Any) -> Any:
    """Qwen2.5-Omni's configuration with every size cut down and its token ids remapped to `tokenizer`."""
    from transformers import Qwen2_5OmniConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vocab = len(tokenizer)
    media = {
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": ROPE,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
    }
    audio = {
        "num_mel_bins": 128,
        "encoder_layers": 2,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "d_model": 32,
        "output_dim": 32,
    }
    vision = {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [0],
    }
    thinker = {
        "text_config": text,
        "audio_config": audio,
        "vision_config": vision,
        "user_token_id": tokenizer("user", add_special_tokens=False)["input_ids"][0],
        "vision_start_token_id": ids["<|vision_bos|>"],  # read by M-RoPE (the real config.json has it too)
        "vision_end_token_id": ids["<|vision_eos|>"],
        **media,
    }
    talker = {
        **media,
        "vocab_size": 64,  # codec codes
        "tts_codec_pad_token_id": 59,
        "tts_codec_start_token_id": 60,
        "tts_codec_end_token_id": 61,
        "tts_codec_mask_token_id": 62,
        "tts_text_start_token_id": vocab - 3,  # these three index the thinker's vocabulary
        "tts_text_end_token_id": vocab - 2,
        "tts_text_pad_token_id": vocab - 1,
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "embedding_size": 32,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "rope_parameters": ROPE,
    }
    dit = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "emb_dim": 16,
        "head_dim": 16,
        "num_embeds": 64,
        "enc_emb_dim": 16,
        "enc_dim": 16,
        "enc_channels": [16, 16, 16, 16, 48],
        "enc_attention_channels": 8,
        "enc_se_channels": 8,
        "look_ahead_layers": [1],
        "look_backward_layers": [0],
    }
    token2wav = {"dit_config": dit, "bigvgan_config": {"upsample_initial_channel": 128}}
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=token2wav)


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write a random tiny Qwen2.5-Omni (weights, config, tokenizer, audio feature extractor, speaker file)
    into `folder`; the same seed writes the same weights."""
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration, WhisperFeatureExtractor

    from speechrole.train.model import quiet_transformers

    quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=128, sampling_rate=16000).save_pretrained(folder)
    dit = config.token2wav_config.dit_config
    generator = torch.Generator().manual_seed(seed)
    speakers = {
        name: {
            "cond": torch.randn(1, dit.enc_emb_dim, generator=generator),
            "ref_mel": torch.randn(1, 30, dit.mel_dim, generator=generator),
            "bos_token": len(tokenizer) - 4 - i,
        }
        for i, name in enumerate(SPEAKERS)
    }
    torch.save(speakers, folder / "spk_dict.pt")
    (folder / "TINY_MODEL.json").write_text(
        json.dumps(
            {
                "what": "a randomly initialised Qwen2.5-Omni of the real architecture (speechrole train tiny-model)",
                "seed": seed,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return folder
