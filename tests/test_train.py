"""Training SpeechRole-Agent on the tiny random Qwen2.5-Omni: data -> train -> resume -> merge -> eval.

Everything runs on the CPU with the real transformers and peft code paths (the same as for the 7B model);
the tiny model's answers are nonsense, so the tests check mechanics, never quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

pytest.importorskip("peft")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from speechrole.problems import DataError  # noqa: E402
from speechrole.train.data import exclude, official_role_ids, read_chat, read_source, split  # noqa: E402
from speechrole.train.encode import (  # noqa: E402
    IGNORE,
    ChatEncoder,
    ClipTooLongError,
    audio_tokens,
    check_audio_tokens,
    collate,
)
from speechrole.train.fit import EncodedDataset, prepare, train  # noqa: E402
from speechrole.train.model import adapter_digest, load_omni, load_thinker, with_adapter  # noqa: E402
from speechrole.train.plan import load_plan  # noqa: E402
from speechrole.train.tiny import write_tiny_model  # noqa: E402
from tests.factory import make_benchmark, tone  # noqa: E402
from tests.test_eval import mini_cache  # noqa: E402, F401 - the rendered mini benchmark (fixture)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "speechrole.cli"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def encoder(tiny: Path) -> ChatEncoder:
    return ChatEncoder.from_pretrained(tiny)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout dataset (3 roles, 12 dialogues) and a chat JSONL beside it with one dialogue too
    long for max_length 600 and one of an official SpeechRole-Eval role."""
    root = tmp_path_factory.mktemp("data")
    make_benchmark(root / "bench")
    long_clips = []
    for i in range(5):
        tone(root / "chat" / f"long{i}.wav", 5.0, freq=300 + 20 * i)
        long_clips.append(f"long{i}.wav")
    tone(root / "chat" / "z.wav", 1.0)
    lines = [
        {
            "id": "long",
            "role": "Ada",
            "messages": [{"role": "system", "content": "You are Ada."}]
            + [
                m
                for _ in long_clips
                for m in ({"role": "user", "content": "<audio>"}, {"role": "assistant", "content": "Yes."})
            ],
            "audios": long_clips,
        },
        {
            "id": "zl",
            "role": "zhongli",
            "messages": [
                {"role": "system", "content": "You are Zhongli."},
                {"role": "user", "content": "<audio>"},
                {"role": "assistant", "content": "A contract is a contract."},
            ],
            "audios": ["z.wav"],
        },
    ]
    (root / "chat" / "chat.jsonl").write_text(
        "\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8"
    )
    return root


def _plan(dataset: Path, tiny: Path, out: Path, **extra: object) -> dict[str, object]:
    plan: dict[str, object] = {
        "model": str(tiny),
        "data": [str(dataset / "bench"), str(dataset / "chat" / "chat.jsonl")],
        "output": str(out),
        "split": {"by": "role", "fraction": 0.34},
        "max_length": 600,
        "max_steps": 8,
        "grad_accum": 1,
        "save_steps": 2,
        "lr": 0.005,
        "warmup_ratio": 0.0,
    }
    return plan | extra


# -- audio-token bookkeeping ------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.37, 7.0, 29.9])
def test_audio_placeholders_equal_the_encoders_output_length(
    tiny: Path, encoder: ChatEncoder, seconds: float
) -> None:
    thinker = load_thinker(tiny, device="cpu")
    clip = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
    ours, encoder_out = check_audio_tokens(thinker, encoder, clip)
    assert ours == encoder_out
    assert abs(ours - 25 * seconds) <= 1.5  # about 25 tokens per second
    messages = [{"role": "user", "content": "<audio>"}, {"role": "assistant", "content": "Hm."}]
    encoded = encoder.encode(messages, [clip])
    assert encoded.input_ids.count(encoder.audio_token) == encoder_out


def test_a_clip_past_the_encoders_window_is_refused(tmp_path: Path) -> None:
    tone(tmp_path / "long.wav", 31.0)
    with pytest.raises(ClipTooLongError, match="30 s window"):
        ChatEncoder.load_clip(tmp_path / "long.wav")


def test_labels_cover_the_answers_and_never_an_audio_span(encoder: ChatEncoder) -> None:
    clips = [np.zeros(16000, np.float32), np.zeros(8000, np.float32)]
    messages = [
        {"role": "system", "content": "You are Ada."},
        {"role": "user", "content": "<audio>"},
        {"role": "assistant", "content": "Curiosity."},
        {"role": "user", "content": "<audio>"},
        {"role": "assistant", "content": "A longer journey."},
    ]
    every = encoder.encode(messages, clips, train_on="all")
    last = encoder.encode(messages, clips, train_on="last")
    assert every.input_ids == last.input_ids
    answer = lambda text: encoder.tokenizer(text, add_special_tokens=False)["input_ids"] + [encoder.im_end]  # noqa: E731
    trained_all = [t for t in every.labels if t != IGNORE]
    trained_last = [t for t in last.labels if t != IGNORE]
    assert trained_all == answer("Curiosity.") + answer("A longer journey.")
    assert trained_last == answer("A longer journey.")
    spans = [
        i
        for i, t in enumerate(every.input_ids)
        if t in (encoder.audio_token, encoder.audio_bos, encoder.audio_eos)
    ]
    assert all(every.labels[i] == IGNORE for i in spans)
    assert every.input_ids.count(encoder.audio_token) == audio_tokens(100) + audio_tokens(50)
    batch = collate([every, last], encoder.pad)
    assert (
        batch["input_features"].shape == (4, 128, 100) and batch["feature_attention_mask"].sum().item() == 300
    )
    with pytest.raises(ValueError, match="placeholders"):
        encoder.encode(messages, clips[:1])


# -- data, exclusions, split ------------------------------------------------------------------------


def test_bad_chat_lines_are_named_and_the_rest_is_read(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav", 0.5)
    good = {
        "id": "g",
        "role": "Ada",
        "messages": [{"role": "user", "content": "<audio>"}, {"role": "assistant", "content": "Hi."}],
        "audios": ["a.wav"],
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(good | {"audios": ["missing.wav"]}),
        json.dumps(good | {"audios": []}),
        json.dumps(good | {"audios": ["../../etc/passwd"]}),
        json.dumps(good | {"messages": [{"role": "user", "content": "<audio>"}]}),
    ]
    (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples, problems = read_chat(tmp_path / "chat.jsonl")
    assert [e.id for e in examples] == ["g"]
    described = [p.describe() for p in problems]
    assert len(described) == 5 and all(str(tmp_path / "chat.jsonl") in d for d in described)
    assert "line 2: not JSON" in described[0]
    assert "line 3.audios[0]" in described[1] and "not found" in described[1]
    assert "line 4.audios" in described[2] and "0 clips for 1 <audio>" in described[2]
    assert "escapes the dataset root" in described[3]
    assert "no assistant message" in described[4]
    with pytest.raises(DataError, match="not found"):
        read_source(tmp_path / "nowhere")


def test_held_out_split_never_divides_a_role_or_a_dialogue(dataset: Path) -> None:
    bench, _ = read_source(dataset / "bench")
    chat, _ = read_source(dataset / "chat" / "chat.jsonl")
    examples = bench + chat
    kept, counts = exclude(examples, official_role_ids())
    assert counts["role"] == 1 and all(e.role != "zhongli" for e in kept)  # an official test role
    by_role = split(kept, by="role", fraction=0.34, seed=0)
    assert {e.role for e in by_role[0]}.isdisjoint({e.role for e in by_role[1]}) and by_role[1]
    by_dialogue = split(kept, by="dialogue", fraction=0.25, seed=0)
    assert {e.group for e in by_dialogue[0]}.isdisjoint({e.group for e in by_dialogue[1]})
    assert len(by_dialogue[1]) == 3 and split(kept, by="dialogue", fraction=0.25, seed=0) == by_dialogue
    assert split(kept, by="dialogue", fraction=0.25, seed=1) != by_dialogue
    # a benchmark's dialogues are excluded by their answers
    no_bench, counts = exclude(kept, set(), [t for e in bench[:2] for t in e.answers()])
    assert counts["benchmark dialogue"] >= 2 and all(e.id not in {bench[0].id, bench[1].id} for e in no_bench)


# -- training, resume, merge, the agent -------------------------------------------------------------


def test_training_learns_only_lora_weights_and_records_everything(
    dataset: Path, tiny: Path, tmp_path: Path
) -> None:
    plan = load_plan(None, **_plan(dataset, tiny, tmp_path / "out"))
    lines: list[str] = []
    summary = train(plan, note=lines.append)
    losses = summary["losses"]
    assert len(losses) == 8 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert summary["eval_losses"] and np.isfinite(summary["eval_losses"][-1]["loss"])
    assert any("tokens/s" in line and "ETA" in line for line in lines)
    data = json.loads((tmp_path / "out" / "data.json").read_text())
    assert data["dropped_too_long"] == 1 and data["excluded"]["role"] == 1 and data["read"] == 14
    assert set(data["train_roles"]).isdisjoint(data["held_out_roles"])
    assert (tmp_path / "out" / "loss.json").is_file() and (tmp_path / "out" / "plan.yaml").is_file()
    # only LoRA weights changed: every base weight equals the base checkpoint's
    base = load_thinker(tiny, device="cpu").state_dict()
    trained = with_adapter(load_thinker(tiny, device="cpu"), tmp_path / "out")
    changed = []
    for name, value in trained.named_parameters():
        if "lora_" in name:
            changed.append(name)
            continue
        original = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(value, base[original]), name
    assert changed and all(
        ".language_model." in n for n in changed
    )  # never the audio encoder or vision tower
    lora_b = dict(trained.named_parameters())[next(n for n in changed if "lora_B" in n)]
    assert lora_b.abs().sum().item() > 0  # B starts at zero: training moved it
    # the saved adapter, reloaded, gives the held-out loss the Trainer measured at the end
    encoder = ChatEncoder.from_pretrained(tiny)
    held_out = EncodedDataset(prepare(plan, encoder).held_out, encoder, "all")
    with torch.no_grad():
        losses = [trained(**collate([held_out[i]], encoder.pad)).loss.item() for i in range(len(held_out))]
    assert np.mean(losses) == pytest.approx(summary["eval_losses"][-1]["loss"], abs=1e-4)


def _run_cli(args: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )  # type: ignore[call-overload]


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_run_ends(
    dataset: Path, tiny: Path, tmp_path: Path
) -> None:
    plan = _plan(dataset, tiny, tmp_path / "killed", max_steps=12, grad_accum=4, save_steps=3)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    first = _run_cli(["train", str(tmp_path / "plan.yaml")])
    state = tmp_path / "killed" / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while not state.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert state.is_file() and not (tmp_path / "killed" / "train.json").exists()
    second = _run_cli(["train", str(tmp_path / "plan.yaml")])
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "resuming from checkpoint-" in err
    summary = json.loads((tmp_path / "killed" / "train.json").read_text())
    assert summary["steps"] == 12 and summary["resumed_from"].startswith("checkpoint-")
    steps = [h["step"] for h in json.loads((tmp_path / "killed" / "loss.json").read_text()) if "loss" in h]
    assert steps == list(range(1, 13))  # the curve has every step once
    unbroken = train(load_plan(None, **(plan | {"output": str(tmp_path / "unbroken")})), note=lambda _: None)
    assert np.allclose(summary["losses"], unbroken["losses"], atol=1e-5)
    # a changed plan is refused, not silently resumed
    changed = plan | {"lr": 0.001}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    third = _run_cli(["train", str(tmp_path / "plan.yaml")])
    _, err = third.communicate(timeout=300)
    assert third.returncode == 2 and "trained with another plan" in err and "--restart" in err


def test_merge_answers_like_adapter_plus_base_and_carries_the_talker(
    dataset: Path, tiny: Path, tmp_path: Path, encoder: ChatEncoder
) -> None:
    train(load_plan(None, **_plan(dataset, tiny, tmp_path / "out")), note=lambda _: None)
    merged = tmp_path / "merged"
    done = subprocess.run(
        [*CLI, "train", "merge", str(tmp_path / "out"), "--output", str(merged)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((merged / "merge.json").read_text())
    assert record["adapter_sha256"] == adapter_digest(tmp_path / "out") and record["talker"] == "carried over"
    assert (merged / "spk_dict.pt").read_bytes() == (tiny / "spk_dict.pt").read_bytes()
    clip = np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.1
    messages = [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "<audio>"}]
    batch = collate([encoder.encode(messages, [clip], train_on=None, generation_prompt=True)], encoder.pad)
    batch.pop("labels")
    adapted = with_adapter(load_thinker(tiny, device="cpu"), tmp_path / "out")
    full = load_omni(merged, device="cpu")
    with torch.no_grad():
        a, b = adapted(**batch).logits, full.thinker(**batch).logits
        assert torch.allclose(a, b, atol=1e-4)
        kw = {
            "max_new_tokens": 12,
            "do_sample": False,
            "eos_token_id": encoder.im_end,
            "pad_token_id": encoder.pad,
        }
        assert torch.equal(adapted.generate(**batch, **kw), full.thinker.generate(**batch, **kw))
    base = load_omni(tiny, device="cpu")
    for (name, p), (_, q) in zip(base.talker.named_parameters(), full.talker.named_parameters(), strict=True):
        assert torch.equal(p, q), name


def test_the_trained_model_is_an_agent_that_eval_runs(
    dataset: Path,
    tiny: Path,
    tmp_path: Path,
    mini_cache: Path,  # noqa: F811
) -> None:
    train(load_plan(None, **_plan(dataset, tiny, tmp_path / "out", max_steps=2)), note=lambda _: None)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "benchmarks").symlink_to(mini_cache)
    env = os.environ | {"SPEECHROLE_CACHE_DIR": str(cache)}
    spec = f"omni:model={tiny},adapter={tmp_path / 'out'},max_new_tokens=24"
    run = tmp_path / "run"
    done = subprocess.run(
        [*CLI, "eval", "--bench", "mini", "--agent", spec, "--limit", "2", "--run-dir", str(run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    generated = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert len(generated) == 2 and all(g["status"] == "ok" for g in generated)
    role = generated[0]["sample"].split("/")[1]
    valid = subprocess.run(
        [*CLI, "validate", str(run), "--bench", "mini", "--roles", role, "--mode", "single"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert valid.returncode == 0 and "valid" in valid.stdout, valid.stdout[-2000:]
    agent = json.loads((run / "run.json").read_text())["agent"]
    assert agent["model"] == str(tiny.resolve()) and agent["adapter_sha256"] == adapter_digest(
        tmp_path / "out"
    )
    # the talker's built-in speakers instead of a TTS backend (the tiny talker speaks noise)
    talker = f"omni:model={tiny},adapter={tmp_path / 'out'},max_new_tokens=12,tts=talker,speaker=Chelsie,talker_max_new_tokens=48"
    done = subprocess.run(
        [
            *CLI,
            "eval",
            "--bench",
            "mini",
            "--agent",
            talker,
            "--limit",
            "1",
            "--run-dir",
            str(tmp_path / "talker"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((tmp_path / "talker" / "generations.jsonl").read_text().splitlines()[0])
    assert first["status"] == "ok" and sf.info(str(tmp_path / "talker" / first["audio"])).samplerate == 24000
    assert "Chelsie" in json.loads((tmp_path / "talker" / "run.json").read_text())["agent"]["voice"]


def test_missing_weights_and_bad_plans_fail_with_one_line(tmp_path: Path, dataset: Path, tiny: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "train",
            "--model",
            str(tmp_path / "none"),
            "--data",
            str(dataset / "bench"),
            "--output",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "weights not found" in done.stderr and "tiny-model" in done.stderr
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(_plan(dataset, tiny, tmp_path / "o") | {"lora": {"rank": 8}})
    )
    done = subprocess.run([*CLI, "train", str(tmp_path / "p.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "lora.rank" in done.stderr
    done = subprocess.run(
        [
            *CLI,
            "eval",
            "--bench",
            "mini",
            "--agent",
            f"omni:model={tmp_path / 'none'}",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "weights not found" in done.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_runs_in_bf16(dataset: Path, tiny: Path, tmp_path: Path) -> None:
    summary = train(load_plan(None, **_plan(dataset, tiny, tmp_path / "out")), note=lambda _: None)
    assert summary["device"] == "cuda" and summary["dtype"] == "bfloat16"
    assert all(np.isfinite(summary["losses"])) and summary["losses"][-1] < summary["losses"][0]
