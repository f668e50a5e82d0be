"""A stand-in with the shape of the released SpeechRole judge, second version (one call, JSON answer).

Written for speechrole's tests: the same statements and variable names as the released
`SpeechRole-Eval/gemini_judge.py`, but every sentence, the model name and the roles are our own.
speechrole reads it with `ast` (never running it); the tests also run it, against a fake client and a
fake pydub, to see what it would send.
"""

# ruff: noqa  (the released script's shape, kept as it is)

import argparse
import base64
import io
import json
import os
import re
import time

from openai import OpenAI
from pydub import AudioSegment
from tqdm import tqdm

model = "stand-in-judge-v2"

api_keys = [
    "",
]
current_key_index = 0


def get_client():
    return OpenAI(api_key=api_keys[current_key_index], base_url="")


client = get_client()


def wav_to_base64(audio_path: str, max_duration_seconds: int = 60) -> str:
    audio = AudioSegment.from_file(audio_path)
    max_duration_ms = max_duration_seconds * 1000
    if len(audio) > max_duration_ms:
        audio = audio[:max_duration_ms]
    audio_bytes = io.BytesIO()
    audio.export(audio_bytes, format="wav")
    audio_bytes.seek(0)
    return base64.b64encode(audio_bytes.read()).decode("utf-8")


def parse_gemini_result(result_text: str, metrics_keys: list) -> dict:
    try:
        result_json = json.loads(result_text)
    except json.JSONDecodeError:
        json_match = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", result_text, re.DOTALL)
        result_json = json.loads(json_match.group(1))
    parsed_results = {}
    for metric_key in metrics_keys:
        metric_result = result_json[metric_key]
        parsed_results[f"{metric_key}_results"] = {
            "reason": metric_result.get("reason", ""),
            "score": (int(metric_result["score_a"]), int(metric_result["score_b"])),
        }
    return parsed_results


metrics = {
    "Instruction_Adherence": "Keeps to the part, never stepping out of it to explain or assist.",
    "Speech_Fluency": "Talks smoothly, without halting or tripping over words.",
    "Conversational_Coherence": "Each reply fits what came before it.",
    "Speech_Naturalness": "Sounds like a person talking rather than a machine.",
    "Prosodic_Consistency": "Melody and stress suit this character throughout.",
    "Emotion_Appropriateness": "The feeling in the voice is right for the moment.",
    "Personality_Consistency": "The character's temperament comes through.",
    "Knowledge_Consistency": "Knows what the character knows, and no more.",
}

roles = ["Ada", "Bram", "libai"]


def main(mode, test_model):
    global client

    for role in tqdm(roles):
        try:
            save_path = f"test_results/{test_model}/{mode}/{role}.json"
            if os.path.exists(save_path):
                continue
            os.makedirs(os.path.dirname(save_path), exist_ok=True)

            profile_path = f"role_profiles/{role}_profile.txt"
            with open(profile_path) as f:
                line = f.readline().strip()
            role_name = line.split("I want you to act like ")[-1][:-1]

            gt_data_path = f"test_data/{mode}_turn/{role}.json"
            with open(gt_data_path) as f:
                gt_data = json.load(f)

            test_data_path = f"model_output/{test_model}/{mode}_result/json/{role}.json"
            with open(test_data_path) as f:
                test_data = json.load(f)

            output_list = []
            for i in range(len(gt_data)):
                question = (
                    gt_data[i]["system_prompt"]
                    + "Several questions follow, each after ###:\n"
                    + "\n###\n".join(
                        gt_data[i]["dialogue"][j]["user"] for j in range(len(gt_data[i]["dialogue"]))
                    )
                )
                if "dialogue" in test_data:
                    dialogue_data = test_data["dialogue"]
                else:
                    dialogue_key = f"dialogue_{i}"
                    if dialogue_key not in test_data:
                        continue
                    dialogue_data = test_data[dialogue_key]

                base64_audio1 = [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": "data:audio/wav;base64,"
                            + wav_to_base64(dialogue_data[j]["model_output"]["audio_path"]),
                            "format": "wav",
                        },
                    }
                    for j in range(len(gt_data[i]["dialogue"]))
                ]
                base64_audio2 = [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": "data:audio/wav;base64,"
                            + wav_to_base64(gt_data[i]["dialogue"][j]["role_speech_path"]),
                            "format": "wav",
                        },
                    }
                    for j in range(len(gt_data[i]["dialogue"]))
                ]

                output_list.append({"idx": i})

                metrics_evaluation_text = "\n\n".join(
                    [f"### {metric_key}:\n{metrics[metric_key]}" for metric_key in metrics.keys()]
                )

                json_example = "{\n"
                for metric_key in metrics.keys():
                    json_example += f'  "{metric_key}": {{\n    "reason": "why",\n    "score_a": 7,\n    "score_b": 7\n  }},\n'
                json_example = json_example.rstrip(",\n") + "\n}"

                messages = [
                    {"role": "system", "content": "You grade spoken answers."},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": f"# The task\n\n{question}\n\n# Model A answers, a clip per round\n\n",
                            }
                        ]
                        + base64_audio1
                        + [
                            {
                                "type": "text",
                                "text": "\n\n# Model A done\n\n# Model B answers, a clip per round\n\n",
                            }
                        ]
                        + base64_audio2
                        + [
                            {
                                "type": "text",
                                "text": f"\n\n# Model B done\n\n# What to do\n\nBoth models play {role_name}.\n\n"
                                f"Grade these aspects:\n\n{metrics_evaluation_text}\n\n"
                                f"Reply with JSON only, shaped like this:\n{json_example}",
                            }
                        ],
                    },
                ]

                while True:
                    try:
                        response = client.chat.completions.create(
                            model=model, messages=messages, timeout=300, temperature=0
                        )
                        parsed = parse_gemini_result(
                            response.choices[0].message.content, list(metrics.keys())
                        )
                        for key, value in parsed.items():
                            output_list[-1][key] = value
                        break
                    except Exception:
                        time.sleep(10)
                        continue
            with open(save_path, "w", encoding="utf-8") as json_file:
                json.dump(output_list, json_file, indent=4, ensure_ascii=False)
        except Exception as e:
            print(f"{role}: {e}")
            continue


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", type=str, required=True)
    parser.add_argument("--test_model", type=str, required=True)
    args = parser.parse_args()
    main(args.mode, args.test_model)
